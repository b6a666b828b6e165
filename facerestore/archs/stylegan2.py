"""StyleGAN2 building blocks shared by GFP-GAN (original and clean archs) and GPEN.

The three checkpoint families use the same generator maths in two conventions:

- original (BasicSR's `stylegan2_arch`, used by GFPGANv1; rosinality's port, used by GPEN):
  equalized learning rate (weights are stored unscaled and multiplied by 1/sqrt(fan_in) at run
  time), FIR resampling with `upfirdn2d`, fused bias + leaky ReLU (x + b, slope 0.2, times sqrt(2)).
  GPEN registers its FIR kernels as persistent buffers, so they are in its state dict; BasicSR keeps
  them as plain attributes.
- clean (GFPGANv1Clean's `stylegan2_clean_arch`): plain weights, bilinear resampling, and the
  sqrt(2) activation gain applied to the modulated conv's output before noise and bias are added.

A `Variant` carries these choices through the layers, so each layer is written once. Module and
parameter names follow the checkpoints; where the families name the same thing differently (GPEN's
`conv` vs BasicSR's `modulated_conv`) the name is a constructor argument.

Speed (the maths is unchanged, only the order of float operations):
- `upfirdn2d` is one depthwise (transposed) convolution instead of the reference's reshape, pad and
  single-channel convolution: about 10x faster on CPU;
- a modulated convolution folds style and demodulation into the weights for one sample (a plain
  convolution), and modulates the activations for a batch (one convolution shared by all samples)
  instead of the reference's per-sample grouped convolution;
- equalized linear layers scale their (small) output instead of their (large) weight.

Inside `facerestore.archs.ops.official_ops()` the layers run the reference op sequence instead
(upfirdn2d by reshape, pad and a single-channel convolution; per-sample modulated weights and one
grouped convolution; bias, noise and activation as separate passes): the baseline that
`benchmarks/latency.py` measures the speed-ups against.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .ops import reference_sequences_enabled, upsample_conv3x3

SQRT2 = math.sqrt(2.0)


@dataclass(frozen=True)
class Variant:
    """Which StyleGAN2 convention a network follows (see the module docstring)."""

    clean: bool = False  # GFPGANv1Clean's plain-weight, bilinear re-formulation
    blur_kernel: tuple[int, ...] = (1, 3, 3, 1)  # 1-D FIR taps (outer product -> 2-D), original only
    kernels_in_state_dict: bool = False  # GPEN stores its FIR kernels as persistent buffers


ORIGINAL = Variant()
CLEAN = Variant(clean=True)


# ----------------------------------------------------------------------------------------------
# Functions


def make_fir_kernel(taps: Sequence[float] | torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    """2-D FIR kernel from 1-D taps (outer product) or a 2-D array, normalised to sum `gain`."""
    k = torch.as_tensor(taps, dtype=torch.float32)
    if k.ndim == 1:
        k = k[None, :] * k[:, None]
    return k / k.sum() * gain


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """StyleGAN2's upfirdn2d on (N, C, H, W): upsample by zero insertion, pad by `pad` = (before,
    after) on both axes (negative values crop), filter with `kernel` (kh, kw) as a true convolution
    (the kernel is flipped), keep every `down`-th sample. Pure PyTorch, any device and dtype.

    Output size per axis: (size * up + pad[0] + pad[1] - k) // down + 1.
    """
    if reference_sequences_enabled():
        return upfirdn2d_reference(x, kernel, up, down, pad)
    channels = x.shape[1]
    kh, kw = kernel.shape
    p0, p1 = pad
    kernel = kernel.to(device=x.device, dtype=x.dtype)
    if up > 1:
        # Zero insertion + filtering is a transposed convolution with stride `up` (which applies the
        # kernel unflipped); its sample m is the upfirdn sample m - (k - 1 - pad0).
        weight = kernel.expand(channels, 1, kh, kw).contiguous()
        out = F.conv_transpose2d(x, weight, stride=up, groups=channels)
        out = F.pad(out, [p0 - kw + 1, p1 + up - kw, p0 - kh + 1, p1 + up - kh])
        return out[:, :, ::down, ::down] if down > 1 else out
    weight = kernel.flip(0, 1).expand(channels, 1, kh, kw).contiguous()
    if p0 == p1 >= 0:
        return F.conv2d(x, weight, stride=down, padding=p0, groups=channels)
    return F.conv2d(F.pad(x, [p0, p1, p0, p1]), weight, stride=down, groups=channels)


def upfirdn2d_reference(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
                        pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """upfirdn2d as the reference implementation computes it (the official_ops() baseline): zero
    insertion by reshape and pad, padding, one single-channel convolution over N*C maps, strided slicing."""
    n, c, h, w = x.shape
    kh, kw = kernel.shape
    p0, p1 = pad
    out = x.reshape(n * c, h, 1, w, 1)
    out = F.pad(out, [0, up - 1, 0, 0, 0, up - 1]).reshape(n * c, 1, h * up, w * up)
    out = F.pad(out, [max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)])
    out = out[:, :, max(-p0, 0):out.shape[2] - max(-p1, 0), max(-p0, 0):out.shape[3] - max(-p1, 0)]
    out = F.conv2d(out, kernel.flip(0, 1).view(1, 1, kh, kw).to(device=x.device, dtype=x.dtype))
    out = out[:, :, ::down, ::down]
    return out.reshape(n, c, out.shape[2], out.shape[3])


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor | None, negative_slope: float = 0.2,
                     scale: float = SQRT2) -> torch.Tensor:
    """StyleGAN2's fused bias + activation: leaky_relu(x + bias, 0.2) * sqrt(2), bias on dim 1.

    Computed as leaky_relu(scale * x + scale * bias) (the same for scale > 0) in two passes."""
    if reference_sequences_enabled():  # the reference's CPU fallback: three passes
        out = x + bias.view(1, -1, *([1] * (x.ndim - 2))) if bias is not None else x
        return F.leaky_relu(out, negative_slope) * scale
    if bias is None:
        return F.leaky_relu_(x * scale, negative_slope)
    b = bias.view(1, -1, *([1] * (x.ndim - 2))) * scale
    return F.leaky_relu_(torch.add(b.to(x.dtype), x, alpha=scale), negative_slope)


def random_noise(x: torch.Tensor) -> torch.Tensor:
    """Fresh N(0, 1) noise of shape (B, 1, H, W) for a feature map x, from the global torch RNG
    (the same draws as the reference's `x.new_empty(B, 1, H, W).normal_()`)."""
    b, _, h, w = x.shape
    return torch.randn(b, 1, h, w, device=x.device, dtype=x.dtype)


def stylegan2_channels(channel_multiplier: float = 2, narrow: float = 1.0) -> dict[int, int]:
    """Feature channels per resolution of StyleGAN2 generators (and of GFPGAN/GPEN's encoders)."""
    cm = channel_multiplier
    return {4: int(512 * narrow), 8: int(512 * narrow), 16: int(512 * narrow), 32: int(512 * narrow),
            64: int(256 * cm * narrow), 128: int(128 * cm * narrow), 256: int(64 * cm * narrow),
            512: int(32 * cm * narrow), 1024: int(16 * cm * narrow), 2048: int(8 * cm * narrow)}


def to_fast_layout(x: torch.Tensor) -> torch.Tensor:
    """channels_last on CPU, where oneDNN's convolutions (and depthwise FIR filters) run 1.5-10x
    faster in it than in NCHW; other devices keep the caller's layout."""
    return x.contiguous(memory_format=torch.channels_last) if x.device.type == "cpu" else x


def match_layout(x: torch.Tensor, like: torch.Tensor | None) -> torch.Tensor:
    """x in channels_last when `like` is, so that all feature maps share one layout (mixing the two
    turns every concatenation and addition into a slow strided copy). For the generators' constant
    input, which does not come from the network input."""
    if like is not None and like.is_contiguous(memory_format=torch.channels_last) and not like.is_contiguous():
        return x.contiguous(memory_format=torch.channels_last)
    return x


def log2_size(size: int) -> int:
    """log2 of an image size; a clear error when it is not a power of two >= 8."""
    if size < 8 or size & (size - 1):
        raise ValueError(f"the image size must be a power of two >= 8, got {size}")
    return size.bit_length() - 1


# ----------------------------------------------------------------------------------------------
# Resampling


class FIRFilter(nn.Module):
    """`upfirdn2d` with a fixed kernel: StyleGAN2's Blur / Upsample / Downsample (BasicSR:
    UpFirDnSmooth / UpFirDnUpsample). The kernel is a buffer, persistent (in the state dict) for
    GPEN and non-persistent for BasicSR, whose checkpoints do not store it."""

    def __init__(self, taps: Sequence[float], pad: tuple[int, int], up: int = 1, down: int = 1,
                 gain: float = 1.0, persistent: bool = False) -> None:
        super().__init__()
        self.register_buffer("kernel", make_fir_kernel(taps, gain), persistent=persistent)
        self.pad, self.up, self.down = tuple(pad), up, down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.up, down=self.down, pad=self.pad)

    @classmethod
    def upsample(cls, variant: Variant, factor: int = 2) -> "FIRFilter":
        """x`factor` upsampling (the skip path of ToRGB)."""
        p = len(variant.blur_kernel) - factor
        return cls(variant.blur_kernel, ((p + 1) // 2 + factor - 1, p // 2), up=factor, gain=factor ** 2,
                   persistent=variant.kernels_in_state_dict)

    @classmethod
    def blur_after_upsample(cls, variant: Variant, conv_size: int, factor: int = 2) -> "FIRFilter":
        """The blur that follows a stride-`factor` transposed convolution of size `conv_size`."""
        p = (len(variant.blur_kernel) - factor) - (conv_size - 1)
        return cls(variant.blur_kernel, ((p + 1) // 2 + factor - 1, p // 2 + 1), gain=factor ** 2,
                   persistent=variant.kernels_in_state_dict)

    @classmethod
    def blur_before_downsample(cls, variant: Variant, conv_size: int, factor: int = 2) -> "FIRFilter":
        """The blur that precedes a stride-`factor` convolution of size `conv_size`."""
        p = (len(variant.blur_kernel) - factor) + (conv_size - 1)
        return cls(variant.blur_kernel, ((p + 1) // 2, p // 2), persistent=variant.kernels_in_state_dict)


# ----------------------------------------------------------------------------------------------
# Equalized-learning-rate layers and activations


class EqualLinear(nn.Module):
    """Linear layer with equalized learning rate: y = x @ (W * lr_mul / sqrt(in)).T + b * lr_mul,
    optionally followed by the fused leaky ReLU (`activation="fused_lrelu"`)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, bias_init: float = 0.0,
                 lr_mul: float = 1.0, activation: str | None = None) -> None:
        super().__init__()
        if activation not in (None, "fused_lrelu"):
            raise ValueError(f"activation must be None or 'fused_lrelu', got {activation!r}")
        self.weight = nn.Parameter(torch.randn(out_features, in_features).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init))) if bias else None
        self.scale = lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight) * self.scale  # scaling the output: the weight can be 8192 x 4096
        bias = self.bias * self.lr_mul if self.bias is not None else None
        if self.activation == "fused_lrelu":
            return fused_leaky_relu(out, bias)
        return out + bias if bias is not None else out


class EqualConv2d(nn.Module):
    """Conv2d with equalized learning rate: the weight is multiplied by 1/sqrt(fan_in) at run time."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, bias: bool = True, bias_init: float = 0.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.full((out_channels,), float(bias_init))) if bias else None
        self.scale = 1 / math.sqrt(in_channels * kernel_size ** 2)
        self.stride, self.padding = stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, self.stride, self.padding)


class FusedLeakyReLU(nn.Module):
    """Per-channel bias + leaky ReLU (0.2) + sqrt(2) gain, with the bias as its only parameter."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias)


class ScaledLeakyReLU(nn.Module):
    """leaky_relu(x, slope) * sqrt(2) (the activation of bias-free equalized layers)."""

    def __init__(self, negative_slope: float = 0.2) -> None:
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, self.negative_slope) * SQRT2


class ConvLayer(nn.Sequential):
    """[blur] -> EqualConv2d (stride 2 when downsampling) -> [fused leaky ReLU | scaled leaky ReLU].

    The Sequential layout is the checkpoints' (`<name>.0.kernel`, `<name>.1.weight`, `<name>.2.bias`).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, downsample: bool = False,
                 bias: bool = True, activate: bool = True, variant: Variant = ORIGINAL) -> None:
        layers: list[nn.Module] = []
        if downsample:
            layers.append(FIRFilter.blur_before_downsample(variant, kernel_size))
        stride, padding = (2, 0) if downsample else (1, kernel_size // 2)
        layers.append(EqualConv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                                  bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_channels) if bias else ScaledLeakyReLU(0.2))
        super().__init__(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layers = list(self)
        if isinstance(layers[0], FIRFilter):
            x = layers.pop(0)(x)
        conv = layers[0]
        if len(layers) == 2 and isinstance(layers[1], FusedLeakyReLU):
            # the activation's bias added by the convolution itself: one pass less
            out = F.conv2d(x, conv.weight * conv.scale, layers[1].bias, conv.stride, conv.padding)
            return F.leaky_relu_(out.mul_(SQRT2), 0.2)
        out = conv(x)
        return layers[1](out) if len(layers) == 2 else out


class PixelNorm(nn.Module):
    """x / sqrt(mean(x^2 over dim 1) + 1e-8) (BasicSR: NormStyleCode)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x * x, dim=1, keepdim=True) + 1e-8)


def style_mlp(style_dim: int, n_mlp: int, lr_mlp: float = 0.01, variant: Variant = ORIGINAL) -> nn.Sequential:
    """The mapping network: PixelNorm, then n_mlp layers (equalized linear + fused leaky ReLU with
    learning-rate multiplier lr_mlp; clean: nn.Linear + LeakyReLU(0.2), keys 1, 3, 5, ...)."""
    layers: list[nn.Module] = [PixelNorm()]
    for _ in range(n_mlp):
        if variant.clean:
            linear = nn.Linear(style_dim, style_dim)
            nn.init.kaiming_normal_(linear.weight, a=0.2, mode="fan_in", nonlinearity="leaky_relu")
            nn.init.zeros_(linear.bias)
            layers += [linear, nn.LeakyReLU(0.2, inplace=True)]
        else:
            layers.append(EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation="fused_lrelu"))
    return nn.Sequential(*layers)


class ConstantInput(nn.Module):
    """The learned 4x4 input of the generator. `param_name`: "weight" (BasicSR) or "input" (GPEN)."""

    def __init__(self, channels: int, size: int = 4, param_name: str = "weight") -> None:
        super().__init__()
        self.param_name = param_name
        self.register_parameter(param_name, nn.Parameter(torch.randn(1, channels, size, size)))

    def forward(self, batch: int) -> torch.Tensor:
        return getattr(self, self.param_name).expand(batch, -1, -1, -1)


# ----------------------------------------------------------------------------------------------
# Modulated convolution and the layers built on it


class ModulatedConv2d(nn.Module):
    """StyleGAN2's modulated convolution: the style scales the weight's input channels, the result
    is (optionally) demodulated to unit norm per output channel, and the convolution optionally
    upsamples x2 (original: transposed convolution + FIR blur; clean: bilinear, then convolution).

    Parameters: `weight` (1, out, in, k, k); `modulation` (style -> per-input-channel scale, bias
    initialised to 1); GPEN also stores `blur.kernel`.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False, variant: Variant = ORIGINAL,
                 eps: float = 1e-8) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.demodulate, self.upsample, self.clean, self.eps = demodulate, upsample, variant.clean, eps
        self.padding = kernel_size // 2
        fan_in = in_channels * kernel_size ** 2
        # original: stored unscaled, scaled at run time; clean: stored scaled
        self.weight_gain = 1.0 if variant.clean else 1 / math.sqrt(fan_in)
        weight = torch.randn(1, out_channels, in_channels, kernel_size, kernel_size)
        self.weight = nn.Parameter(weight / math.sqrt(fan_in) if variant.clean else weight)
        if upsample and not variant.clean:
            self.blur = FIRFilter.blur_after_upsample(variant, kernel_size)
        if variant.clean:
            self.modulation = nn.Linear(style_dim, in_channels)
            nn.init.kaiming_normal_(self.modulation.weight, a=0, mode="fan_in", nonlinearity="linear")
            nn.init.ones_(self.modulation.bias)
        else:
            self.modulation = EqualLinear(style_dim, in_channels, bias_init=1)

    def forward(self, x: torch.Tensor, style: torch.Tensor, gain: float = 1.0,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        """gain * (modulated convolution of x) + bias; `gain` and the per-output-channel `bias` (out,)
        are fused into the convolution (the layers after it pass their activation gain and bias)."""
        if reference_sequences_enabled():
            out = self.reference_forward(x, style)
            out = out * gain if gain != 1.0 else out
            return out if bias is None else out + bias.view(1, -1, 1, 1).to(out.dtype)
        b, c = x.shape[:2]
        # style and demodulation maths in (at least) float32, also under autocast / with half weights
        dtype = torch.promote_types(self.weight.dtype, torch.float32)
        s = self.modulation(style).to(dtype) * self.weight_gain  # (B, in), the equalized-lr gain folded in
        weight = self.weight[0].to(dtype)  # (out, in, k, k)
        out_scale = None  # (B, out): demodulation and gain
        if self.demodulate:  # 1 / |modulated weight| per sample and output channel
            out_scale = torch.rsqrt(s.square() @ weight.square().sum([2, 3]).t() + self.eps) * gain
        elif gain != 1.0:
            out_scale = torch.full((b, self.out_channels), gain, dtype=dtype, device=s.device)
        if b == 1:
            # one sample: style, demodulation and gain folded into the weight -> one plain convolution
            scale = s.view(1, c, 1, 1) if out_scale is None else s.view(1, c, 1, 1) * out_scale.view(-1, 1, 1, 1)
            return self._convolve(x, weight * scale, bias)
        # a batch: modulate the activations instead, so that all samples share one convolution
        out = self._convolve(x * s.view(b, c, 1, 1).to(x.dtype), weight)
        if out_scale is None:
            return out if bias is None else out + bias.view(1, -1, 1, 1).to(out.dtype)
        out_scale = out_scale.view(b, -1, 1, 1).to(out.dtype)
        return out * out_scale if bias is None else torch.addcmul(bias.view(1, -1, 1, 1).to(out.dtype), out, out_scale)

    def reference_forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """The reference op sequence (official_ops() baseline): per-sample modulated (and demodulated)
        weights (B, out, in, k, k) and one grouped convolution over the batch."""
        b, c, h, w = x.shape
        k, out_channels = self.kernel_size, self.out_channels
        weight = self.weight * self.weight_gain * self.modulation(style).view(b, 1, c, 1, 1)
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + self.eps).view(b, out_channels, 1, 1, 1)
        weight = weight.to(x.dtype)
        if not self.upsample or self.clean:
            if self.upsample:
                x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
                h, w = h * 2, w * 2
            out = F.conv2d(x.reshape(1, b * c, h, w), weight.reshape(b * out_channels, c, k, k),
                           padding=self.padding, groups=b)
            return out.reshape(b, out_channels, h, w)
        weight = weight.transpose(1, 2).reshape(b * c, out_channels, k, k)
        out = F.conv_transpose2d(x.reshape(1, b * c, h, w), weight, stride=2, groups=b)
        return self.blur(out.reshape(b, out_channels, out.shape[2], out.shape[3]))

    def _convolve(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        weight = weight.to(x.dtype)
        bias = bias.to(x.dtype) if bias is not None else None
        if not self.upsample:
            return F.conv2d(x, weight, bias, padding=self.padding)
        if self.clean:
            if self.kernel_size == 3 and self.padding == 1:  # one convolution at the input's resolution
                return upsample_conv3x3(x, weight, bias)
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            return F.conv2d(x, weight, bias, padding=self.padding)
        out = self.blur(F.conv_transpose2d(x, weight.transpose(0, 1), stride=2))
        return out if bias is None else out.add_(bias.view(1, -1, 1, 1))


class NoiseInjection(nn.Module):
    """x + weight * noise, or with `concat` (GPEN's isconcat) cat([x, weight * noise], dim 1), where
    GPEN's "noise" is the encoder's feature map of the same size. None draws N(0, 1) noise."""

    def __init__(self, concat: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.concat = concat

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if noise is None:
            noise = random_noise(x)
        if self.concat:
            return torch.cat([x, noise * self.weight.to(noise.dtype)], dim=1)
        return x + noise * self.weight


class StyleConv(nn.Module):
    """Modulated conv + noise + bias + leaky ReLU, in BasicSR/GFPGAN's layout: `modulated_conv`,
    `weight` (noise strength), and `activate.bias` (C,) (original) or `bias` (1, C, 1, 1) (clean);
    the bias and the activation gain are applied inside the modulated convolution.

    `noise`: (B or 1, 1, H, W) added to every channel; None draws fresh N(0, 1) noise."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False, variant: Variant = ORIGINAL) -> None:
        super().__init__()
        self.modulated_conv = ModulatedConv2d(in_channels, out_channels, kernel_size, style_dim,
                                              demodulate=demodulate, upsample=upsample, variant=variant)
        self.weight = nn.Parameter(torch.zeros(1))
        self.clean = variant.clean
        if variant.clean:
            self.bias = nn.Parameter(torch.zeros(1, out_channels, 1, 1))
        else:
            self.activate = FusedLeakyReLU(out_channels)

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        # original: leaky(conv + w * noise + b) * sqrt(2) = leaky(sqrt(2) conv + sqrt(2) w * noise + sqrt(2) b)
        # clean:    leaky(sqrt(2) conv + w * noise + b)
        if reference_sequences_enabled():  # the reference sequence: separate passes
            out = self.modulated_conv(x, style)
            noise = random_noise(out) if noise is None else noise
            if self.clean:
                return F.leaky_relu(out * SQRT2 + self.weight * noise + self.bias, 0.2)
            return self.activate(out + self.weight * noise)
        # the sqrt(2) gain of the conv and the bias are fused into the modulated convolution
        bias = self.bias.view(-1) if self.clean else self.activate.bias * SQRT2
        out = self.modulated_conv(x, style, gain=SQRT2, bias=bias)
        if noise is None:
            noise = random_noise(out)
        strength = self.weight if self.clean else self.weight * SQRT2
        return F.leaky_relu_(out.add_(noise.to(out.dtype) * strength.to(out.dtype)), 0.2)


class StyledConv(nn.Module):
    """Modulated conv + noise injection + fused leaky ReLU, in rosinality/GPEN's layout: `conv`,
    `noise.weight`, `activate.bias` (2C with `isconcat`, where the noise input is concatenated)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int,
                 upsample: bool = False, demodulate: bool = True, isconcat: bool = True,
                 variant: Variant = ORIGINAL) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, kernel_size, style_dim,
                                    demodulate=demodulate, upsample=upsample, variant=variant)
        self.noise = NoiseInjection(concat=isconcat)
        self.activate = FusedLeakyReLU(out_channels * (2 if isconcat else 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if not self.noise.concat or reference_sequences_enabled():  # (the reference sequence: separate passes)
            return self.activate(self.noise(self.conv(x, style), noise))
        # leaky(cat([conv, w * feature]) + b) * sqrt(2), with the sqrt(2) gain and the first half of the
        # bias fused into the modulated convolution and the second half into the weighted feature
        c = self.conv.out_channels
        bias = self.activate.bias * SQRT2
        out = self.conv(x, style, gain=SQRT2, bias=bias[:c])
        if noise is None:
            noise = random_noise(out)
        feature = torch.addcmul(bias[c:].view(1, -1, 1, 1).to(out.dtype), noise.to(out.dtype),
                                (self.noise.weight * SQRT2).to(out.dtype))
        return F.leaky_relu_(torch.cat([out, feature], dim=1), 0.2)


class ToRGB(nn.Module):
    """1x1 modulated conv (no demodulation) to RGB + bias, plus the upsampled RGB of the previous
    resolution (`skip`). `conv_name`: the conv's attribute name in the checkpoint, "modulated_conv"
    (BasicSR/GFPGAN) or "conv" (GPEN)."""

    def __init__(self, in_channels: int, style_dim: int, upsample: bool = True, variant: Variant = ORIGINAL,
                 conv_name: str = "modulated_conv") -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        self.upsample: nn.Module | None = None
        if upsample:
            self.upsample = (nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False) if variant.clean
                             else FIRFilter.upsample(variant))
        self.conv_name = conv_name
        self.add_module(conv_name, ModulatedConv2d(in_channels, 3, 1, style_dim, demodulate=False, variant=variant))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = getattr(self, self.conv_name)(x, style, bias=self.bias.view(-1))
        if skip is not None:
            out = out + (self.upsample(skip) if self.upsample is not None else skip)
        return out
