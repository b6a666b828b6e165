"""RestoreFormer: High-Quality Blind Face Restoration from Undegraded Key-Value Pairs (Wang, Li, Zhang,
Shan; CVPR 2022) and RestoreFormer++: Towards Real-World Blind Face Restoration from Undegraded Key-Value
Pairs (Wang, Li, Zhang, Shan; TPAMI 2023).

A VQGAN encoder (multi-head self-attention at 16x16) maps the face (RGB in [-1, 1], 512x512) to a
16x16 latent; `quant_conv` and the nearest-code vector quantizer replace each position by its closest
entry of a high-quality codebook; `post_quant_conv` and a decoder reconstruct the face. The decoder's
attention blocks are cross-attentions: queries from the (degraded) encoder features, keys and values
from the decoder's features (the "undegraded key-value pairs"). RestoreFormer attends at 16x16 only;
RestoreFormer++ (`ex_multi_scale_num=1`) also at 32x32, taking the encoder's 32x32 level output there.

One architecture, two checkpoint wrappers (identical key layouts for head_size 8, ex_multi_scale_num 0):
- GFPGAN's port `RestoreFormer` (TencentARC/GFPGAN gfpgan/archs/restoreformer_arch.py, RestoreFormer.pth):
  weights under `params_ema` (else `params`), strict load; GFPGANer calls `net(x, return_rgb=False,
  weight=0.5)[0]` (extra keyword arguments are ignored).
- wzhouxiff/RestoreFormerPlusPlus `VQVAEGANMultiHeadTransformer` (RestoreFormer/modules/vqvae/vqvae_arch.py):
  RestoreFormer++.ckpt is head_size 4, ex_multi_scale_num 1; the repo's RestoreFormer.ckpt is head_size 8,
  ex_multi_scale_num 0. Both are Lightning checkpoints: weights under `state_dict`, network keys prefixed
  `vqvae.` next to loss/discriminator keys; the official loader strips `vqvae.` and loads with strict=False.

Official call `net(x)[0]` is the image. Here the forward returns `(image, indices)`: indices (B*H*W,) is
the chosen code per latent position (where the official classes return the training loss / statistics).
The code choice (quant_conv, distances, argmin, lookup) runs in float32 also under autocast, and so
does the encoder while `exact_codes` is True (the default): bf16 encoder features flip close choices
(6 of 256 on a golden case). Fast modes then speed up the decoder only; `net.exact_codes = False` lets the
encoder follow the autocast too.

Differences from VQGAN's blocks that matter: ResnetBlock shortcuts are `nin_shortcut`, the attention
has `norm1`/`norm2`, the encoder and decoder end with GroupNorm -> swish -> conv.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .vqgan import (Downsample, MultiHeadAttnBlock, ResBlock, Upsample, VectorQuantizer, float32_region, normalize,
                    swish)


def resnet_block(in_channels: int, out_channels: int) -> ResBlock:
    """RestoreFormer's ResnetBlock (no time embedding, no dropout at inference): shortcut `nin_shortcut`."""
    return ResBlock(in_channels, out_channels, shortcut_name="nin_shortcut")


class Level(nn.Module):
    """One resolution of the encoder (`block`, `attn`, `downsample`) or decoder (`block`, `attn`, `upsample`)."""

    def __init__(self, blocks: list[nn.Module], attns: list[nn.Module], resample: nn.Module | None,
                 resample_name: str) -> None:
        super().__init__()
        self.block = nn.ModuleList(blocks)
        self.attn = nn.ModuleList(attns)
        if resample is not None:
            setattr(self, resample_name, resample)


class Mid(nn.Module):
    """block_1 -> attn_1 -> block_2 at the lowest resolution."""

    def __init__(self, channels: int, head_size: int) -> None:
        super().__init__()
        self.block_1 = resnet_block(channels, channels)
        self.attn_1 = MultiHeadAttnBlock(channels, head_size)
        self.block_2 = resnet_block(channels, channels)


