"""DPR: Deep Single-Image Portrait Relighting (Zhou, Hadap, Sunkavalli, Jacobs; ICCV 2019).

An hourglass network on the L channel (Lab) of a portrait. Its innermost level holds a small lighting
network: it predicts the input's lighting as 9 second-order spherical-harmonics (SH) coefficients
from the first 27 channels, then replaces those channels with features decoded from the *target*
SH, so the decoder renders the face under the new light.

The module layout reproduces the released checkpoints (`trained_model_03.t7`, 512 px, and
`trained_model_1024_03.t7`, 1024 px) key for key, including their quirks:

- the lighting net and every inner hourglass block are shared sub-modules reachable under several
  names (`light` = `HG0.middle` = `HG1.middle.middle` = ..., `HG0` = `HG1.middle` = ...). The files
  store every alias, so we register the same module objects under all these names; the forward
  still runs each of them once (the recursion goes HG3 -> HG2 -> HG1 -> HG0 -> light).
- every BasicBlock owns a 1x1 `shortcuts` conv, which is dead (identity shortcut) when the in and
  out channels are equal;
- the 1024 model wraps a complete 512-style net whose own pre/post layers are dead.

The released `.t7` files are legacy (pre-1.6) torch pickles of a bare state dict; they load with
`torch.load(weights_only=True)` (see `facerestore.hub.read_checkpoint`) and `strict=True`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .ops import conv_norm_act, max_pool2x2

LIGHT_FEATURES = 27  # innermost channels that carry lighting
SH_COEFFICIENTS = 9  # second-order SH, grey


class BasicBlock(nn.Module):
    """conv3x3 -> norm -> ReLU -> conv3x3 -> norm -> + shortcut -> ReLU.

    norm="batch": BatchNorm2d; norm="instance": InstanceNorm2d without affine parameters or running
    statistics (instance statistics also at inference, as in the official model).
    """

    def __init__(self, in_channels: int, out_channels: int, norm: str = "batch") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        if norm == "batch":
            self.bn1, self.bn2 = nn.BatchNorm2d(out_channels), nn.BatchNorm2d(out_channels)
        elif norm == "instance":
            self.bn1, self.bn2 = nn.InstanceNorm2d(out_channels), nn.InstanceNorm2d(out_channels)
        else:
            raise ValueError(f"norm must be 'batch' or 'instance', got {norm!r}")
        # Stored in the checkpoints for every block; used only when the channel count changes.
        self.shortcuts = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.identity_shortcut = in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = conv_norm_act(x, self.conv1, self.bn1)
        shortcut = x if self.identity_shortcut else self.shortcuts(x)
        return conv_norm_act(out, self.conv2, self.bn2, residual=shortcut)


class LightingNet(nn.Module):
    """The innermost level: predicts the source SH and injects the target SH.

    Input: features (B, C, h, w) whose first 27 channels carry lighting. Returns the features with
    those channels replaced by the target-light features (constant over space), the remaining
    channels (the lighting-free "face" features) and the predicted source SH (B, 9, 1, 1).
    """

    def __init__(self, in_channels: int = LIGHT_FEATURES, sh_channels: int = SH_COEFFICIENTS,
                 mid_channels: int = 128) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.predict_FC1 = nn.Conv2d(in_channels, mid_channels, 1, bias=False)
        self.predict_relu1 = nn.PReLU()
        self.predict_FC2 = nn.Conv2d(mid_channels, sh_channels, 1, bias=False)
        self.post_FC1 = nn.Conv2d(sh_channels, mid_channels, 1, bias=False)
        self.post_relu1 = nn.PReLU()
        self.post_FC2 = nn.Conv2d(mid_channels, in_channels, 1, bias=False)

    def predict(self, feat: torch.Tensor) -> torch.Tensor:
        """The source light (B, 9, 1, 1) from the spatial mean of the lighting channels."""
        light_feat = feat[:, : self.in_channels].mean((2, 3), keepdim=True)
        return self.predict_FC2(self.predict_relu1(self.predict_FC1(light_feat)))

    def forward(self, feat: torch.Tensor, target_sh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        face_feat = feat[:, self.in_channels:]
        source_sh = self.predict(feat)
        target_feat = F.relu(self.post_FC2(self.post_relu1(self.post_FC1(target_sh))))
        # The official code tiles with .repeat and writes into the input in place; a broadcast view
        # concatenated with the untouched channels gives the same tensor without the extra copy.
        target_feat = target_feat.expand(-1, -1, feat.shape[2], feat.shape[3])
        if target_feat.shape[0] != feat.shape[0]:  # one light for a whole batch of faces
            target_feat = target_feat.expand(feat.shape[0], -1, -1, -1)
        return torch.cat([target_feat, face_feat], 1), face_feat, source_sh


class HourglassBlock(nn.Module):
    """One hourglass level: out = upper(x) + up(low2(inner(low1(pool(x)))))."""

    def __init__(self, in_channels: int, mid_channels: int, middle: nn.Module) -> None:
        super().__init__()
        self.upper = BasicBlock(in_channels, in_channels, norm="instance")
        self.low1 = BasicBlock(in_channels, mid_channels, norm="batch")
        self.middle = middle
        self.low2 = BasicBlock(mid_channels, in_channels, norm="instance")

    def forward(self, x: torch.Tensor, target_sh: torch.Tensor, count: int = 0,
                skip_count: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        lower = self.low1(max_pool2x2(x))
        if isinstance(self.middle, HourglassBlock):
            lower, face_feat, source_sh = self.middle(lower, target_sh, count + 1, skip_count)
        else:
            lower, face_feat, source_sh = self.middle(lower, target_sh)
        lower = F.interpolate(self.low2(lower), scale_factor=2.0, mode="nearest")
        # skip_count: the outermost `skip_count` levels drop their skip branch (0 = all levels keep it).
        if count >= skip_count:
            lower = lower + self.upper(x)
        return lower, face_feat, source_sh


def _as_sh_tensor(sh: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Target SH as (B or 1, 9, 1, 1) in the input's dtype/device; (B, 9) and (9,) are accepted too."""
    sh = torch.as_tensor(sh, dtype=like.dtype, device=like.device)
    if sh.dim() == 1:
        sh = sh[None]
    if sh.dim() == 2:
        sh = sh[:, :, None, None]
    if sh.shape[1:] != (SH_COEFFICIENTS, 1, 1):
        raise ValueError(f"target SH must have shape (B, 9, 1, 1), (B, 9) or (9,), got {tuple(sh.shape)}")
    return sh


