"""Face parsing networks (task "parse"): the masks the whole-photo pipeline pastes faces back through.

Both files are facexlib's releases, bare state dicts loaded strictly (facexlib `init_parsing_model`).
`parsenet` is the parser GFPGAN's, CodeFormer's and RestoreFormer++'s inference scripts use
(`FaceRestoreHelper(use_parse=True)`); GPEN's `ParseNet-latest.pth` is the same network and layout
(its `ParseNet(512, 512, 32, 64, 19, norm_type='bn', relu_type='LeakyReLU', ch_range=[32, 256])` are
facexlib's defaults), so it loads into the `parsenet` entry with `parser_weights=...`.
"""
from ..archs.bisenet import BiSeNet
from ..archs.parsenet import ParseNet
from ..registry import Family, HelperEntry, WeightFile, register

_FACEXLIB = "https://github.com/xinntao/facexlib"
_RELEASES = f"{_FACEXLIB}/releases/download"

FAMILY = Family(
    name="face-parsing",
    archs=(ParseNet, BiSeNet),
    runner="facerestore.face.parse:FaceParser",
    export=None,
    tiny={},
)

register(HelperEntry(
    name="parsenet", family=FAMILY, arch=ParseNet, arch_config=dict(in_size=512, out_size=512, parsing_ch=19),
    files=(WeightFile("parsing_parsenet.pth", (f"{_RELEASES}/v0.2.2/parsing_parsenet.pth",)),),
    task="parse", aliases=("parsenet-facexlib",),
    license="MIT (facexlib); ParseNet from PSFR-GAN (Chen et al. CVPR 2021)", commercial_use=True,
    paper="Chen, Tai, Liu, Wong, Zhang. Progressive Semantic-Aware Style Transformation for Blind Face "
          "Restoration. CVPR 2021",
    source=_FACEXLIB,
    description="ParseNet face parsing (19 CelebAMask-HQ classes, 512x512), facexlib's paste-back parser",
    notes="The mask keeps skin, brows, eyes, nose, mouth and lips (and, for GPEN's pipeline, neck/necklace); "
          "hair, ears, hats, glasses frames, hands and background keep the input's pixels.",
))
register(HelperEntry(
    name="bisenet", family=FAMILY, arch=BiSeNet, arch_config=dict(num_class=19),
    files=(WeightFile("parsing_bisenet.pth", (f"{_RELEASES}/v0.2.0/parsing_bisenet.pth",)),),
    task="parse",
    license="MIT (facexlib; BiSeNet face parsing from zllrunning/face-parsing.PyTorch, MIT)", commercial_use=True,
    paper="Yu, Wang, Peng, Gao, Yu, Sang. BiSeNet: Bilateral Segmentation Network for Real-time Semantic "
          "Segmentation. ECCV 2018",
    source=_FACEXLIB,
    description="BiSeNet face parsing (ResNet-18, 19 classes), facexlib's alternative parser",
))
