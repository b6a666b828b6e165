"""Small tensor functions shared by several architectures: faster equivalents of common op sequences
(same results up to float rounding), and `official_ops()` to switch them back to the plain PyTorch
sequence of the official implementations (for side-by-side speed measurements and for debugging)."""
from __future__ import annotations

import contextlib
import math
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn


_fast_ops = True
_reference_sequences = False


@contextlib.contextmanager
def plain_ops() -> Iterator[None]:
    """Inside this context the helpers below run the plain PyTorch op sequence: no BatchNorm folding,
    no fused convolution epilogues, PyTorch's own max-pool and instance norm (portable ops: exports)."""
    global _fast_ops
    previous, _fast_ops = _fast_ops, False
    try:
        yield
    finally:
        _fast_ops = previous


@contextlib.contextmanager
def official_ops() -> Iterator[None]:
    """plain_ops(), and the layers that have one also run the official implementations' own op sequence
    (StyleGAN2's per-sample modulated weights and upfirdn2d, VQGAN's bmm attention): the baseline that
    benchmarks/latency.py measures the speed-ups against. Same function, slower; not for exports (the
    grouped convolution over the batch has no dynamic-batch ONNX form)."""
    global _reference_sequences
    previous, _reference_sequences = _reference_sequences, True
    try:
        with plain_ops():
            yield
    finally:
        _reference_sequences = previous


def fast_ops_enabled() -> bool:
    return _fast_ops


def reference_sequences_enabled() -> bool:
    """Whether official_ops() asks for the official implementations' op sequences."""
    return _reference_sequences


def max_pool2x2(x: torch.Tensor) -> torch.Tensor:
    """F.max_pool2d(x, 2, 2), bit for bit. Without autograd it takes the max of strided views: PyTorch's
    CPU max-pool kernel for NCHW tensors is ~10x slower than two elementwise maxima. With autograd the
    official op runs, so gradients of ties go where they always went."""
    if (not _fast_ops or (torch.is_grad_enabled() and x.requires_grad)
            or x.is_contiguous(memory_format=torch.channels_last)):
        return F.max_pool2d(x, 2, 2)  # its channels_last kernel is fast
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2  # odd sides: the last row/column is dropped
    x = x[..., :h, :w]
    rows = torch.maximum(x[..., ::2], x[..., 1::2])
    return torch.maximum(rows[..., ::2, :], rows[..., 1::2, :])


