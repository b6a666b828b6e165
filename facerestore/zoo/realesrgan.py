"""Real-ESRGAN (Wang, Xie, Dong, Shan. ICCVW 2021) background upsamplers (task "upscale"): RRDBNet, the
official x2plus / x4plus files (weights under `params_ema`, else `params`). `load(name)` returns an
`Upscaler` whose `upscale(img, outscale=..., tile=..., tile_pad=..., pre_pad=...)` reproduces
`RealESRGANer.enhance` (tiles, reflect pre-padding, 16-bit, grey and alpha inputs); it is also the
background upsampler of a restorer: `load("gfpgan", upsampler="realesrgan-x2plus")`. Another RRDBNet file
in the BasicSR layout (e.g. `RealESRGAN_x4plus_anime_6B.pth`, 6 blocks) given as `weights=` is built at
its own size and scale.
"""
from ..archs.rrdbnet import RRDBNet
from ..registry import Family, HelperEntry, WeightFile, register

_REPO = "https://github.com/xinntao/Real-ESRGAN"
_PAPER = ("Wang, Xie, Dong, Shan. Real-ESRGAN: Training Real-World Blind Super-Resolution with Pure Synthetic "
          "Data. ICCV Workshops 2021")
_LICENSE = "BSD-3-Clause (Real-ESRGAN repository)"

FAMILY = Family(
    name="realesrgan",
    archs=(RRDBNet,),
    runner="facerestore.upscale:Upscaler",
    export=None,
    tiny=dict(num_feat=8, num_block=1, num_grow_ch=4),
    config_from_state_dict="facerestore.archs.rrdbnet:rrdbnet_config_from_state_dict",
)


def _realesrgan(scale: int, release: str, description: str, notes: str = "") -> None:
    filename = f"RealESRGAN_x{scale}plus.pth"
    register(HelperEntry(
        name=f"realesrgan-x{scale}plus", family=FAMILY, arch=RRDBNet,
        arch_config=dict(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=23, num_grow_ch=32, scale=scale),
        files=(WeightFile(filename, (f"{_REPO}/releases/download/{release}/{filename}",), state_dict_key="params_ema"),),
        task="upscale", scale=scale, precisions=("fp32", "bf16", "fp16"), license=_LICENSE, commercial_use=True,
        paper=_PAPER, source=_REPO, description=description, notes=notes,
    ))


_realesrgan(2, "v0.2.1", "Real-ESRGAN x2plus: 2x real-world super-resolution, GFPGAN's/CodeFormer's default "
                         "background upsampler",
            "Official tiling for photos: GFPGAN tile 400 / pad 10, CodeFormer tile 400 / pad 40.")
_realesrgan(4, "v0.1.0", "Real-ESRGAN x4plus: 4x real-world super-resolution")
