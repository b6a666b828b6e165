"""VQGAN building blocks shared by CodeFormer and RestoreFormer / RestoreFormer++.

Both families descend from the VQGAN of "Taming Transformers" (Esser et al., CVPR 2021): residual
blocks of GroupNorm(32, eps 1e-6) -> swish -> 3x3 conv, stride-2 downsampling with asymmetric zero
padding (right and bottom only), nearest x2 upsampling followed by a 3x3 conv, single- or multi-head
spatial attention over 1x1-conv projections, and a nearest-neighbour vector quantizer.

The maths is written once here; the two official code bases name some submodules differently
(CodeFormer: ResBlock shortcut `conv_out`, attention norm `norm`; RestoreFormer: shortcut
`nin_shortcut`, attention norms `norm1`/`norm2`), which the constructors' arguments reproduce so that
released checkpoints load key for key.

Fast modes (bf16 autocast, channels_last) work throughout; the quantizer always chooses its codes in
float32 so that the discrete choice is the exact-mode one.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from .ops import conv2d_act, reference_sequences_enabled


def normalize(channels: int) -> nn.GroupNorm:
    """The VQGAN normalisation: GroupNorm with 32 groups, eps 1e-6, affine."""
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


def swish(x: torch.Tensor) -> torch.Tensor:
    """x * sigmoid(x) (F.silu computes the same function in one pass)."""
    return F.silu(x)


def float32_region(device_type: str, enabled: bool = True) -> contextlib.AbstractContextManager:
    """A region that runs in float32 under autocast (autocast disabled), or no change when not enabled;
    the caller casts its inputs with .float()."""
    return torch.autocast(device_type, enabled=False) if enabled else contextlib.nullcontext()


def conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)


def conv1x1(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=1, padding=0)


class ResBlock(nn.Module):
    """x -> shortcut(x) + conv2(swish(norm2(conv1(swish(norm1(x)))))); the shortcut is a 1x1 conv when the
    channel count changes, named `conv_out` (CodeFormer) or `nin_shortcut` (RestoreFormer's ResnetBlock)."""

    def __init__(self, in_channels: int, out_channels: int | None = None, shortcut_name: str = "conv_out") -> None:
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        self.in_channels, self.out_channels = in_channels, out_channels
        self.norm1 = normalize(in_channels)
        self.conv1 = conv3x3(in_channels, out_channels)
        self.norm2 = normalize(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.shortcut_name = shortcut_name if in_channels != out_channels else None
        if self.shortcut_name is not None:
            setattr(self, shortcut_name, conv1x1(in_channels, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(swish(self.norm1(x)))
        h = swish(self.norm2(h))
        shortcut = x if self.shortcut_name is None else getattr(self, self.shortcut_name)(x)
        # the residual addition runs inside the second conv (bit-identical to a separate addition)
        return conv2d_act(h, self.conv2.weight, self.conv2.bias, padding=1, residual=shortcut)


class Downsample(nn.Module):
    """Pad one zero column on the right and one row at the bottom, then a 3x3 stride-2 conv (`conv`)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0.0))


class Upsample(nn.Module):
    """Nearest-neighbour x2 upsampling, then a 3x3 conv (`conv`)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = conv3x3(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def spatial_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, heads: int) -> torch.Tensor:
    """softmax(q^T k / sqrt(c / heads)) v over the H*W positions of (B, C, H, W) maps; channel
    `head * (C // heads) + i` belongs to head `head` (the official reshape (B, heads, C // heads, H*W))."""
    b, c, h, w = query.shape

    def split(t: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, heads, H*W, C // heads)
        return t.reshape(b, heads, c // heads, h * w).transpose(2, 3)

    if reference_sequences_enabled():  # the official sequence (official_ops() baseline): bmm, softmax, bmm
        q, k, v = (t.reshape(b * heads, c // heads, h * w) for t in (query, key, value))
        weights = torch.softmax(torch.bmm(q.transpose(1, 2), k) * (c // heads) ** -0.5, dim=2)
        return torch.bmm(v, weights.transpose(1, 2)).reshape(b, c, h, w)

    out = F.scaled_dot_product_attention(split(query), split(key), split(value))
    return out.transpose(2, 3).reshape(b, c, h, w)


class AttnBlock(nn.Module):
    """CodeFormer's single-head self-attention: x + proj_out(attention(q, k, v of norm(x)))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = normalize(channels)
        self.q, self.k, self.v = conv1x1(channels, channels), conv1x1(channels, channels), conv1x1(channels, channels)
        self.proj_out = conv1x1(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        return x + self.proj_out(spatial_attention(self.q(h), self.k(h), self.v(h), heads=1))


class MultiHeadAttnBlock(nn.Module):
    """RestoreFormer's multi-head attention. Self-attention on norm1(x) without `y`; with `y` (encoder
    features) the queries come from norm2(y) and the keys and values from norm1(x) (the cross-attention
    of RestoreFormer's decoder). `norm2` exists (and is in the checkpoints) either way."""

    def __init__(self, channels: int, head_size: int = 1) -> None:
        super().__init__()
        if channels % head_size:
            raise ValueError(f"head_size {head_size} must divide the channel count {channels}")
        self.head_size = head_size
        self.norm1 = normalize(channels)
        self.norm2 = normalize(channels)
        self.q, self.k, self.v = conv1x1(channels, channels), conv1x1(channels, channels), conv1x1(channels, channels)
        self.proj_out = conv1x1(channels, channels)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.norm1(x)
        query_source = h if y is None else self.norm2(y)
        attended = spatial_attention(self.q(query_source), self.k(h), self.v(h), heads=self.head_size)
        return x + self.proj_out(attended)


class VectorQuantizer(nn.Module):
    """Codebook `embedding` (codebook_size, emb_dim). `nearest()` picks each position's closest code
    (squared Euclidean distance written as |z|^2 + |e|^2 - 2 z.e, as the official code computes it);
    `lookup()` reads codes back as feature maps. Both run in float32, also under autocast."""

    def __init__(self, codebook_size: int, emb_dim: int) -> None:
        super().__init__()
        self.codebook_size, self.emb_dim = codebook_size, emb_dim
        self.embedding = nn.Embedding(codebook_size, emb_dim)
        self.embedding.weight.data.uniform_(-1.0 / codebook_size, 1.0 / codebook_size)

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code for every position of z (B, emb_dim, H, W): (B*H*W,) in (b, y, x) order."""
        with float32_region(z.device.type):
            flat = z.float().permute(0, 2, 3, 1).reshape(-1, self.emb_dim)
            codes = self.embedding.weight.float()
            distances = (flat.square().sum(1, keepdim=True) + codes.square().sum(1)
                         - 2 * torch.matmul(flat, codes.t()))
            return distances.argmin(1)

    def lookup(self, indices: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
        """Codes of `indices` (B*H*W,) as a float32 (B, emb_dim, H, W) map; shape = (B, H, W). Equal to the
        official one-hot matmul (exactly: each output is one codebook value times one plus zeros)."""
        b, h, w = shape
        codes = F.embedding(indices.reshape(-1), self.embedding.weight.float())
        return codes.view(b, h, w, self.emb_dim).permute(0, 3, 1, 2).contiguous()

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z_q, indices): the nearest codes of z as a float32 map and their indices. z_q is formed as the
        official straight-through value z + (z_q - z), which differs from z_q by float rounding."""
        indices = self.nearest(z)
        with float32_region(z.device.type):
            z = z.float()
            codes = self.lookup(indices, (z.shape[0], z.shape[2], z.shape[3]))
            return z + (codes - z).detach(), indices
