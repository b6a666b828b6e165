"""GPEN: GAN Prior Embedded Network for Blind Face Restoration in the Wild
(Yang, Ren, Xie, Zhang; CVPR 2021).

An encoder of stride-2 convolutions maps the degraded face to one style code and to feature maps
at every resolution; a StyleGAN2 generator takes the code, and each of its style convs concatenates
(`isconcat`) the encoder feature of its resolution (weighted by the layer's "noise" strength) in
place of StyleGAN2's random noise. The forward is deterministic.

`FullGenerator` reproduces GPEN's released checkpoints (GPEN-BFR-256/512/1024/2048 and the
colorization, inpainting and seg2face heads) key for key, including the persistent FIR-kernel
buffers. Official call: `net(x)` -> (image, None), x RGB in [-1, 1].
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .stylegan2 import (ConstantInput, ConvLayer, EqualLinear, StyledConv, ToRGB, Variant, log2_size,
                        match_layout, style_mlp, stylegan2_channels, to_fast_layout)


class Generator(nn.Module):
    """GPEN's StyleGAN2 generator (rosinality layout: style, input, conv1, to_rgb1, convs, to_rgbs)."""

    def __init__(self, size: int, style_dim: int, n_mlp: int, channel_multiplier: float = 2,
                 blur_kernel: Sequence[int] = (1, 3, 3, 1), lr_mlp: float = 0.01, isconcat: bool = True,
                 narrow: float = 1) -> None:
        super().__init__()
        variant = Variant(blur_kernel=tuple(blur_kernel), kernels_in_state_dict=True)
        self.size, self.style_dim = size, style_dim
        feat = 2 if isconcat else 1  # the encoder feature doubles the channels of every style conv
        self.style = style_mlp(style_dim, n_mlp, lr_mlp, variant)
        channels = stylegan2_channels(channel_multiplier, narrow)
        self.input = ConstantInput(channels[4], param_name="input")
        self.conv1 = StyledConv(channels[4], channels[4], 3, style_dim, isconcat=isconcat, variant=variant)
        self.to_rgb1 = ToRGB(channels[4] * feat, style_dim, upsample=False, variant=variant, conv_name="conv")
        self.log_size = log2_size(size)
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.n_latent = self.log_size * 2 - 2
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        in_channels = channels[4]
        for level in range(3, self.log_size + 1):
            out_channels = channels[2 ** level]
            self.convs.append(StyledConv(in_channels * feat, out_channels, 3, style_dim, upsample=True,
                                         isconcat=isconcat, variant=variant))
            self.convs.append(StyledConv(out_channels * feat, out_channels, 3, style_dim, isconcat=isconcat,
                                         variant=variant))
            self.to_rgbs.append(ToRGB(out_channels * feat, style_dim, variant=variant, conv_name="conv"))
            in_channels = out_channels

    def forward(self, style: torch.Tensor, noise: Sequence[torch.Tensor | None], return_latents: bool = False,
                truncation: float = 1, truncation_latent: torch.Tensor | None = None,
                input_is_latent: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """style: (B, style_dim) code (a latent already when input_is_latent).
        noise: per style conv (conv1, convs.0, convs.1, ...): the encoder features [f4, f8, f8, f16, ...]."""
        if not input_is_latent:
            style = self.style(style)
        if truncation < 1:
            style = truncation_latent + truncation * (style - truncation_latent)
        latent = style.unsqueeze(1).expand(-1, self.n_latent, -1) if style.ndim < 3 else style

        out = match_layout(self.input(latent.shape[0]), noise[0])
        out = self.conv1(out, latent[:, 0], noise=noise[0])
        skip = self.to_rgb1(out, latent[:, 1])
        i = 1
        for conv1, conv2, noise1, noise2, to_rgb in zip(self.convs[::2], self.convs[1::2], noise[1::2], noise[2::2],
                                                        self.to_rgbs):
            out = conv1(out, latent[:, i], noise=noise1)
            out = conv2(out, latent[:, i + 1], noise=noise2)
            skip = to_rgb(out, latent[:, i + 2], skip)
            i += 2
        return skip, (latent if return_latents else None)


class FullGenerator(nn.Module):
    """GPEN's restoration network: encoder `ecd0..ecd{log2(size)-2}` + `final_linear` + `generator`.

    Official constructor `FullGenerator(size, style_dim, n_mlp, channel_multiplier=2,
    blur_kernel=[1, 3, 3, 1], lr_mlp=0.01, isconcat=True, narrow=1, device='cpu')`; `device` only
    chose between GPEN's CUDA and CPU op implementations and is accepted and ignored (this
    implementation is pure PyTorch on every device)."""

    def __init__(self, size: int, style_dim: int, n_mlp: int, channel_multiplier: float = 2,
                 blur_kernel: Sequence[int] = (1, 3, 3, 1), lr_mlp: float = 0.01, isconcat: bool = True,
                 narrow: float = 1, device: str | torch.device | None = None) -> None:
        super().__init__()
        variant = Variant(blur_kernel=tuple(blur_kernel), kernels_in_state_dict=True)
        channels = stylegan2_channels(channel_multiplier, narrow)
        self.log_size = log2_size(size)
        self.generator = Generator(size, style_dim, n_mlp, channel_multiplier=channel_multiplier,
                                   blur_kernel=blur_kernel, lr_mlp=lr_mlp, isconcat=isconcat, narrow=narrow)
        self.ecd0 = nn.Sequential(ConvLayer(3, channels[size], 1, variant=variant))
        in_channels = channels[size]
        for level in range(self.log_size, 2, -1):
            out_channels = channels[2 ** (level - 1)]
            setattr(self, f"ecd{self.log_size - level + 1}",
                    nn.Sequential(ConvLayer(in_channels, out_channels, 3, downsample=True, variant=variant)))
            in_channels = out_channels
        self.final_linear = nn.Sequential(EqualLinear(channels[4] * 4 * 4, style_dim, activation="fused_lrelu"))

    def forward(self, inputs: torch.Tensor, return_latents: bool = False, inject_index: int | None = None,
                truncation: float = 1, truncation_latent: torch.Tensor | None = None,
                input_is_latent: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """inputs: (B, 3, size, size) RGB in [-1, 1] -> (image (B, 3, size, size) RGB ~[-1, 1],
        latents (B, n_latent, style_dim) with return_latents, else None).

        `inject_index` (style mixing) only matters with two style codes, which this network never
        passes; it is accepted for the official signature."""
        x = to_fast_layout(inputs)
        features = []
        for i in range(self.log_size - 1):
            x = getattr(self, f"ecd{i}")(x)
            features.append(x)
        style = self.final_linear(x.flatten(1))
        # generator noise inputs, coarse to fine: f4 for conv1, then each feature twice
        noise = [features[-1]] + [f for f in reversed(features[:-1]) for _ in range(2)]
        image, latents = self.generator(style, noise, return_latents=return_latents, truncation=truncation,
                                        truncation_latent=truncation_latent, input_is_latent=input_is_latent)
        return image.contiguous(), latents
