"""GFP-GAN: Towards Real-World Blind Face Restoration with Generative Facial Prior
(Wang, Li, Zhang, Shan; CVPR 2021).

A U-Net encodes the degraded face into a style code (one latent per generator layer) and, at every
resolution, spatial feature transforms (SFT: per-pixel scale and shift). A StyleGAN2 decoder takes
the code and applies the transforms to its features after the first conv of each resolution (to
half of the channels with `sft_half`).

Two architectures reproduce the released checkpoints key for key:
- `GFPGANv1` (GFPGANv1.pth): BasicSR's StyleGAN2 layers (equalized learning rate, FIR resampling).
- `GFPGANv1Clean` (GFPGANCleanv1-NoCE-C2.pth = v1.2, GFPGANv1.3.pth, GFPGANv1.4.pth): plain convs
  and bilinear resampling, no custom ops.

Both keep the official call, `net(x, return_latents=False, return_rgb=True, randomize_noise=True)`
-> (image, out_rgbs), with x RGB in [-1, 1]. The decoder adds N(0, 1) noise to every style conv
(fresh draws from the global torch RNG unless `randomize_noise=False`, which uses the stored noise
buffers); `noise=[...]` injects given noise instead.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .ops import FusedSequential, conv2d_act, conv_parameters, upsample_conv3x3
from .stylegan2 import (CLEAN, ORIGINAL, SQRT2, ConstantInput, ConvLayer, EqualConv2d, EqualLinear,
                        FusedLeakyReLU, ScaledLeakyReLU, StyleConv, ToRGB, Variant, log2_size, match_layout,
                        style_mlp, stylegan2_channels, to_fast_layout)


class StyleGAN2GeneratorSFT(nn.Module):
    """StyleGAN2 generator whose features are modulated by the U-Net's SFT conditions (BasicSR
    layout: style_mlp, constant_input, style_conv1, to_rgb1, style_convs, to_rgbs, noises)."""

    def __init__(self, out_size: int, num_style_feat: int = 512, num_mlp: int = 8, channel_multiplier: float = 2,
                 lr_mlp: float = 0.01, narrow: float = 1, sft_half: bool = False, variant: Variant = ORIGINAL) -> None:
        super().__init__()
        self.num_style_feat, self.sft_half = num_style_feat, sft_half
        self.style_mlp = style_mlp(num_style_feat, num_mlp, lr_mlp, variant)
        channels = stylegan2_channels(channel_multiplier, narrow)
        self.constant_input = ConstantInput(channels[4], size=4)
        self.style_conv1 = StyleConv(channels[4], channels[4], 3, num_style_feat, variant=variant)
        self.to_rgb1 = ToRGB(channels[4], num_style_feat, upsample=False, variant=variant)
        self.log_size = log2_size(out_size)
        self.num_layers = (self.log_size - 2) * 2 + 1  # style convs, i.e. noise inputs
        self.num_latent = self.log_size * 2 - 2
        self.style_convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for layer in range(self.num_layers):
            resolution = 2 ** ((layer + 5) // 2)
            self.noises.register_buffer(f"noise{layer}", torch.randn(1, 1, resolution, resolution))
        in_channels = channels[4]
        for level in range(3, self.log_size + 1):
            out_channels = channels[2 ** level]
            self.style_convs.append(StyleConv(in_channels, out_channels, 3, num_style_feat, upsample=True, variant=variant))
            self.style_convs.append(StyleConv(out_channels, out_channels, 3, num_style_feat, variant=variant))
            self.to_rgbs.append(ToRGB(out_channels, num_style_feat, upsample=True, variant=variant))
            in_channels = out_channels

    def noise_shapes(self, batch: int = 1) -> list[tuple[int, int, int, int]]:
        """Shapes of the per-layer noise, in call order (style_conv1, style_convs.0, .1, ...)."""
        return [(batch, 1, 2 ** ((i + 5) // 2), 2 ** ((i + 5) // 2)) for i in range(self.num_layers)]

    def forward(self, styles: torch.Tensor, conditions: Sequence[torch.Tensor], input_is_latent: bool = False,
                noise: Sequence[torch.Tensor | None] | None = None, randomize_noise: bool = True,
                return_latents: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """styles: (B, num_style_feat), or (B, num_latent, num_style_feat) with one code per layer.
        conditions: [scale, shift] per resolution 8, 16, ... (fewer levels are allowed).
        noise: one tensor (or None: fresh draw) per style conv; default: fresh draws, or the stored
        buffers when randomize_noise is False."""
        if not input_is_latent:
            styles = self.style_mlp(styles)
        if noise is None:
            noise = ([None] * self.num_layers if randomize_noise
                     else [getattr(self.noises, f"noise{i}") for i in range(self.num_layers)])
        elif len(noise) != self.num_layers:
            raise ValueError(f"noise must hold {self.num_layers} tensors (or None), got {len(noise)}")
        latent = styles.unsqueeze(1).expand(-1, self.num_latent, -1) if styles.ndim < 3 else styles

        out = match_layout(self.constant_input(latent.shape[0]), conditions[0] if conditions else None)
        out = self.style_conv1(out, latent[:, 0], noise=noise[0])
        skip = self.to_rgb1(out, latent[:, 1])
        i = 1
        for conv1, conv2, noise1, noise2, to_rgb in zip(self.style_convs[::2], self.style_convs[1::2],
                                                        noise[1::2], noise[2::2], self.to_rgbs):
            out = conv1(out, latent[:, i], noise=noise1)
            if i < len(conditions):
                out = self.apply_sft(out, conditions[i - 1], conditions[i])
            out = conv2(out, latent[:, i + 1], noise=noise2)
            skip = to_rgb(out, latent[:, i + 2], skip)
            i += 2
        return skip, (latent if return_latents else None)

    def apply_sft(self, out: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        """out * scale + shift, on the second half of the channels only with sft_half."""
        if not self.sft_half:
            return torch.addcmul(shift, out, scale)
        half = out.shape[1] // 2
        return torch.cat([out[:, :half], torch.addcmul(shift, out[:, half:], scale)], dim=1)


class _GFPGAN(nn.Module):
    """The forward shared by both architectures; subclasses build the layers."""

    log_size: int
    num_style_feat: int
    different_w: bool
    input_is_latent: bool
    stylegan_decoder: StyleGAN2GeneratorSFT

    def _activate(self, x: torch.Tensor) -> torch.Tensor:
        """Activation after conv_body_first and final_conv (part of those layers in GFPGANv1)."""
        return x

    def noise_shapes(self, batch: int = 1) -> list[tuple[int, int, int, int]]:
        """Shapes of the decoder's per-layer noise for a batch, in the order the forward draws them."""
        return self.stylegan_decoder.noise_shapes(batch)

    def forward(self, x: torch.Tensor, return_latents: bool = False, return_rgb: bool = True,
                randomize_noise: bool = True, noise: Sequence[torch.Tensor | None] | None = None,
                **kwargs) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x: (B, 3, S, S) RGB in [-1, 1] -> (image (B, 3, S, S) RGB ~[-1, 1], out_rgbs).

        out_rgbs: the U-Net's RGB prediction per resolution 8..S when return_rgb, else [].
        noise: per style-conv noise, see `StyleGAN2GeneratorSFT.forward` (not in the official call).
        Other keywords (the official inference passes `weight=0.5`) are accepted and ignored, like
        the official forward does."""
        x = to_fast_layout(x)
        unet_skips, conditions, out_rgbs = [], [], []
        feat = self._activate(self.conv_body_first(x))
        for down in self.conv_body_down:
            feat = down(feat)
            unet_skips.insert(0, feat)
        feat = self._activate(self.final_conv(feat))
        style_code = self.final_linear(feat.flatten(1))
        if self.different_w:
            style_code = style_code.view(style_code.shape[0], -1, self.num_style_feat)
        for i, up in enumerate(self.conv_body_up):
            feat = up(feat + unet_skips[i])
            conditions += [self.condition_scale[i](feat), self.condition_shift[i](feat)]
            if return_rgb:
                out_rgbs.append(self.toRGB[i](feat))
        image, _ = self.stylegan_decoder(style_code, conditions, input_is_latent=self.input_is_latent, noise=noise,
                                         randomize_noise=randomize_noise, return_latents=return_latents)
        return image.contiguous(), [rgb.contiguous() for rgb in out_rgbs]

    def _load_decoder(self, decoder_load_path: str | None, fix_decoder: bool) -> None:
        if decoder_load_path:
            checkpoint = torch.load(decoder_load_path, map_location="cpu", weights_only=True)
            self.stylegan_decoder.load_state_dict(checkpoint["params_ema"])
        if fix_decoder:
            for param in self.stylegan_decoder.parameters():
                param.requires_grad = False


def _unet_channels(channel_multiplier: float, narrow: float) -> dict[int, int]:
    return stylegan2_channels(channel_multiplier, narrow * 0.5)  # the U-Net has half the decoder's width


# ----------------------------------------------------------------------------------------------
# GFPGANv1: BasicSR's StyleGAN2 layers


class ResBlock(nn.Module):
    """Downsampling residual block of GFPGANv1's encoder: (conv3x3, blur + conv3x3 stride 2) + blur +
    1x1 stride-2 skip, sum / sqrt(2)."""

    def __init__(self, in_channels: int, out_channels: int, variant: Variant = ORIGINAL) -> None:
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3, variant=variant)
        self.conv2 = ConvLayer(in_channels, out_channels, 3, downsample=True, variant=variant)
        self.skip = ConvLayer(in_channels, out_channels, 1, downsample=True, bias=False, activate=False, variant=variant)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)).div_(SQRT2)


class ConvUpLayer(nn.Module):
    """Bilinear x2 upsampling, then an equalized conv (+ fused leaky ReLU with `activate`)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0, bias: bool = True,
                 activate: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.scale = 1 / math.sqrt(in_channels * kernel_size ** 2)
        self.padding = padding
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias and not activate else None
        self.activation = (FusedLeakyReLU(out_channels) if bias else ScaledLeakyReLU(0.2)) if activate else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight * self.scale
        if self.activation is None and self.bias is None and self.weight.shape[-1] == 1:
            # a bias-free 1x1 conv commutes with the (linear, per-channel) interpolation: run it first,
            # at a quarter of the pixels
            return F.interpolate(F.conv2d(x, weight), scale_factor=2, mode="bilinear", align_corners=False)
        if self.weight.shape[-1] == 3 and self.padding == 1:  # one convolution at the input's resolution
            out = upsample_conv3x3(x, weight, self.bias)
        else:
            out = F.conv2d(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False), weight, self.bias,
                           padding=self.padding)
        return self.activation(out) if self.activation is not None else out


