"""RRDBNet: the ESRGAN / Real-ESRGAN super-resolution generator (Wang et al., ESRGAN, ECCV-W 2018;
Real-ESRGAN, ICCV-W 2021), with the state-dict layout of BasicSR's `RRDBNet` (the released
`RealESRGAN_x4plus.pth`, `RealESRGAN_x2plus.pth`, `RealESRNet_x4plus.pth`, the 6-block anime model
and community 4x models of the same family load key for key).

    x --(scale 2: pixel-unshuffle by 2, scale 1: by 4)--> conv_first --> feat
    feat + conv_body(body(feat))                       body = num_block RRDBs
      --> nearest x2 --> conv_up1 --> LeakyReLU(0.2) --> nearest x2 --> conv_up2 --> LeakyReLU(0.2)
      --> conv_hr --> LeakyReLU(0.2) --> conv_last

Every network upsamples its (unshuffled) input 4x, so scale 2 and scale 1 first trade resolution for
channels: the released x2 model's `conv_first` takes 12 channels (3 x 2 x 2). One RRDB is three residual
dense blocks (five 3x3 convs over the running concatenation of the block input and the previous
outputs; `conv5 * 0.2 + x`), then `* 0.2 + x` around the three.

Fast exact mode (the default): each conv followed by LeakyReLU runs as one oneDNN convolution with the
activation in its epilogue, the trunk's `feat + conv_body(...)` adds inside the conv, and the residual
scalings run in place (the same rounding as the plain ops: bit-identical on CPU where PyTorch's plain
conv also picks oneDNN, as on the released configuration; on CUDA and under autograd the plain ops run). `facerestore.archs.ops.official_ops()` switches to the official op sequence. Autocast
(bfloat16 / float16) works; inputs may be channels_last.
"""
from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from .ops import conv2d_act, fast_ops_enabled

NEGATIVE_SLOPE = 0.2  # every LeakyReLU of the network
RESIDUAL_SCALE = 0.2  # "empirically" scaled residuals of the dense blocks and of each RRDB
UNSHUFFLE = {1: 4, 2: 2, 4: 1}  # network scale -> pixel-unshuffle factor of the input


def _leaky(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """LeakyReLU(0.2)(conv(x)): one fused convolution in fast mode (same rounding)."""
    if fast_ops_enabled():
        return conv2d_act(x, conv.weight, conv.bias, 1, 1, "leaky_relu", NEGATIVE_SLOPE)
    return F.leaky_relu(conv(x), NEGATIVE_SLOPE)


def _scaled_residual(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """out * 0.2 + x, as the official code rounds it (multiply, then add); in place on `out` (a fresh
    tensor) unless autograd needs it."""
    if fast_ops_enabled() and not (torch.is_grad_enabled() and out.requires_grad) and out.dtype == x.dtype:
        return out.mul_(RESIDUAL_SCALE).add_(x)
    return out * RESIDUAL_SCALE + x


class ResidualDenseBlock(nn.Module):
    """Five 3x3 convs; conv k sees the block input and the outputs of convs 1..k-1 (concatenated)."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = _leaky(x, self.conv1)
        x2 = _leaky(torch.cat((x, x1), 1), self.conv2)
        x3 = _leaky(torch.cat((x, x1, x2), 1), self.conv3)
        x4 = _leaky(torch.cat((x, x1, x2, x3), 1), self.conv4)
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return _scaled_residual(x5, x)


class RRDB(nn.Module):
    """Residual in residual dense block: three dense blocks, then `* 0.2 + x`."""

    def __init__(self, num_feat: int, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _scaled_residual(self.rdb3(self.rdb2(self.rdb1(x))), x)


class RRDBNet(nn.Module):
    """BasicSR's RRDBNet: official constructor, state-dict layout and forward.

    Input (N, num_in_ch, H, W) in [0, 1] (RGB for the Real-ESRGAN models); output (N, num_out_ch,
    H*scale, W*scale), not clamped. Scale 2 needs even H and W, scale 1 multiples of 4 (the
    Real-ESRGAN pipeline pads to them, see facerestore.upscale).
    """

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, scale: int = 4, num_feat: int = 64,
                 num_block: int = 23, num_grow_ch: int = 32) -> None:
        super().__init__()
        if scale not in UNSHUFFLE:
            raise ValueError(f"RRDBNet scale must be 1, 2 or 4, got {scale!r}")
        self.scale = scale
        self.conv_first = nn.Conv2d(num_in_ch * UNSHUFFLE[scale] ** 2, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*(RRDB(num_feat, num_grow_ch) for _ in range(num_block)))
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        factor = UNSHUFFLE[self.scale]
        if factor > 1:
            if x.shape[-2] % factor or x.shape[-1] % factor:
                raise ValueError(f"a scale-{self.scale} RRDBNet needs height and width divisible by {factor}, "
                                 f"got {tuple(x.shape[-2:])} (pad the input, as facerestore.upscale does)")
            # same channel order as BasicSR's pixel_unshuffle: c * f * f + row phase * f + column phase
            x = F.pixel_unshuffle(x, factor)
        feat = self.conv_first(x)
        if fast_ops_enabled():
            feat = conv2d_act(self.body(feat), self.conv_body.weight, self.conv_body.bias, 1, 1, residual=feat)
        else:
            feat = feat + self.conv_body(self.body(feat))
        feat = _leaky(F.interpolate(feat, scale_factor=2, mode="nearest"), self.conv_up1)
        feat = _leaky(F.interpolate(feat, scale_factor=2, mode="nearest"), self.conv_up2)
        return self.conv_last(_leaky(feat, self.conv_hr))


_BLOCK_KEY = re.compile(r"^body\.(\d+)\.")


def rrdbnet_config_from_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, int]:
    """RRDBNet constructor arguments (num_in_ch, num_out_ch, scale, num_feat, num_block, num_grow_ch)
    of a state dict in the BasicSR layout (e.g. the released Real-ESRGAN files' `params_ema`, or a
    community 4x model with another block count).

    The scale follows from the channel counts, assuming the input and output images have the same
    channels (true of every released model): conv_first takes 1x (scale 4), 4x (scale 2) or 16x
    (scale 1) the output channels."""
    missing = [k for k in ("conv_first.weight", "conv_last.weight", "body.0.rdb1.conv1.weight") if k not in state_dict]
    if missing:
        raise ValueError(f"not an RRDBNet state dict in the BasicSR layout (missing {', '.join(missing)}); "
                         "if it is a training checkpoint, pass its 'params_ema' (or 'params') entry")
    first_in = state_dict["conv_first.weight"].shape[1]
    num_out_ch = state_dict["conv_last.weight"].shape[0]
    scales = [scale for scale, factor in UNSHUFFLE.items() if first_in == num_out_ch * factor ** 2]
    if not scales:
        raise ValueError(f"cannot tell the scale of this RRDBNet: conv_first takes {first_in} channels and "
                         f"conv_last gives {num_out_ch}; expected 1, 4 or 16 input channels per output channel")
    scale = scales[0]
    blocks = {int(m.group(1)) for key in state_dict if (m := _BLOCK_KEY.match(key))}
    return {
        "num_in_ch": first_in // UNSHUFFLE[scale] ** 2,
        "num_out_ch": num_out_ch,
        "scale": scale,
        "num_feat": state_dict["conv_first.weight"].shape[0],
        "num_block": max(blocks) + 1,
        "num_grow_ch": state_dict["body.0.rdb1.conv1.weight"].shape[0],
    }
