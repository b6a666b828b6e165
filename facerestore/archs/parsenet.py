"""ParseNet: the 19-class face parsing network of PSFR-GAN (Chen et al., CVPR 2021), as used by facexlib
(`parsing_parsenet.pth`) and GPEN (`ParseNet-latest.pth`) to build the paste-back masks.

Encoder (3x3 conv, then strided residual blocks down to `min_feat_size`), a body of residual blocks
added to its own input, a decoder of nearest-upsampling residual blocks, and two 3x3 heads: the
parsing logits and an auxiliary RGB image. Every conv pads by reflection; a conv followed by BatchNorm
has no bias. Official call: `net(x)` -> (parsing logits (N, 19, H, W), image (N, 3, H, W)),
x RGB in [-1, 1], 512 x 512 for the released weights.

Labels (CelebAMask-HQ order of PSFR-GAN): 0 background, 1 skin, 2 nose, 3 eyeglasses, 4 left eye,
5 right eye, 6 left brow, 7 right brow, 8 left ear, 9 right ear, 10 mouth, 11 upper lip, 12 lower
lip, 13 hair, 14 hat, 15 earring, 16 necklace, 17 neck, 18 cloth.

Module names reproduce facexlib's `ParseNet(in_size=512, out_size=512, parsing_ch=19)` key for key
(`encoder.1.conv1.conv2d.weight`, `encoder.1.conv1.norm.norm.running_mean`, ...).

GPEN's network: GPEN's face_parse/parse_model.py builds `ParseNet(512, 512, 32, 64, 19, norm_type='bn',
relu_type='LeakyReLU', ch_range=[32, 256])` from a class whose constructor and forward are the same
statements as facexlib's (both derive from PSFR-GAN's parse_model.py by the same author), and those
arguments are exactly facexlib's defaults for `ParseNet(in_size=512, out_size=512, parsing_ch=19)`:
min_feat_size 32, base_ch 64, res_depth 10, LeakyReLU(0.2), BatchNorm, channels clipped to [32, 256].
So `ParseNet-latest.pth` has the same architecture and state_dict layout as facexlib's
`parsing_parsenet.pth` and loads into this class. (GPEN's own `blocks.py` is not in the searchable
index; PSFR-GAN's models/blocks.py, which it imports by the same name, defines ConvLayer/ResidualBlock
with the same modules and names as facexlib's.) What differs in GPEN is the use, not the network:
its input normalisation is computed in float64 (`x / 255. * 2 - 1`, then float32) and its face mask
also keeps labels 16 and 17 (necklace, neck); see facerestore.face.parse.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class _BatchNormSlot(nn.Module):
    """Holds the BatchNorm under `.norm`, so its keys read `<layer>.norm.norm.*` as in the checkpoints."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(channels)


class _PReLUSlot(nn.Module):
    """Holds a PReLU under `.func` (keys `<layer>.relu.func.weight`)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.func = nn.PReLU(channels)


class ConvLayer(nn.Module):
    """[nearest x2 upsample] -> reflection pad -> conv (stride 2 when scale="down") -> [BatchNorm] -> [activation]."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, scale: str = "none",
                 norm: str = "none", act: str = "none") -> None:
        super().__init__()
        self.upsample = scale == "up"
        self.pad = math.ceil((kernel_size - 1) / 2)
        self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size, 2 if scale == "down" else 1,
                                bias=norm != "bn")
        if norm == "bn":
            self.norm = _BatchNormSlot(out_channels)
        elif norm != "none":
            raise ValueError(f"ParseNet norm must be 'bn' or 'none', got {norm!r}")
        self.act = act.lower()
        if self.act == "prelu":
            self.relu = _PReLUSlot(out_channels)
        elif self.act not in ("leakyrelu", "relu", "none"):
            raise ValueError(f"ParseNet activation must be LeakyReLU, PReLU, ReLU or none, got {act!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = self.conv2d(F.pad(x, (self.pad,) * 4, mode="reflect"))
        if hasattr(self, "norm"):
            x = self.norm.norm(x)
        if self.act == "leakyrelu":
            x = F.leaky_relu(x, 0.2)
        elif self.act == "relu":
            x = F.relu(x)
        elif self.act == "prelu":
            x = self.relu.func(x)
        return x


class ResidualBlock(nn.Module):
    """conv1 (with activation) -> conv2, plus a shortcut: identity, or a plain 3x3 conv when the scale or
    the channels change. Downsampling happens in conv2, upsampling in conv1."""

    def __init__(self, c_in: int, c_out: int, act: str, norm: str, scale: str = "none") -> None:
        super().__init__()
        self.identity = scale == "none" and c_in == c_out
        if not self.identity:
            self.shortcut_func = ConvLayer(c_in, c_out, 3, scale)
        scale1, scale2 = {"down": ("none", "down"), "up": ("up", "none"), "none": ("none", "none")}[scale]
        self.conv1 = ConvLayer(c_in, c_out, 3, scale1, norm=norm, act=act)
        self.conv2 = ConvLayer(c_out, c_out, 3, scale2, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.identity else self.shortcut_func(x)
        return shortcut + self.conv2(self.conv1(x))


class ParseNet(nn.Module):
    """Face parsing network; defaults give the released 512 px, 19-class model."""

    def __init__(self, in_size: int = 512, out_size: int = 512, min_feat_size: int = 32, base_ch: int = 64,
                 parsing_ch: int = 19, res_depth: int = 10, relu_type: str = "LeakyReLU", norm_type: str = "bn",
                 ch_range: tuple[int, int] = (32, 256)) -> None:
        super().__init__()
        low, high = ch_range

        def clip(channels: int) -> int:
            return max(low, min(channels, high))

        min_feat_size = min(in_size, min_feat_size)
        down_steps = int(math.log2(in_size // min_feat_size))
        up_steps = int(math.log2(out_size // min_feat_size))
        block = {"act": relu_type, "norm": norm_type}

        encoder: list[nn.Module] = [ConvLayer(3, base_ch, 3)]
        head = base_ch
        for _ in range(down_steps):
            encoder.append(ResidualBlock(clip(head), clip(head * 2), scale="down", **block))
            head *= 2
        body = [ResidualBlock(clip(head), clip(head), **block) for _ in range(res_depth)]
        decoder = []
        for _ in range(up_steps):
            decoder.append(ResidualBlock(clip(head), clip(head // 2), scale="up", **block))
            head //= 2
        self.encoder = nn.Sequential(*encoder)
        self.body = nn.Sequential(*body)
        self.decoder = nn.Sequential(*decoder)
        self.out_img_conv = ConvLayer(clip(head), 3)
        self.out_mask_conv = ConvLayer(clip(head), parsing_ch)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.encoder(x)
        return self.decoder(feat + self.body(feat))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(parsing logits, auxiliary image) for x RGB in [-1, 1]."""
        feat = self.features(x)
        return self.out_mask_conv(feat), self.out_img_conv(feat)

    def parse_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Only the parsing logits (skips the image head)."""
        return self.out_mask_conv(self.features(x))