def fold_batch_norm(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of one conv equal to norm(conv(x)) with an eval-mode BatchNorm (running
    statistics): one pass over the activations instead of two, the same result up to float rounding."""
    scale = torch.rsqrt(norm.running_var + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight
    bias = -norm.running_mean * scale
    if norm.bias is not None:
        bias = bias + norm.bias
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    return conv.weight * scale[:, None, None, None], bias


def conv_norm_act(x: torch.Tensor, conv: nn.Conv2d, norm: nn.Module, relu: bool = True,
                  residual: torch.Tensor | None = None) -> torch.Tensor:
    """relu(norm(conv(x)) + residual) for a stride-1 conv followed by BatchNorm2d or InstanceNorm2d
    (no affine). An eval-mode BatchNorm is folded into the conv, and the addition and ReLU run inside
    it (conv2d_act); instance norm (statistics of the conv output) runs on its own."""
    if isinstance(norm, nn.BatchNorm2d) and not norm.training and norm.track_running_stats and _fast_ops:
        weight, bias = fold_batch_norm(conv, norm)
        return conv2d_act(x, weight, bias, conv.padding[0], conv.dilation[0], "relu" if relu else None,
                          residual=residual)
    out = instance_norm(conv(x), norm.eps) if isinstance(norm, nn.InstanceNorm2d) else norm(conv(x))
    if residual is not None:
        out += residual  # out is a fresh tensor: in place saves an allocation
    return F.relu(out, inplace=True) if relu else out


def instance_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """F.instance_norm(x, eps=eps) without affine parameters or running statistics (statistics in
    float32 also under autocast; the result has the input's dtype).

    On CPU a channels_last input stays channels_last: PyTorch's instance norm copies it to NCHW and
    back (slower than the convolutions around it). Here its (H*W, C) rows are summed in blocks of up to 1024
    by matrix products and the block sums added in float64, so the statistics are as accurate as
    PyTorch's (max |diff| ~1e-6 on the normalised output)."""
    if (not _fast_ops or x.device.type != "cpu" or x.dim() != 4 or x.shape[1] == 1
            or not x.is_contiguous(memory_format=torch.channels_last)):
        return F.instance_norm(x.float(), eps=eps).to(x.dtype)
    if x.dtype != torch.float32:
        # fast modes: PyTorch's channels_last batch norm kernel on each sample (its one-pass float
        # statistics are off by ~1e-4 relative, far below the bfloat16 rounding of the result)
        with torch.autocast(x.device.type, enabled=False):
            samples = [F.batch_norm(x[i:i + 1], None, None, training=True, momentum=0.0, eps=eps)
                       for i in range(x.shape[0])]
        return samples[0] if len(samples) == 1 else torch.cat(samples)
    b, c, h, w = x.shape
    n = h * w
    block = math.gcd(n, 1024)
    with torch.autocast(x.device.type, enabled=False):  # float32 x here: keep the matmuls float32
        rows = x.permute(0, 2, 3, 1).reshape(b, n, c)  # a view of the channels_last memory
        ones = rows.new_ones(1, block)
        mean = (ones @ rows.view(b, n // block, block, c)).sum(1, dtype=torch.float64) / n  # (b, 1, c)
        centred = rows - mean.float()
        blocks = centred.view(b, n // block, block, c)
        # sum of squares per channel = diagonal of each block's Gram matrix (no squared copy is made)
        squares = (blocks.transpose(2, 3) @ blocks).diagonal(dim1=2, dim2=3)  # (b, n // block, c)
        var = squares.sum(1, keepdim=True, dtype=torch.float64) / n
        out = centred.mul_(torch.rsqrt(var.float() + eps))
    return out.view(b, h, w, c).permute(0, 3, 1, 2)


_FUSED_ACTIVATIONS = {None: "none", "relu": "relu", "leaky_relu": "leaky_relu"}  # oneDNN post-op names
_FUSED_DTYPES = (torch.float32, torch.bfloat16)


def conv2d_act(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, padding: int = 0,
               dilation: int = 1, activation: str | None = None, negative_slope: float = 0.01,
               residual: torch.Tensor | None = None) -> torch.Tensor:
    """activation(conv2d(x, weight, bias) + residual), activation None, "relu" or "leaky_relu".

    On CPU without autograd this is one oneDNN convolution with the addition and activation applied as
    it writes its output (bit-identical to the separate ops, one pass over the activations instead of
    up to three); elsewhere (CUDA, autograd, other dtypes, a residual with leaky_relu, which oneDNN
    does not fuse) the plain ops run."""
    if activation not in _FUSED_ACTIVATIONS:
        raise ValueError(f"activation must be None, 'relu' or 'leaky_relu', got {activation!r}")
    dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
    fusable = (_fast_ops and x.device.type == "cpu" and torch.backends.mkldnn.is_available() and dtype in _FUSED_DTYPES
               and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
               and (residual is None or (not residual.requires_grad and activation != "leaky_relu")))
    if not fusable:
        out = F.conv2d(x, weight, bias, 1, padding, dilation)
        if residual is not None:
            out = out + residual
        if activation == "relu":
            return F.relu(out)
        return F.leaky_relu(out, negative_slope) if activation == "leaky_relu" else out
    name = _FUSED_ACTIVATIONS[activation]
    scalars = [negative_slope] if activation == "leaky_relu" else []
    x, weight = x.to(dtype), weight.to(dtype)
    bias = bias.to(dtype) if bias is not None else None
    stride, pads, dilations = [1, 1], [padding, padding], [dilation, dilation]
    if residual is None:
        return torch.ops.mkldnn._convolution_pointwise(x, weight, bias, pads, stride, dilations, 1,
                                                       name, scalars, "")
    # the residual in the input's layout (channels_last or NCHW)
    layout = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous() \
        else torch.contiguous_format
    residual = residual.to(dtype).contiguous(memory_format=layout)
    return torch.ops.mkldnn._convolution_pointwise.binary(x, residual, weight, bias, pads, stride, dilations, 1,
                                                          "add", None, None if activation is None else name,
                                                          scalars, "")


# A 3x3 convolution of a 2x bilinearly upsampled image (align_corners=False), re-expressed on the input's
# own grid: output row 2i + a (a = 0 even, 1 odd) sees upsampled rows 2i + a - 1 .. 2i + a + 1, each a
# fixed mix of input rows i - 1 .. i + 1 (even rows 0.25/0.75 of their neighbours, odd rows 0.75/0.25),
# so its kernel taps are new[j] = sum_t UPSAMPLE_TAPS[a][j][t] * tap[t] (the same along columns).
UPSAMPLE_TAPS = (((0.75, 0.25, 0.0), (0.25, 0.75, 0.75), (0.0, 0.0, 0.25)),
                 ((0.25, 0.0, 0.0), (0.75, 0.75, 0.25), (0.0, 0.25, 0.75)))
# Below this many input pixels the plain sequence is as fast or faster (measured on CPU: 1.1-1.25x from
# 128^2 inputs up, 0.8-0.85x at 64^2 with 512 channels).
UPSAMPLE_CONV_MIN_PIXELS = 128 * 128


def upsample_conv_weight(weight: torch.Tensor) -> torch.Tensor:
    """(C_out, C_in, 3, 3) kernel of a conv after a 2x bilinear upsampling -> the (4 C_out, C_in, 3, 3)
    kernel on the input grid whose output channel (2 a + b) C_out + c is output channel c at row parity
    a and column parity b (see _interleave2). Computed in float32 at least."""
    taps = torch.tensor(UPSAMPLE_TAPS, dtype=torch.promote_types(weight.dtype, torch.float32), device=weight.device)
    kernel = torch.einsum("ayi,bxj,ocij->abocyx", taps, taps, weight.to(taps.dtype))
    return kernel.reshape(4 * weight.shape[0], weight.shape[1], 3, 3)


def _interleave2(y: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """(N, 4C, H, W) with channel (2a + b) C + c -> (N, C, 2H, 2W) with pixel (2i + a, 2j + b) = y's
    pixel (i, j) of that channel: a pixel shuffle with parity-major channels, so that in channels_last
    every copied run is C contiguous values (pixel_shuffle's c-major order copies single values)."""
    n, c4, h, w = y.shape
    c = c4 // 4
    if channels_last:  # memory (N, H, W, 2, 2, C) -> (N, H, 2, W, 2, C)
        nhwc = y.permute(0, 2, 3, 1).reshape(n, h, w, 2, 2, c).permute(0, 1, 3, 2, 4, 5)
        return nhwc.reshape(n, 2 * h, 2 * w, c).permute(0, 3, 1, 2)
    return y.reshape(n, 2, 2, c, h, w).permute(0, 3, 4, 1, 5, 2).reshape(n, c, 2 * h, 2 * w)


def upsample_conv3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                     activation: str | None = None, negative_slope: float = 0.01) -> torch.Tensor:
    """activation(conv2d(interpolate(x, scale_factor=2, mode="bilinear", align_corners=False), weight,
    bias, padding=1)) for a 3x3 weight (GFP-GAN's upsampling convolutions).

    On CPU without autograd, on inputs of at least UPSAMPLE_CONV_MIN_PIXELS pixels, this runs as one
    convolution with 4x the output channels on the input itself, then an interleave: the same
    multiply-adds, but the upsampled image is never written or read, and the convolution has wider
    outputs at a quarter of the pixels (1.25x in bf16, 1.1x in fp32 on GFP-GAN's 128->64 channel layer
    at 512^2; 2-4 % of a GFP-GAN forward). Same function up to float rounding (the taps are sums).
    Bilinear resizing clamps at the border, i.e. replicate-pads the input; the upsampled image's zero
    padding then only matters for the outermost output ring, recomputed from the plain sequence on
    two-row strips. (Nearest upsampling, as in VQGAN decoders, gained nothing measurable: not used.)"""
    def plain(inputs: torch.Tensor) -> torch.Tensor:
        upsampled = F.interpolate(inputs, scale_factor=2, mode="bilinear", align_corners=False)
        return conv2d_act(upsampled, weight, bias, 1, activation=activation, negative_slope=negative_slope)

    h, w = x.shape[-2:]
    if (not _fast_ops or x.device.type != "cpu" or weight.shape[-2:] != (3, 3) or h * w < UPSAMPLE_CONV_MIN_PIXELS
            or min(h, w) < 2 or (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))):
        return plain(x)
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    kernel = upsample_conv_weight(weight).to(weight.dtype)
    if channels_last:
        kernel = kernel.contiguous(memory_format=torch.channels_last)
    y = conv2d_act(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, bias.repeat(4) if bias is not None else None,
                   0, activation=activation, negative_slope=negative_slope)
    out = _interleave2(y, channels_last)
    out[:, :, :1] = plain(x[:, :, :2])[:, :, :1]
    out[:, :, -1:] = plain(x[:, :, -2:])[:, :, -1:]
    out[:, :, :, :1] = plain(x[:, :, :, :2])[:, :, :, :1]
    out[:, :, :, -1:] = plain(x[:, :, :, -2:])[:, :, :, -1:]
    return out


class FusedSequential(nn.Sequential):
    """nn.Sequential (same keys) that runs each conv together with the ReLU/LeakyReLU right after it
    as one convolution (conv2d_act: bit-identical, one pass over the activations fewer)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return run_fused(self, x)


def is_fusable_conv(layer: nn.Module) -> bool:
    """A stride-1 conv with one padding and dilation value (what conv2d_act runs), or a module that
    provides `conv_parameters()` (e.g. a spectral-norm conv)."""
    if hasattr(layer, "conv_parameters"):
        return True
    return (isinstance(layer, nn.Conv2d) and layer.stride == (1, 1) and layer.groups == 1
            and layer.padding_mode == "zeros" and isinstance(layer.padding, tuple)
            and len(set(layer.padding)) == 1 and len(set(layer.dilation)) == 1)


def conv_parameters(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None, int, int]:
    """(weight, bias, padding, dilation) of a fusable conv (see is_fusable_conv)."""
    if hasattr(layer, "conv_parameters"):
        return layer.conv_parameters()
    return layer.weight, layer.bias, layer.padding[0], layer.dilation[0]


def _is_pool2x2(layer: nn.Module) -> bool:
    return (isinstance(layer, nn.MaxPool2d) and layer.kernel_size in (2, (2, 2)) and layer.stride in (2, (2, 2))
            and layer.padding in (0, (0, 0)) and layer.dilation in (1, (1, 1)) and not layer.ceil_mode
            and not layer.return_indices)


def run_fused(layers: Sequence[nn.Module], x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
    """Run `layers` in order; a conv followed by ReLU/LeakyReLU runs as one fused op, a 2x2 max-pool as
    max_pool2x2, and `residual` (if given) is added to the output of the last layer, which must then
    be a conv."""
    index, count = 0, len(layers)
    while index < count:
        layer = layers[index]
        after = layers[index + 1] if index + 1 < count else None
        if is_fusable_conv(layer) and isinstance(after, (nn.ReLU, nn.LeakyReLU)):
            activation = "relu" if isinstance(after, nn.ReLU) else "leaky_relu"
            x = conv2d_act(x, *conv_parameters(layer), activation=activation,
                           negative_slope=getattr(after, "negative_slope", 0.0))
            index += 2
        elif _is_pool2x2(layer):
            x = max_pool2x2(x)
            index += 1
        elif after is None and residual is not None:
            if not is_fusable_conv(layer):
                raise ValueError("a residual can only follow a trailing conv")
            return conv2d_act(x, *conv_parameters(layer), residual=residual)
        else:
            x = layer(x)
            index += 1
    if residual is not None:
        raise ValueError("a residual can only follow a trailing conv")
    return x

