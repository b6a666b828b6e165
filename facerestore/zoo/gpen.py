"""GPEN (Yang et al., CVPR 2021): the blind face restoration models GPEN-BFR-256/512/1024/2048 and the
colorization, inpainting and segmentation-to-face heads released with them (same architecture,
`FullGenerator`), plus `GPENRestorer`, which adds the heads' task methods.

All files are bare state dicts (GPEN's loader applies no key unless `--key` is given). Inputs are
aligned faces resized to the network size, RGB in [-1, 1] (seg2face: [0, 1], GPEN's `is_norm=False`);
GPEN aligns with its own 5-point reference (`template="gpen"`).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..archs.gpen import FullGenerator
from ..imageio import to_bgr_uint8
from ..registry import Family, TrainingSpec, WeightFile, ZooEntry, register
from ..restorer import FaceRestorer

_REPO = "https://github.com/yangxy/GPEN"
_OSS = "https://public-vigen-video.oss-cn-shanghai.aliyuncs.com/robin/models"
_MODELSCOPE_HIRES = "damo/cv_gpen_image-portrait-enhancement-hires"
_MODELSCOPE_FILE = "https://www.modelscope.cn/api/v1/models/{model}/repo?Revision=master&FilePath={file}"
_PAPER = "Yang, Ren, Xie, Zhang. GAN Prior Embedded Network for Blind Face Restoration in the Wild. CVPR 2021"
_LICENSE = ("no license file in the GPEN repository; (c) Alibaba DAMO Academy - research use, contact the "
            "authors for commercial use")
_RESTORER = "facerestore.zoo.gpen:GPENRestorer"


class GPENRestorer(FaceRestorer):
    """FaceRestorer for GPEN's networks.

    - Output conversion as GPEN's `FaceGAN.tensor2img` (clip to [0, 1], x255, truncate to uint8) comes
      from the entries' `output_rounding="truncate"`.
    - `seg2face`: the task of the seg2face head; `colorize` and `inpaint` (the other heads) come from
      FaceRestorer. All run on aligned face images resized to the network size and back (bilinear, as
      GPEN's `FaceGAN.process`); `restore(photo)` also works with the heads (colorization converts the
      face crops to grey first, as GPEN's demo does).
    """

    def seg2face(self, seg: Any) -> np.ndarray:
        """A face from a face-parsing map: `seg` is the colour-coded parsing image (BGR uint8, as
        GPEN's demo reads its examples/segs files with cv2.imread); BGR uint8 of the input's size."""
        self._require_task("seg2face")
        return self._run_aligned(to_bgr_uint8(seg)[0])


def train_forward(net, batch: dict, want_rgbs: bool) -> dict:
    image, _ = net(batch["lq"])
    return {"image": image}


FAMILY = Family(
    name="gpen",
    archs=(FullGenerator,),
    runner=_RESTORER,
    size_argument="size",
    paste="gpen",  # face_enhancement.py: its own parsing-mask compositing
    training=TrainingSpec(config_archs={"gpen": "gpen-bfr-512"}, forward=train_forward, discriminator="gpen"),
    tiny=dict(size=64, style_dim=32, n_mlp=2, channel_multiplier=1, narrow=0.125),
)


def _gpen(name: str, size: int, channel_multiplier: int, narrow: float, filename: str, urls: tuple[str, ...],
          task: str, description: str, notes: str, aliases: tuple[str, ...] = (),
          input_range: tuple[float, float] = (-1.0, 1.0)) -> None:
    register(ZooEntry(
        name=name,
        family=FAMILY,
        arch=FullGenerator,
        # FaceGAN.load_model: FullGenerator(in_size, 512, n_mlp=8, channel_multiplier, narrow=narrow, device)
        arch_config=dict(size=size, style_dim=512, n_mlp=8, channel_multiplier=channel_multiplier, narrow=narrow),
        files=(WeightFile(filename, urls, state_dict_key=None),),
        task=task,
        output_rounding="truncate",  # FaceGAN.tensor2img: astype(np.uint8) after clipping
        precisions=("fp32", "bf16", "fp16"),
        channels_last=True,  # exact mode ~1.1x faster than NCHW on CPU (benchmarks/latency.py)
        face_size=size,
        template="gpen",
        color="rgb",
        input_range=input_range,
        forward_kwargs={},  # FaceGAN.process: out, _ = model(img_t)
        aliases=aliases,
        license=_LICENSE,
        commercial_use=False,
        paper=_PAPER,
        source=_REPO,
        description=description,
        notes=notes,
    ))


_gpen("gpen-bfr-256", 256, 1, 0.5, "GPEN-BFR-256.pth", (f"{_OSS}/GPEN-BFR-256.pth",), "restore",
      "GPEN blind face restoration at 256x256 (a light model: channel multiplier 1, narrow 0.5)",
      "Config from GPEN's run.sh / misc/predict.py: --in_size 256 --channel_multiplier 1 --narrow 0.5.")
_gpen("gpen-bfr-512", 512, 2, 1, "GPEN-BFR-512.pth", (f"{_OSS}/GPEN-BFR-512.pth",), "restore",
      "GPEN blind face restoration at 512x512, the default GPEN",
      "Config from GPEN's README / run.sh: --in_size 512 --channel_multiplier 2 --narrow 1. GPEN's demo "
      "blends the output with the input (--alpha 1 by default = no blend); use restore(fidelity=1 - alpha).",
      aliases=("gpen",))
_gpen("gpen-bfr-1024", 1024, 2, 1, "GPEN-BFR-1024.pth",
      (_MODELSCOPE_FILE.format(model=_MODELSCOPE_HIRES, file="pytorch_model.pt"),), "restore",
      "GPEN blind face restoration at 1024x1024",
      f"Distributed through ModelScope ({_MODELSCOPE_HIRES}) as pytorch_model.pt; it is cached here as "
      "GPEN-BFR-1024.pth (pass weights='/path/to/pytorch_model.pt' to use a manual download). The GPEN repo "
      "has no BFR-1024 command line: channel multiplier 2 and narrow 1 are GPEN's demo defaults, its "
      "ONNX export script and ModelScope's pipeline for this file (FullGenerator(1024, 512, 8, 2, narrow=1), "
      "strict loading); the file itself was not checked here.")
_gpen("gpen-bfr-2048", 2048, 2, 1, "GPEN-BFR-2048.pth",
      (_MODELSCOPE_FILE.format(model=_MODELSCOPE_HIRES, file="pytorch_model-2048.pt"), f"{_OSS}/GPEN-BFR-2048.pth"),
      "restore",
      "GPEN blind face restoration at 2048x2048",
      f"Config from GPEN's run.sh: --in_size 2048 --channel_multiplier 2 --narrow 1 (--alpha 0.8 there: "
      f"restore(fidelity=0.2) for the same blend). Distributed through ModelScope ({_MODELSCOPE_HIRES}) as "
      "pytorch_model-2048.pt, cached here as GPEN-BFR-2048.pth. Needs a lot of memory on CPU (2048x2048 "
      "feature maps).")
# The other heads of the release, configs as GPEN's demo.py / run.sh use them (FaceColorization,
# FaceInpainting, Segmentation2Face with their defaults channel_multiplier=2, narrow=1).
_gpen("gpen-colorization-1024", 1024, 2, 1, "GPEN-Colorization-1024.pth", (f"{_OSS}/GPEN-Colorization-1024.pth",),
      "colorize", "GPEN face colorization at 1024x1024: a grey aligned face in, a colour face out",
      "run.sh: demo.py --task FaceColorization --model GPEN-Colorization-1024 --in_size 1024 (FaceColorization "
      "defaults channel_multiplier=2, narrow=1: our assumption from those defaults, the file was not checked). "
      "The demo feeds a 3-channel grey image (BGR->GRAY->BGR); GPENRestorer.colorize does the same.")
_gpen("gpen-inpainting-1024", 1024, 2, 1, "GPEN-Inpainting-1024.pth", (f"{_OSS}/GPEN-Inpainting-1024.pth",),
      "inpaint", "GPEN face inpainting at 1024x1024: fills holes (painted white) in an aligned face",
      "run.sh: demo.py --task FaceInpainting --model GPEN-Inpainting-1024 --in_size 1024 (FaceInpainting "
      "defaults channel_multiplier=2, narrow=1: our assumption from those defaults, the file was not checked). "
      "The demo paints random brush-stroke holes white (255) on the face; GPENRestorer.inpaint(img, mask) "
      "paints the mask's nonzero pixels white the same way.")
_gpen("gpen-seg2face-512", 512, 2, 1, "GPEN-Seg2face-512.pth", (f"{_OSS}/GPEN-Seg2face-512.pth",),
      "seg2face", "GPEN segmentation-to-face at 512x512: a colour-coded face-parsing map in, a face out",
      "run.sh: demo.py --task Segmentation2Face --model GPEN-Seg2face-512 --in_size 512 (Segmentation2Face "
      "defaults channel_multiplier=2, narrow=1: our assumption from those defaults, the file was not checked). "
      "The demo builds it with is_norm=False: input and output in [0, 1], not [-1, 1].",
      input_range=(0.0, 1.0))