class MultiHeadEncoder(nn.Module):
    """Returns the dict of features the decoder attends to: 'block_<level>' (each level's output before
    downsampling), 'block_<last>_atten' (after mid.block_1), 'mid_atten' (after mid.block_2), 'out'."""

    def __init__(self, ch: int, ch_mult: Sequence[int], num_res_blocks: int, attn_resolutions: Sequence[int],
                 in_channels: int, resolution: int, z_channels: int, head_size: int) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, ch, kernel_size=3, stride=1, padding=1)
        self.down = nn.ModuleList()
        channels = ch
        for level, mult in enumerate(ch_mult):
            blocks, attns = [], []
            for _ in range(num_res_blocks):
                blocks.append(resnet_block(channels, ch * mult))
                channels = ch * mult
                if resolution in attn_resolutions:
                    attns.append(MultiHeadAttnBlock(channels, head_size))
            last = level == len(ch_mult) - 1
            self.down.append(Level(blocks, attns, None if last else Downsample(channels), "downsample"))
            if not last:
                resolution //= 2
        self.mid = Mid(channels, head_size)
        self.norm_out = normalize(channels)
        self.conv_out = nn.Conv2d(channels, z_channels, kernel_size=3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features: dict[str, torch.Tensor] = {}
        h = self.conv_in(x)
        last = len(self.down) - 1
        for index, level in enumerate(self.down):
            for i, block in enumerate(level.block):
                h = block(h)
                if len(level.attn) > 0:
                    h = level.attn[i](h)
            if index != last:
                features[f"block_{index}"] = h
                h = level.downsample(h)
        h = self.mid.block_1(h)
        features[f"block_{last}_atten"] = h
        h = self.mid.block_2(self.mid.attn_1(h))
        features["mid_atten"] = h
        features["out"] = self.conv_out(swish(self.norm_out(h)))
        return features


class MultiHeadDecoderTransformer(nn.Module):
    """Decoder whose attention blocks take the encoder's features of the same resolution as queries."""

    def __init__(self, ch: int, out_ch: int, ch_mult: Sequence[int], num_res_blocks: int,
                 attn_resolutions: Sequence[int], resolution: int, z_channels: int, head_size: int) -> None:
        super().__init__()
        channels = ch * ch_mult[-1]
        resolution = resolution // 2 ** (len(ch_mult) - 1)
        self.conv_in = nn.Conv2d(z_channels, channels, kernel_size=3, stride=1, padding=1)
        self.mid = Mid(channels, head_size)
        levels: list[Level] = []
        for level in reversed(range(len(ch_mult))):
            blocks, attns = [], []
            for _ in range(num_res_blocks + 1):
                blocks.append(resnet_block(channels, ch * ch_mult[level]))
                channels = ch * ch_mult[level]
                if resolution in attn_resolutions:
                    attns.append(MultiHeadAttnBlock(channels, head_size))
            levels.insert(0, Level(blocks, attns, Upsample(channels) if level != 0 else None, "upsample"))
            if level != 0:
                resolution *= 2
        self.up = nn.ModuleList(levels)
        self.norm_out = normalize(channels)
        self.conv_out = nn.Conv2d(channels, out_ch, kernel_size=3, stride=1, padding=1)

    def forward(self, z: torch.Tensor, features: dict[str, torch.Tensor]) -> torch.Tensor:
        h = self.mid.block_1(self.conv_in(z))
        h = self.mid.block_2(self.mid.attn_1(h, features["mid_atten"]))
        for index in reversed(range(len(self.up))):
            level = self.up[index]
            # RestoreFormer++: the '_atten' feature where the encoder has one (lowest level), else the level output
            key = f"block_{index}_atten" if f"block_{index}_atten" in features else f"block_{index}"
            for i, block in enumerate(level.block):
                h = block(h)
                if len(level.attn) > 0:
                    h = level.attn[i](h, features[key])
            if index != 0:
                h = level.upsample(h)
        return self.conv_out(swish(self.norm_out(h)))


class RestoreFormer(nn.Module):
    """RestoreFormer / RestoreFormer++ network (keys: encoder.*, decoder.*, quantize.embedding.weight,
    quant_conv.*, post_quant_conv.*). Defaults: GFPGAN's `RestoreFormer` (head_size 8, attention at 16x16);
    `RestoreFormer(head_size=4, ex_multi_scale_num=1)` (= `RestoreFormerPlusPlus()`) is RestoreFormer++."""

    fix_encoder_freezes_quant_conv = False  # GFPGAN's port freezes the encoder only

    def __init__(self, n_embed: int = 1024, embed_dim: int = 256, ch: int = 64, out_ch: int = 3,
                 ch_mult: Sequence[int] = (1, 2, 2, 4, 4, 8), num_res_blocks: int = 2,
                 attn_resolutions: Sequence[int] = (16,), in_channels: int = 3, resolution: int = 512,
                 z_channels: int = 256, fix_decoder: bool = False, fix_codebook: bool = True,
                 fix_encoder: bool = False, head_size: int = 8, ex_multi_scale_num: int = 0) -> None:
        super().__init__()
        attn_resolutions = list(attn_resolutions)
        self.encoder = MultiHeadEncoder(ch, ch_mult, num_res_blocks, attn_resolutions, in_channels, resolution,
                                        z_channels, head_size)
        for _ in range(ex_multi_scale_num):  # RestoreFormer++: the decoder also attends at twice the resolution
            attn_resolutions = [attn_resolutions[0], attn_resolutions[-1] * 2]
        self.decoder = MultiHeadDecoderTransformer(ch, out_ch, ch_mult, num_res_blocks, attn_resolutions, resolution,
                                                   z_channels, head_size)
        self.quantize = VectorQuantizer(n_embed, embed_dim)
        self.quant_conv = nn.Conv2d(z_channels, embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, z_channels, 1)
        self.exact_codes = True  # under autocast the encoder runs in float32 (see the module docstring)
        frozen: list[nn.Module] = []
        if fix_decoder:
            frozen += [self.decoder, self.post_quant_conv, self.quantize]
        elif fix_codebook:
            frozen.append(self.quantize)
        if fix_encoder:
            frozen.append(self.encoder)
            if self.fix_encoder_freezes_quant_conv:
                frozen.append(self.quant_conv)
        for module in frozen:
            for param in module.parameters():
                param.requires_grad = False

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """(quantized latent (float32), code indices (B*H*W,), encoder features)."""
        device = x.device.type
        with float32_region(device, self.exact_codes):
            features = self.encoder(x.float() if self.exact_codes else x)
        with float32_region(device):  # the discrete choice in float32
            h = F.conv2d(features["out"].float(), self.quant_conv.weight.float(), self.quant_conv.bias.float())
            quant, indices = self.quantize.quantize(h)
        return quant, indices, features

    def decode(self, quant: torch.Tensor, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(quant), features)

    def forward(self, x: torch.Tensor, **ignored) -> tuple[torch.Tensor, torch.Tensor]:
        """(image (B, 3, H, W) in [-1, 1], code index per latent position (B*H*W,)). Keyword arguments of
        GFPGANer's call (return_rgb, weight) are accepted and ignored, as by the official class."""
        quant, indices, features = self.encode(x)
        return self.decode(quant, features), indices


class RestoreFormerPlusPlus(RestoreFormer):
    """RestoreFormer++ (`VQVAEGANMultiHeadTransformer` defaults of the released RestoreFormer++.ckpt):
    head_size 4, multi-scale decoder attention at 16x16 and 32x32. Same network as RestoreFormer; only the
    defaults differ, and fix_encoder=True also freezes quant_conv (as the official class)."""

    fix_encoder_freezes_quant_conv = True

    def __init__(self, head_size: int = 4, ex_multi_scale_num: int = 1, **kwargs) -> None:
        super().__init__(head_size=head_size, ex_multi_scale_num=ex_multi_scale_num, **kwargs)
