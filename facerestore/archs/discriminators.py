"""Discriminators used to train the restoration models.

- `StyleGAN2Discriminator`: residual discriminator with minibatch standard deviation, as GFP-GAN
  (BasicSR's layout: `conv_body`, FIR kernels not stored) and GPEN (rosinality's layout: `convs`,
  FIR kernels stored as buffers, `narrow` channels) train with; `gfpgan_discriminator` and
  `gpen_discriminator` build the two layouts, so their released discriminator checkpoints load.
- `FacialComponentDiscriminator`: GFP-GAN's small patch discriminator for eye and mouth crops; it
  also returns two feature maps for the component style (Gram) loss.
- `MultiScaleDiscriminator`: spectrally normalised patch discriminators on the image at several
  scales (halved by average pooling), for DFDNet's multi-scale hinge loss (and DPR's optional one).

Every discriminator's forward(x, return_feats=False) returns the scores, or (scores, features)
with `return_feats=True` (features: a list of intermediate maps, for feature matching or style).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .stylegan2 import ORIGINAL, ConvLayer, EqualLinear, Variant, log2_size, stylegan2_channels


class DiscriminatorResBlock(nn.Module):
    """conv3x3 -> conv3x3 with x2 downsampling, plus a 1x1 downsampling skip, scaled by 1/sqrt(2)."""

    def __init__(self, in_channels: int, out_channels: int, variant: Variant = ORIGINAL) -> None:
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3, variant=variant)
        self.conv2 = ConvLayer(in_channels, out_channels, 3, downsample=True, variant=variant)
        self.skip = ConvLayer(in_channels, out_channels, 1, downsample=True, bias=False, activate=False,
                              variant=variant)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)


def minibatch_stddev(x: torch.Tensor, group_size: int = 4, num_features: int = 1) -> torch.Tensor:
    """Append the standard deviation over groups of samples as extra channel(s) (StyleGAN2).

    Groups take every (N/G)-th sample, as StyleGAN2 reshapes (G, N/G, ...). G is the largest
    divisor of the batch size not above `group_size`, so any batch size works."""
    n, c, h, w = x.shape
    group = max(g for g in range(1, min(group_size, n) + 1) if n % g == 0)
    y = x.float().view(group, -1, num_features, c // num_features, h, w)
    y = torch.sqrt(y.var(0, unbiased=False) + 1e-8)  # (N/G, F, C/F, H, W)
    y = y.mean([2, 3, 4], keepdim=True).squeeze(2)  # (N/G, F, 1, 1)
    y = y.repeat(group, 1, h, w).to(x.dtype)
    return torch.cat([x, y], dim=1)


class StyleGAN2Discriminator(nn.Module):
    """StyleGAN2's residual discriminator: (N, 3, S, S) -> (N, 1) scores (logits).

    body: 1x1 ConvLayer from RGB, then a DiscriminatorResBlock per halving down to 4x4; then
    minibatch stddev, `final_conv` (3x3) and `final_linear` (two equalized linear layers).
    body_name: "conv_body" (BasicSR/GFP-GAN) or "convs" (GPEN). Features for feature matching are
    the outputs of the residual blocks and of final_conv.
    """

    def __init__(self, size: int, channel_multiplier: float = 2, narrow: float = 1.0, stddev_group: int = 4,
                 stddev_feat: int = 1, body_name: str = "conv_body", variant: Variant = ORIGINAL) -> None:
        super().__init__()
        channels = stylegan2_channels(channel_multiplier, narrow)
        log_size = log2_size(size)
        layers: list[nn.Module] = [ConvLayer(3, channels[size], 1, variant=variant)]
        in_channels = channels[size]
        for i in range(log_size, 2, -1):
            out_channels = channels[2 ** (i - 1)]
            layers.append(DiscriminatorResBlock(in_channels, out_channels, variant))
            in_channels = out_channels
        self.body_name = body_name
        self.add_module(body_name, nn.Sequential(*layers))
        self.stddev_group, self.stddev_feat = stddev_group, stddev_feat
        self.final_conv = ConvLayer(in_channels + stddev_feat, channels[4], 3, variant=variant)
        self.final_linear = nn.Sequential(
            EqualLinear(channels[4] * 4 * 4, channels[4], activation="fused_lrelu"),
            EqualLinear(channels[4], 1),
        )

    def forward(self, x: torch.Tensor, return_feats: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        feats = []
        for index, layer in enumerate(getattr(self, self.body_name)):
            x = layer(x)
            if index > 0:
                feats.append(x)
        x = self.final_conv(minibatch_stddev(x, self.stddev_group, self.stddev_feat))
        feats.append(x)
        out = self.final_linear(x.flatten(1))
        return (out, feats) if return_feats else out


def gfpgan_discriminator(out_size: int = 512, channel_multiplier: float = 1, narrow: float = 1.0,
                         **kwargs) -> StyleGAN2Discriminator:
    """GFP-GAN's discriminator (BasicSR StyleGAN2Discriminator; GFP-GAN trains with channel_multiplier 1)."""
    return StyleGAN2Discriminator(out_size, channel_multiplier, narrow, body_name="conv_body", **kwargs)


