"""Small tensor functions shared by several architectures: faster equivalents of common op sequences
(same results up to float rounding), and `official_ops()` to switch them back to the plain PyTorch
sequence of the official implementations (for side-by-side speed measurements and for debugging)."""
from __future__ import annotations

import contextlib
import math
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn


_fast_ops = True


@contextlib.contextmanager
def official_ops() -> Iterator[None]:
    """Inside this context the helpers below run the official plain op sequence: no BatchNorm folding,
    no fused convolution epilogues, PyTorch's own max-pool and instance norm."""
    global _fast_ops
    previous, _fast_ops = _fast_ops, False
    try:
        yield
    finally:
        _fast_ops = previous


def fast_ops_enabled() -> bool:
    return _fast_ops


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


def instance_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """F.instance_norm(x, eps=eps) without affine parameters or running statistics, in float32.

    A channels_last input stays channels_last: PyTorch's instance norm copies it to NCHW and back
    (slower than the convolutions around it). Here its (H*W, C) rows are summed in blocks of up to 1024
    by matrix products, and the block sums are added in float64, so the statistics are as accurate as
    PyTorch's (max |diff| ~1e-6 on the normalised output) at the cost of two reads of the input."""
    if not _fast_ops or x.dim() != 4 or not x.is_contiguous(memory_format=torch.channels_last) or x.shape[1] == 1:
        return F.instance_norm(x.float(), eps=eps).to(x.dtype)
    b, c, h, w = x.shape
    n = h * w
    block = math.gcd(n, 1024)
    with torch.autocast(x.device.type, enabled=False):
        rows = x.float().permute(0, 2, 3, 1).reshape(b, n, c)  # a view of the channels_last memory
        ones = rows.new_ones(1, block)
        mean = (ones @ rows.view(b, n // block, block, c)).sum(1, dtype=torch.float64) / n  # (b, 1, c)
        centred = rows - mean.to(rows.dtype)
        blocks = centred.view(b, n // block, block, c)
        # sum of squares per channel = diagonal of each block's Gram matrix (no squared copy is made)
        squares = (blocks.transpose(2, 3) @ blocks).diagonal(dim1=2, dim2=3)  # (b, n // block, c)
        var = squares.sum(1, keepdim=True, dtype=torch.float64) / n
        out = centred.mul_(torch.rsqrt(var.to(rows.dtype) + eps))
    return out.view(b, h, w, c).permute(0, 3, 1, 2).to(x.dtype)


_FUSED_ACTIVATIONS = {None: ("none", []), "relu": ("relu", []), "leaky_relu": ("leaky_relu", None)}


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
    name, scalars = _FUSED_ACTIVATIONS[activation]
    scalars = [negative_slope] if scalars is None else scalars
    x, weight = x.to(dtype), weight.to(dtype)
    bias = bias.to(dtype) if bias is not None else None
    stride, pads, dilations = [1, 1], [padding, padding], [dilation, dilation]
    if residual is None:
        return torch.ops.mkldnn._convolution_pointwise(x, weight, bias, pads, stride, dilations, 1,
                                                       name, scalars, "")
    residual = residual.to(dtype).contiguous(memory_format=_memory_format(x))
    return torch.ops.mkldnn._convolution_pointwise.binary(x, residual, weight, bias, pads, stride, dilations, 1,
                                                          "add", None, None if activation is None else name,
                                                          scalars, "")


_FUSED_DTYPES = (torch.float32, torch.bfloat16)


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous() \
        else torch.contiguous_format
