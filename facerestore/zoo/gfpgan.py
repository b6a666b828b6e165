"""GFP-GAN (Wang et al., CVPR 2021): the four released generators, v1 (original arch) and v1.2-v1.4
(clean arch). All take 512x512 FFHQ-aligned faces, RGB in [-1, 1], and are called as the official
`GFPGANer.enhance` does: `net(x, return_rgb=False)`, with fresh decoder noise per call (the
restorer's `seed=` makes it reproducible)."""
from ..archs.gfpgan import GFPGANv1, GFPGANv1Clean
from ..registry import Family, TrainingSpec, WeightFile, ZooEntry, register

_REPO = "https://github.com/TencentARC/GFPGAN"
_RELEASES = f"{_REPO}/releases/download"
_PAPER = ("Wang, Li, Zhang, Shan. Towards Real-World Blind Face Restoration with Generative Facial Prior. "
          "CVPR 2021")
_LICENSE = ("Apache-2.0 (the GFPGAN repository: code and released models; its LICENSE lists third-party "
            "components under other terms, e.g. the StyleGAN2 CUDA ops under the NVIDIA Source Code "
            "License-NC, which facerestore does not use). Trained on FFHQ (CC BY-NC-SA 4.0 dataset).")
# The constructor arguments GFPGANer passes (gfpgan/utils.py), for 512 px faces.
_COMMON = dict(out_size=512, num_style_feat=512, decoder_load_path=None, num_mlp=8, input_is_latent=True,
               different_w=True, narrow=1, sft_half=True)
_CLEAN_CONFIG = {**_COMMON, "channel_multiplier": 2, "fix_decoder": False}
_PRECISION_NOTE = (" precision='bf16'/'fp16' runs convolutions and linear layers in half precision under "
                   "autocast; style modulation/demodulation, noise and bias-activations stay in fp32 (GFP-GAN "
                   "is known not to be fp16-safe end to end).")


def train_forward(net, batch: dict, want_rgbs: bool) -> dict:
    """The training forward: the restored image, plus the U-Net's RGB pyramid for the pyramid loss."""
    image, rgbs = net(batch["lq"], return_rgb=want_rgbs)
    return {"image": image, "rgbs": list(rgbs)}


FAMILY = Family(
    name="gfpgan",
    archs=(GFPGANv1, GFPGANv1Clean),
    runner="facerestore.restorer:FaceRestorer",
    size_argument="out_size",
    paste="parse",  # GFPGANer: facexlib FaceRestoreHelper(use_parse=True), ParseNet
    training=TrainingSpec(config_archs={"gfpgan": "gfpgan-v1", "gfpgan-clean": "gfpgan-v1.4"},
                          forward=train_forward, discriminator="stylegan2", pyramid=True,
                          idle_layers=True),  # the U-Net's toRGBs without the pyramid loss
    tiny=dict(out_size=64, num_style_feat=16, channel_multiplier=1, num_mlp=2, narrow=1 / 16),
)
_NOISE_NOTE = ("The decoder adds fresh random noise at every call, like the official code (restore(..., "
               "seed=N) makes results reproducible; the official code's outputs differ run to run). ")


def _gfpgan(version: str, filename: str, release: str, arch, config: dict, description: str, notes: str,
            commercial_use: bool, aliases: tuple[str, ...] = ()) -> None:
    register(ZooEntry(
        name=f"gfpgan-v{version}",
        family=FAMILY,
        arch=arch,
        arch_config=config,
        files=(WeightFile(filename, (f"{_RELEASES}/{release}/{filename}",), state_dict_key="params_ema"),),
        task="restore",
        face_size=512,
        template="ffhq",
        color="rgb",
        input_range=(-1.0, 1.0),
        forward_kwargs={"return_rgb": False},  # GFPGANer.enhance: net(x, return_rgb=False, weight=0.5)
        aliases=aliases,
        license=_LICENSE,
        commercial_use=commercial_use,
        paper=_PAPER,
        source=_REPO,
        description=description,
        notes=_NOISE_NOTE + notes + _PRECISION_NOTE,
        precisions=("fp32", "bf16", "fp16"),
    ))


_gfpgan(
    "1", "GFPGANv1.pth", "v0.1.0", GFPGANv1,
    {**_COMMON, "channel_multiplier": 1, "fix_decoder": True},  # defaults resample_kernel (1,3,3,1), lr_mlp 0.01
    "GFP-GAN v1, the paper model (original StyleGAN2 arch, with colorization)",
    "The official v1 needs BasicSR's compiled CUDA ops (upfirdn2d, fused leaky ReLU, derived from NVIDIA's "
    "StyleGAN2 code under the NVIDIA Source Code License-NC); facerestore's pure-PyTorch layers reproduce "
    "their maths and use none of that code. Commercial use is marked False as a precaution because the "
    "official v1 pipeline depends on those NC-licensed ops; the weights themselves are released with the "
    "Apache-2.0 repository. Prefer gfpgan-v1.3/v1.4 for quality.",
    commercial_use=False,
)
_gfpgan(
    "1.2", "GFPGANCleanv1-NoCE-C2.pth", "v0.2.0", GFPGANv1Clean, _CLEAN_CONFIG,
    "GFP-GAN v1.2 (clean arch: no colorization, no CUDA extensions; trained on more, pre-processed data)",
    "Released as GFPGANCleanv1-NoCE-C2.pth (NoCE: no colour enhancement; C2: channel multiplier 2).",
    commercial_use=True,
)
_gfpgan(
    "1.3", "GFPGANv1.3.pth", "v1.3.0", GFPGANv1Clean, _CLEAN_CONFIG,
    "GFP-GAN v1.3 (clean arch): more natural results, better on very low- and high-quality inputs",
    "Same architecture as v1.2 and v1.4; only the weights differ.",
    commercial_use=True,
)
_gfpgan(
    "1.4", "GFPGANv1.4.pth", "v1.3.0", GFPGANv1Clean, _CLEAN_CONFIG,
    "GFP-GAN v1.4 (clean arch): more details and better identity than v1.3; the default GFP-GAN",
    "Published in the v1.3.0 release of the repository (the official download URL says v1.3.0).",
    commercial_use=True, aliases=("gfpgan",),
)
