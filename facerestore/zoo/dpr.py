"""DPR portrait relighting (Zhou et al., ICCV 2019): the two released checkpoints."""
from ..archs.dpr import HourglassNet, HourglassNet1024
from ..registry import Family, TrainingSpec, WeightFile, ZooEntry, register

_REPO = "https://github.com/zhhoper/DPR"
_PAPER = "Zhou, Hadap, Sunkavalli, Jacobs. Deep Single-Image Portrait Relighting. ICCV 2019"
_LICENSE = "none stated (the DPR repository has no license file): research use only"
_NOTES = (
    "Relights the L channel (Lab) of a portrait under a target light of 9 second-order SH coefficients "
    "(facerestore.shlight.SHLight); a/b colour channels are kept. Trained on relit CelebA-HQ faces (DPR "
    "dataset): works best on frontal-ish portraits framed like CelebA-HQ/FFHQ. The official demo resizes "
    "the whole image to the network size without keeping the aspect ratio; Relighter.relight does the "
    "same by default (keep_aspect=True pads instead, detect=True relights each detected face)."
)

# Both files are legacy (pre-1.6, non-zip) torch.save pickles of a bare OrderedDict of CPU tensors.
# load() reads them with hub.read_checkpoint, i.e. torch.load(weights_only=True): its restricted
# unpickler rebuilds only tensors, storages and OrderedDicts, which is all these files hold, so the
# legacy format loads as is, while any other pickled object (code in a tampered download) is refused.
# The state dicts match HourglassNet / HourglassNet1024 key for key: load_state_dict(strict=True).

FAMILY = Family(
    name="dpr",
    archs=(HourglassNet, HourglassNet1024),
    runner="facerestore.relighter:Relighter",
    training=TrainingSpec(recipe="facerestore.train.recipes:RelightRecipe",
                          config_archs={"dpr": "dpr-512", "dpr-1024": "dpr-1024"}),
    export="facerestore.relighter:export_spec",
)

# bf16 (autocast): relit images within 47-49 dB PSNR of fp32 on real faces (CPU, measured).
_PRECISIONS = ("fp32", "bf16")

register(ZooEntry(
    family=FAMILY,
    name="dpr-512",
    arch=HourglassNet,
    arch_config={},  # the demo builds HourglassNet() with its defaults baseFilter=16, gray=True
    files=(WeightFile(
        "trained_model_03.t7",
        (f"{_REPO}/raw/master/trained_model/trained_model_03.t7",),
        sha256="950157bf950b899eba7bb1a6439d602e89fef9d180e235d034774d6d8583bc51",
        size=2812830,
    ),),
    task="relight",
    face_size=512,
    template="ffhq",
    color="gray",  # one channel: the L (lightness) of OpenCV Lab, /255
    input_range=(0.0, 1.0),
    forward_kwargs={"skip_count": 0},  # official call net(inputL, sh, 0)
    precisions=_PRECISIONS,
    channels_last=True,
    aliases=("dpr",),
    license=_LICENSE,
    commercial_use=False,
    paper=_PAPER,
    source=_REPO,
    description="DPR portrait relighting at 512x512 with SH lighting (also estimates the input's light)",
    notes=_NOTES,
))

register(ZooEntry(
    family=FAMILY,
    name="dpr-1024",
    arch=HourglassNet1024,
    arch_config={},  # the demo builds HourglassNet_1024(HourglassNet(16), 16)
    files=(WeightFile(
        "trained_model_1024_03.t7",
        (f"{_REPO}/raw/master/trained_model/trained_model_1024_03.t7",),
        sha256="e2a1d88fa0f6bf8a2a284df658eaaf17eba4b818965742f885a9cce93ae1f288",
        size=2836359,
    ),),
    task="relight",
    face_size=1024,
    template="ffhq",
    color="gray",  # one channel: the L (lightness) of OpenCV Lab, /255
    input_range=(0.0, 1.0),
    forward_kwargs={"skip_count": 0},
    precisions=_PRECISIONS,
    channels_last=True,
    license=_LICENSE,
    commercial_use=False,
    paper=_PAPER,
    source=_REPO,
    description="DPR portrait relighting at 1024x1024 (the 512 network wrapped with full-resolution layers)",
    notes=_NOTES,
))