class ResUpBlock(nn.Module):
    """Upsampling residual block of GFPGANv1's decoder U-Net: conv3x3, bilinear x2 + conv3x3, and a
    bilinear x2 + 1x1 skip, sum / sqrt(2)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3)
        self.conv2 = ConvUpLayer(in_channels, out_channels, 3, padding=1)
        self.skip = ConvUpLayer(in_channels, out_channels, 1, bias=False, activate=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)).div_(SQRT2)


def _sft_branch_v1(channels: int, out_channels: int, bias_init: float) -> nn.Sequential:
    return nn.Sequential(EqualConv2d(channels, channels, 3, padding=1),
                         ScaledLeakyReLU(0.2),
                         EqualConv2d(channels, out_channels, 3, padding=1, bias_init=bias_init))


class GFPGANv1(_GFPGAN):
    """GFP-GAN v1 (the paper model, GFPGANv1.pth): official constructor and state-dict layout."""

    def __init__(self, out_size: int, num_style_feat: int = 512, channel_multiplier: float = 1,
                 resample_kernel: Sequence[int] = (1, 3, 3, 1), decoder_load_path: str | None = None,
                 fix_decoder: bool = True, num_mlp: int = 8, lr_mlp: float = 0.01, input_is_latent: bool = False,
                 different_w: bool = False, narrow: float = 1, sft_half: bool = False) -> None:
        super().__init__()
        variant = Variant(blur_kernel=tuple(resample_kernel))
        self.input_is_latent, self.different_w, self.num_style_feat = input_is_latent, different_w, num_style_feat
        channels = _unet_channels(channel_multiplier, narrow)
        self.log_size = log2_size(out_size)
        self.conv_body_first = ConvLayer(3, channels[out_size], 1, variant=variant)
        in_channels = channels[out_size]
        self.conv_body_down = nn.ModuleList()
        for level in range(self.log_size, 2, -1):
            self.conv_body_down.append(ResBlock(in_channels, channels[2 ** (level - 1)], variant))
            in_channels = channels[2 ** (level - 1)]
        self.final_conv = ConvLayer(in_channels, channels[4], 3, variant=variant)
        in_channels = channels[4]
        self.conv_body_up = nn.ModuleList()
        for level in range(3, self.log_size + 1):
            self.conv_body_up.append(ResUpBlock(in_channels, channels[2 ** level]))
            in_channels = channels[2 ** level]
        self.toRGB = nn.ModuleList(EqualConv2d(channels[2 ** level], 3, 1) for level in range(3, self.log_size + 1))
        num_codes = (self.log_size * 2 - 2) if different_w else 1
        self.final_linear = EqualLinear(channels[4] * 4 * 4, num_codes * num_style_feat)
        self.stylegan_decoder = StyleGAN2GeneratorSFT(out_size, num_style_feat, num_mlp, channel_multiplier,
                                                      lr_mlp=lr_mlp, narrow=narrow, sft_half=sft_half, variant=variant)
        self._load_decoder(decoder_load_path, fix_decoder)
        self.condition_scale = nn.ModuleList()
        self.condition_shift = nn.ModuleList()
        for level in range(3, self.log_size + 1):
            c = channels[2 ** level]
            sft_channels = c if sft_half else c * 2
            self.condition_scale.append(_sft_branch_v1(c, sft_channels, bias_init=1))
            self.condition_shift.append(_sft_branch_v1(c, sft_channels, bias_init=0))


# ----------------------------------------------------------------------------------------------
# GFPGANv1Clean: plain layers


class CleanResBlock(nn.Module):
    """Residual block of GFPGANv1Clean: leaky(conv3x3) -> bilinear resize -> leaky(conv3x3), plus a
    resized 1x1 skip (no bias). `mode`: "down" (x0.5) or "up" (x2)."""

    def __init__(self, in_channels: int, out_channels: int, mode: str = "down") -> None:
        super().__init__()
        if mode not in ("down", "up"):
            raise ValueError(f"mode must be 'down' or 'up', got {mode!r}")
        self.conv1 = nn.Conv2d(in_channels, in_channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.scale_factor = 0.5 if mode == "down" else 2.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = conv2d_act(x, *conv_parameters(self.conv1), activation="leaky_relu", negative_slope=0.2)
        if self.scale_factor > 1:  # upsampling and conv2 as one convolution at the input's resolution
            out = upsample_conv3x3(out, self.conv2.weight, self.conv2.bias, "leaky_relu", 0.2)
        else:
            out = F.interpolate(out, scale_factor=self.scale_factor, mode="bilinear", align_corners=False)
            out = conv2d_act(out, *conv_parameters(self.conv2), activation="leaky_relu", negative_slope=0.2)
        # the bias-free 1x1 skip commutes with the interpolation: run it at the lower resolution
        if self.scale_factor > 1:
            skip = F.interpolate(self.skip(x), scale_factor=self.scale_factor, mode="bilinear", align_corners=False)
        else:
            skip = self.skip(F.interpolate(x, scale_factor=self.scale_factor, mode="bilinear", align_corners=False))
        return out + skip


def _sft_branch_clean(channels: int, out_channels: int) -> FusedSequential:
    return FusedSequential(nn.Conv2d(channels, channels, 3, 1, 1), nn.LeakyReLU(0.2, True),
                         nn.Conv2d(channels, out_channels, 3, 1, 1))


class GFPGANv1Clean(_GFPGAN):
    """GFP-GAN v1.2 / v1.3 / v1.4 (no custom ops): official constructor and state-dict layout."""

    def __init__(self, out_size: int, num_style_feat: int = 512, channel_multiplier: float = 1,
                 decoder_load_path: str | None = None, fix_decoder: bool = True, num_mlp: int = 8,
                 input_is_latent: bool = False, different_w: bool = False, narrow: float = 1,
                 sft_half: bool = False) -> None:
        super().__init__()
        self.input_is_latent, self.different_w, self.num_style_feat = input_is_latent, different_w, num_style_feat
        channels = _unet_channels(channel_multiplier, narrow)
        self.log_size = log2_size(out_size)
        self.conv_body_first = nn.Conv2d(3, channels[out_size], 1)
        in_channels = channels[out_size]
        self.conv_body_down = nn.ModuleList()
        for level in range(self.log_size, 2, -1):
            self.conv_body_down.append(CleanResBlock(in_channels, channels[2 ** (level - 1)], mode="down"))
            in_channels = channels[2 ** (level - 1)]
        self.final_conv = nn.Conv2d(in_channels, channels[4], 3, 1, 1)
        in_channels = channels[4]
        self.conv_body_up = nn.ModuleList()
        for level in range(3, self.log_size + 1):
            self.conv_body_up.append(CleanResBlock(in_channels, channels[2 ** level], mode="up"))
            in_channels = channels[2 ** level]
        self.toRGB = nn.ModuleList(nn.Conv2d(channels[2 ** level], 3, 1) for level in range(3, self.log_size + 1))
        num_codes = (self.log_size * 2 - 2) if different_w else 1
        self.final_linear = nn.Linear(channels[4] * 4 * 4, num_codes * num_style_feat)
        self.stylegan_decoder = StyleGAN2GeneratorSFT(out_size, num_style_feat, num_mlp, channel_multiplier,
                                                      narrow=narrow, sft_half=sft_half, variant=CLEAN)
        self._load_decoder(decoder_load_path, fix_decoder)
        self.condition_scale = nn.ModuleList()
        self.condition_shift = nn.ModuleList()
        for level in range(3, self.log_size + 1):
            c = channels[2 ** level]
            sft_channels = c if sft_half else c * 2
            self.condition_scale.append(_sft_branch_clean(c, sft_channels))
            self.condition_shift.append(_sft_branch_clean(c, sft_channels))

    def _activate(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu_(x, 0.2)