class HourglassNet(nn.Module):
    size_multiple = 16  # input sides must be divisible by this (four 2x poolings)
    """The 512 px DPR network (`model/defineHourglass_512_gray_skip.py: HourglassNet`).

    forward(x, sh, skip_count=0) -> (out_img, out_light):
      x: (B, 1, H, W) L channel in [0, 1] (H, W divisible by 16); sh: target light (B or 1, 9, 1, 1),
      out_img: relit L channel in [0, 1] (sigmoid); out_light: SH predicted for the input (B, 9, 1, 1).
    """

    def __init__(self, baseFilter: int = 16, gray: bool = True) -> None:  # noqa: N803 (official name)
        super().__init__()
        channels = 1 if gray else 3
        nc_pre, nc_hg3, nc_hg2, nc_hg1 = baseFilter, baseFilter, 2 * baseFilter, 4 * baseFilter
        nc_hg0 = 8 * baseFilter + LIGHT_FEATURES

        self.pre_conv = nn.Conv2d(channels, nc_pre, 5, padding=2)
        self.pre_bn = nn.BatchNorm2d(nc_pre)
        self.light = LightingNet(LIGHT_FEATURES, SH_COEFFICIENTS, 128)
        self.HG0 = HourglassBlock(nc_hg1, nc_hg0, self.light)
        self.HG1 = HourglassBlock(nc_hg2, nc_hg1, self.HG0)
        self.HG2 = HourglassBlock(nc_hg3, nc_hg2, self.HG1)
        self.HG3 = HourglassBlock(nc_pre, nc_hg3, self.HG2)
        self.conv_1 = nn.Conv2d(nc_pre, nc_pre, 3, padding=1)
        self.bn_1 = nn.BatchNorm2d(nc_pre)
        self.conv_2 = nn.Conv2d(nc_pre, nc_pre, 1)
        self.bn_2 = nn.BatchNorm2d(nc_pre)
        self.conv_3 = nn.Conv2d(nc_pre, nc_pre, 1)
        self.bn_3 = nn.BatchNorm2d(nc_pre)
        self.output = nn.Conv2d(nc_pre, channels, 1)

    def hourglass(self, feat: torch.Tensor, sh: torch.Tensor, skip_count: int = 0
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """HG3..HG0 + lighting net on pre-conv features: (features, face features, source SH)."""
        return self.HG3(feat, _as_sh_tensor(sh, feat), 0, skip_count)

    def encode_light(self, feat: torch.Tensor) -> torch.Tensor:
        """Source light from pre-conv features, running only the encoder path (pool + low1 of each
        level): the same value as the forward's out_light, at about half the cost."""
        block = self.HG3
        while isinstance(block, HourglassBlock):
            feat = block.low1(max_pool2x2(feat))
            block = block.middle
        return block.predict(feat)

    def predict_light(self, x: torch.Tensor) -> torch.Tensor:
        """SH (B, 9, 1, 1) of the light in image x (B, 1, H, W), without rendering a relit image."""
        return self.encode_light(conv_norm_act(x, self.pre_conv, self.pre_bn))

    def head(self, feat: torch.Tensor) -> torch.Tensor:
        """conv_1..conv_3 + output + sigmoid: hourglass features -> image in [0, 1]."""
        feat = conv_norm_act(feat, self.conv_1, self.bn_1)
        feat = conv_norm_act(feat, self.conv_2, self.bn_2)
        feat = conv_norm_act(feat, self.conv_3, self.bn_3)
        return torch.sigmoid(self.output(feat))

    def forward(self, x: torch.Tensor, sh: torch.Tensor, skip_count: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        feat = conv_norm_act(x, self.pre_conv, self.pre_bn)
        feat, _, source_sh = self.hourglass(feat, sh, skip_count)
        return self.head(feat), source_sh


class HourglassNet1024(nn.Module):
    size_multiple = 32  # one more 2x pooling than the 512 network
    """The 1024 px DPR network (`defineHourglass_1024_gray_skip_matchFeature.py: HourglassNet_1024`).

    Its own pre_conv/BN/ReLU and 2x max-pool bring the 1024 input to 512-scale features, which go
    through the inner net's hourglass (`model_512.HG3` ...; the inner net's pre/post layers are stored
    but unused), then a nearest 2x upsample and its own conv_1..output + sigmoid.

    forward(x, sh, skip_count=0) -> (out_img, out_feat, out_light, None); out_feat are the innermost
    lighting-free features (B, 128, H/32, W/32), returned as the official model does.
    """

    def __init__(self, model_512: HourglassNet | None = None, baseFilter: int = 16) -> None:  # noqa: N803
        super().__init__()
        self.model_512 = model_512 if model_512 is not None else HourglassNet(baseFilter)
        channels = self.model_512.output.out_channels
        self.pre_conv = nn.Conv2d(channels, baseFilter, 5, padding=2)
        self.pre_bn = nn.BatchNorm2d(baseFilter)
        self.conv_1 = nn.Conv2d(baseFilter, baseFilter, 3, padding=1)
        self.bn_1 = nn.BatchNorm2d(baseFilter)
        self.conv_2 = nn.Conv2d(baseFilter, baseFilter, 1)
        self.bn_2 = nn.BatchNorm2d(baseFilter)
        self.conv_3 = nn.Conv2d(baseFilter, baseFilter, 1)
        self.bn_3 = nn.BatchNorm2d(baseFilter)
        self.output = nn.Conv2d(baseFilter, channels, 1)

    # The wrapper's post-processing is the same sequence as the 512 net's, on its own layers.
    head = HourglassNet.head

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Full-resolution pre-conv, then 2x max-pool: the inner hourglass's input."""
        return max_pool2x2(conv_norm_act(x, self.pre_conv, self.pre_bn))

    def predict_light(self, x: torch.Tensor) -> torch.Tensor:
        """SH (B, 9, 1, 1) of the light in image x (B, 1, H, W), without rendering a relit image."""
        return self.model_512.encode_light(self.features(x))

    def forward(self, x: torch.Tensor, sh: torch.Tensor, skip_count: int = 0
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, None]:
        feat = self.features(x)
        feat, face_feat, source_sh = self.model_512.hourglass(feat, sh, skip_count)
        feat = F.interpolate(feat, scale_factor=2.0, mode="nearest")
        return self.head(feat), face_feat, source_sh, None


HourglassNet_1024 = HourglassNet1024  # the official class name
