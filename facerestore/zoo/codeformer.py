"""CodeFormer (Zhou, Chan, Li, Loy. NeurIPS 2022): a VQGAN codebook prior, a transformer that predicts
the code tokens of the face, and a controllable fidelity weight `w` (feature-level: 0 = the codebook's
face, 1 = closest to the input). Three released checkpoints (release v0.1.0, weights under
`params_ema`), all 512x512 FFHQ-aligned faces, RGB in [-1, 1]:

- `codeformer`: restoration, `net(x, w=0.5, adain=True)[0]` (inference_codeformer.py, --fidelity_weight 0.5)
- `codeformer-colorization`: a grey face in, `net(x, w=0, adain=True)[0]`
- `codeformer-inpainting`: white holes filled, `net(x, w=1, adain=False)[0]`, then the input is kept
  wherever it is not a pure-white hole (`(1 - mask) * x + mask * out`).

`restore(fidelity=...)` is CodeFormer's w (None = the entry's official value); `colorize(face)` and
`inpaint(face, mask)` are the heads' tasks on aligned faces.
"""
from __future__ import annotations

import numpy as np

from ..archs.codeformer import CodeFormer
from ..registry import Family, TrainingSpec, WeightFile, ZooEntry, register
from ..restorer import FaceRestorer

_REPO = "https://github.com/sczhou/CodeFormer"
_RELEASES = f"{_REPO}/releases/download/v0.1.0"
_PAPER = ("Zhou, Chan, Li, Loy. Towards Robust Blind Face Restoration with Codebook Lookup Transformer. "
          "NeurIPS 2022")
_LICENSE = "NTU S-Lab License 1.0 (non-commercial use only; redistribution under the same license)"


class CodeFormerRestorer(FaceRestorer):
    """FaceRestorer for CodeFormer: fidelity is the network's w (the family's `fidelity_argument`); the
    inpainting head keeps the input outside its pure-white holes, as the official script does.
    `colorize(face)` and `inpaint(face, mask)` come from FaceRestorer."""

    def forward_faces(self, crops: np.ndarray, crop_landmarks: np.ndarray, seed=None,
                      fidelity: float | None = None) -> np.ndarray:
        out = super().forward_faces(crops, crop_landmarks, seed=seed, fidelity=fidelity)
        if self.entry.task == "inpaint":  # (1 - mask) * x + mask * out, mask = pure white in all channels
            holes = np.all(crops == 255, axis=-1, keepdims=True)
            out = np.where(holes, out, crops)
        return out


def train_forward(net: CodeFormer, batch: dict, want_rgbs: bool) -> dict:
    """Stage III (fidelity training): fusion layers and transformer learn with w = 1; the codebook and the
    decoder stay fixed (see FAMILY.training.frozen)."""
    image, _, _ = net(batch["lq"], w=1, adain=False)
    return {"image": image}


FAMILY = Family(
    name="codeformer",
    archs=(CodeFormer,),
    runner="facerestore.zoo.codeformer:CodeFormerRestorer",
    size_argument="img_size",
    training=TrainingSpec(config_archs={"codeformer": "codeformer"}, forward=train_forward,
                          discriminator="stylegan2", frozen=("quantize", "generator"), idle_layers=True),
    paste="parse",  # inference_codeformer.py: facexlib FaceRestoreHelper(use_parse=True)
    fidelity=0.5,
    fidelity_argument="w",
    export="facerestore.export:codeformer_spec",  # image, w -> output, tokens (w an input of the graph)
    tiny=dict(dim_embd=64, n_head=4, n_layers=2, codebook_size=32, latent_size=64, connect_list=["16", "32"],
              img_size=32, nf=32, ch_mult=(1, 1, 2), attn_resolutions=(8,)),
)


def _codeformer(name: str, filename: str, config: dict, task: str, w: float, adain: bool, description: str,
                notes: str, aliases: tuple[str, ...] = ()) -> None:
    register(ZooEntry(
        name=name, family=FAMILY, arch=CodeFormer,
        arch_config={"dim_embd": 512, "n_head": 8, "n_layers": 9, "codebook_size": 1024, **config},
        files=(WeightFile(filename, (f"{_RELEASES}/{filename}",), state_dict_key="params_ema"),),
        task=task, face_size=512, template="ffhq", color="rgb", input_range=(-1.0, 1.0),
        forward_kwargs={"w": w, "adain": adain},  # the official call; w is replaced by restore(fidelity=...)
        precisions=("fp32", "bf16", "fp16"), aliases=aliases, license=_LICENSE, commercial_use=False,
        channels_last=True,  # exact mode 1.18x faster than NCHW on CPU (benchmarks/latency.py)
        paper=_PAPER, source=_REPO, description=description,
        notes=notes + " Fast modes (bf16/fp16) keep the encoder, transformer and token choice in fp32, so the "
                      "chosen codes equal exact mode's; the decoder runs in half precision.",
    ))


_codeformer("codeformer", "codeformer.pth", {"connect_list": ["32", "64", "128", "256"]}, "restore", 0.5, True,
            "CodeFormer blind face restoration (codebook lookup transformer) with fidelity weight w",
            "restore(fidelity=w): 0 = the codebook's face (best quality), 1 = most faithful to the input; "
            "the official default is 0.5.")
_codeformer("codeformer-colorization", "codeformer_colorization.pth", {"connect_list": ["32", "64", "128"]},
            "colorize", 0.0, True, "CodeFormer face colorization: a grey aligned face in, a colour face out",
            "Official call net(x, w=0, adain=True) on the grey face (colorize(face)).")
_codeformer("codeformer-inpainting", "codeformer_inpainting.pth",
            {"codebook_size": 512, "connect_list": ["32", "64", "128"]}, "inpaint", 1.0, False,
            "CodeFormer face inpainting: fills pure-white holes of an aligned face",
            "Official call net(x, w=1, adain=False), then (1 - mask) * x + mask * out with mask = pixels that are "
            "pure white in all three channels (inpaint(face, mask) paints the mask white first).")