def gpen_discriminator(size: int = 512, channel_multiplier: float = 2, narrow: float = 1.0,
                       **kwargs) -> StyleGAN2Discriminator:
    """GPEN's discriminator (rosinality layout `convs.*`, FIR kernels stored in the state dict)."""
    return StyleGAN2Discriminator(size, channel_multiplier, narrow, body_name="convs",
                                  variant=Variant(kernels_in_state_dict=True), **kwargs)


class FacialComponentDiscriminator(nn.Module):
    """GFP-GAN's eye/mouth discriminator: five 3x3 ConvLayers (two of them downsampling) and a
    3x3 score map. Features for the style loss: after conv3 and after conv5."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = ConvLayer(3, 64, 3)
        self.conv2 = ConvLayer(64, 128, 3, downsample=True)
        self.conv3 = ConvLayer(128, 128, 3)
        self.conv4 = ConvLayer(128, 256, 3, downsample=True)
        self.conv5 = ConvLayer(256, 256, 3)
        self.final_conv = ConvLayer(256, 1, 3, activate=False)

    def forward(self, x: torch.Tensor, return_feats: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        mid = self.conv3(self.conv2(self.conv1(x)))
        deep = self.conv5(self.conv4(mid))
        out = self.final_conv(deep)
        return (out, [mid, deep]) if return_feats else out


def _sn_conv(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    conv = nn.Conv2d(in_channels, out_channels, 4, stride=stride, padding=1)
    return nn.utils.parametrizations.spectral_norm(conv)


class PatchDiscriminator(nn.Module):
    """PatchGAN (pix2pix): 4x4 spectrally normalised convs, `num_layers` of them with stride 2,
    LeakyReLU(0.2); (N, C, H, W) -> (N, 1, h, w) score map."""

    def __init__(self, in_channels: int = 3, channels: int = 64, num_layers: int = 3, max_channels: int = 512) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        current = in_channels
        for i in range(num_layers + 1):
            out = min(channels * 2 ** i, max_channels)
            blocks.append(nn.Sequential(_sn_conv(current, out, 2 if i < num_layers else 1), nn.LeakyReLU(0.2)))
            current = out
        self.blocks = nn.Sequential(*blocks)
        self.final_conv = _sn_conv(current, 1, 1)

    def forward(self, x: torch.Tensor, return_feats: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        feats = []
        for block in self.blocks:
            x = block(x)
            feats.append(x)
        out = self.final_conv(x)
        return (out, feats) if return_feats else out


class MultiScaleDiscriminator(nn.Module):
    """`num_scales` PatchDiscriminators on the image, the image halved (3x3 average pooling) for
    each next one. Scores: a list, full resolution first; features: all scales' maps in one list."""

    def __init__(self, in_channels: int = 3, num_scales: int = 3, channels: int = 64, num_layers: int = 3) -> None:
        super().__init__()
        self.scales = nn.ModuleList(PatchDiscriminator(in_channels, channels, num_layers) for _ in range(num_scales))
        # the coarsest input must survive num_layers halvings and two 4x4 stride-1 convs
        self.min_size = 2 ** (num_scales - 1) * 2 ** num_layers * 3

    def forward(self, x: torch.Tensor, return_feats: bool = False
                ) -> list[torch.Tensor] | tuple[list[torch.Tensor], list[torch.Tensor]]:
        if min(x.shape[-2:]) < self.min_size:
            raise ValueError(f"MultiScaleDiscriminator with {len(self.scales)} scales needs images of at least "
                             f"{self.min_size} px, got {tuple(x.shape[-2:])}: use fewer scales or layers")
        outs: list[torch.Tensor] = []
        feats: list[torch.Tensor] = []
        for index, disc in enumerate(self.scales):
            if index > 0:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            out, scale_feats = disc(x, return_feats=True)
            outs.append(out)
            feats += scale_feats
        return (outs, feats) if return_feats else outs


__all__ = [
    "StyleGAN2Discriminator", "gfpgan_discriminator", "gpen_discriminator", "FacialComponentDiscriminator",
    "PatchDiscriminator", "MultiScaleDiscriminator", "DiscriminatorResBlock", "minibatch_stddev",
]
