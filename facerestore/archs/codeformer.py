"""CodeFormer: Towards Robust Blind Face Restoration with Codebook Lookup Transformer
(Zhou, Chan, Li, Loy; NeurIPS 2022). Reproduces sczhou/CodeFormer `basicsr/archs/codeformer_arch.py`.

A VQGAN encoder maps the 512x512 face (RGB in [-1, 1]) to a 16x16 grid of 256-d features (`lq_feat`).
A 9-layer pre-norm transformer (sine-free: a learned `position_emb` added to queries and keys) predicts,
for each of the 256 positions, logits over the codebook; the top-1 code of every position is looked up
(AdaIN, with `adain=True`, gives the looked-up map the channel mean and std of `lq_feat`: std =
sqrt(unbiased variance + 1e-5)) and decoded by the VQGAN generator. With `w > 0` a controllable feature
transformation (`Fuse_sft_block`) mixes the encoder's features into the generator at the resolutions of
`connect_list`: out = dec + w * (dec * scale + shift), scale and shift computed from
concat(enc, dec) through a residual block and two conv stacks.

Official call: `net(x, w=0.5, adain=True)[0]` (inference_codeformer.py; w is --fidelity_weight);
the forward returns `(out, logits, lq_feat)`, logits (B, 256, codebook_size). Released checkpoints
(codeformer.pth, codeformer_colorization.pth, codeformer_inpainting.pth) hold the weights under
`params_ema` and load strictly. Colorization and inpainting use the same class with connect_list
['32', '64', '128'] (inpainting: codebook_size 512); inpainting keeps the input wherever it is not a
pure-white hole (`inpaint_blend`).

Token choice is discrete, so the logits head, the argmax and the codebook lookup (and AdaIN) run in
float32 also under autocast, and so do the encoder and transformer while `exact_codes` is True (the
default): bf16 encoder features flip close choices (9 of 256 tokens on a golden case, 38 dB). Fast modes
then speed up only the generator (and fusion); with `net.exact_codes = False` the encoder and
transformer follow the autocast too. The official choice is the top-1 of softmax(logits), i.e. the
argmax of the logits.

Beyond the official arguments, `img_size`, `nf`, `ch_mult`, `res_blocks`, `attn_resolutions` and
`emb_dim` (keyword-only, official values by default) scale the VQGAN for small test configurations;
the fusion points are derived from them (they reproduce the official tables for the default).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .ops import FusedSequential
from .vqgan import AttnBlock, Downsample, ResBlock, Upsample, VectorQuantizer, float32_region, normalize


def calc_mean_std(feat: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample, per-channel mean and std = sqrt(unbiased variance + eps) of a (B, C, H, W) map."""
    flat = feat.flatten(2)
    std = (flat.var(dim=2) + eps).sqrt()
    return flat.mean(dim=2)[..., None, None], std[..., None, None]


def adaptive_instance_normalization(content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """`content` with the channel means and stds of `style` (AdaIN)."""
    style_mean, style_std = calc_mean_std(style)
    content_mean, content_std = calc_mean_std(content)
    return (content - content_mean) / content_std * style_std + style_mean


def inpaint_blend(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """The official inpainting output: the network's output where the input is a pure-white hole (all three
    channels at 1.0, the top of the [-1, 1] range), the input everywhere else: (1 - mask) * x + mask * out."""
    mask = (x.sum(dim=1, keepdim=True) == 3).to(out.dtype)
    return (1 - mask) * x + mask * out


class Encoder(nn.Module):
    """VQGAN encoder (`blocks`): conv, per level `res_blocks` ResBlocks (each followed by an AttnBlock at
    the attention resolutions) and a Downsample (not after the last level), then ResBlock, AttnBlock,
    ResBlock, GroupNorm and a conv to emb_dim (no swish between the last two, as in the official code)."""

    def __init__(self, in_channels: int, nf: int, emb_dim: int, ch_mult: Sequence[int], res_blocks: int,
                 img_size: int, attn_resolutions: Sequence[int]) -> None:
        super().__init__()
        blocks: list[nn.Module] = [nn.Conv2d(in_channels, nf, kernel_size=3, stride=1, padding=1)]
        self.fuse_index: dict[int, int] = {}  # resolution -> block whose output is fused (last ResBlock of the level)
        resolution, channels = img_size, nf
        for level, mult in enumerate(ch_mult):
            for _ in range(res_blocks):
                blocks.append(ResBlock(channels, nf * mult))
                channels = nf * mult
                self.fuse_index[resolution] = len(blocks) - 1
                if resolution in attn_resolutions:
                    blocks.append(AttnBlock(channels))
            if level != len(ch_mult) - 1:
                blocks.append(Downsample(channels))
                resolution //= 2
        blocks += [ResBlock(channels, channels), AttnBlock(channels), ResBlock(channels, channels),
                   normalize(channels), nn.Conv2d(channels, emb_dim, kernel_size=3, stride=1, padding=1)]
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class Generator(nn.Module):
    """VQGAN decoder (`blocks`): conv from emb_dim, ResBlock, AttnBlock, ResBlock, then per level (lowest
    resolution first) `res_blocks` ResBlocks (with AttnBlocks at the attention resolutions) and an
    Upsample (not after the last), then GroupNorm and a conv to RGB (no swish between them)."""

    def __init__(self, nf: int, emb_dim: int, ch_mult: Sequence[int], res_blocks: int, img_size: int,
                 attn_resolutions: Sequence[int]) -> None:
        super().__init__()
        channels = nf * ch_mult[-1]
        resolution = img_size // 2 ** (len(ch_mult) - 1)
        blocks: list[nn.Module] = [nn.Conv2d(emb_dim, channels, kernel_size=3, stride=1, padding=1),
                                   ResBlock(channels, channels), AttnBlock(channels), ResBlock(channels, channels)]
        # resolution -> block after which the fusion runs: the level's first ResBlock, or its last one at
        # an attention resolution (official tables: {'16': 6, '32': 9, '64': 12, '128': 15, '256': 18, '512': 21})
        self.fuse_index: dict[int, int] = {}
        for level in reversed(range(len(ch_mult))):
            for block in range(res_blocks):
                blocks.append(ResBlock(channels, nf * ch_mult[level]))
                channels = nf * ch_mult[level]
                if block == 0 or resolution in attn_resolutions:
                    self.fuse_index[resolution] = len(blocks) - 1
                if resolution in attn_resolutions:
                    blocks.append(AttnBlock(channels))
            if level != 0:
                blocks.append(Upsample(channels))
                resolution *= 2
        blocks += [normalize(channels), nn.Conv2d(channels, 3, kernel_size=3, stride=1, padding=1)]
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class TransformerSALayer(nn.Module):
    """Pre-norm transformer layer: x + attn(q = k = norm1(x) + pos, v = norm1(x)), then
    x + linear2(gelu(linear1(norm2(x)))). Sequences are (tokens, batch, dim) as in the official code."""

    def __init__(self, embed_dim: int, nhead: int = 8, dim_mlp: int = 2048) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(embed_dim, nhead, dropout=0.0)
        self.linear1 = nn.Linear(embed_dim, dim_mlp)
        self.linear2 = nn.Linear(dim_mlp, embed_dim)
        self.norm1 = nn.LayerNorm(embed_dim)
        self.norm2 = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor, query_pos: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        q = k = h + query_pos
        x = x + self.self_attn(q, k, value=h, need_weights=False)[0]
        return x + self.linear2(F.gelu(self.linear1(self.norm2(x))))


class FuseSftBlock(nn.Module):
    """The controllable feature transformation (official `Fuse_sft_block`): dec + w * (dec * scale + shift),
    scale and shift from encode_enc(concat(enc, dec))."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.encode_enc = ResBlock(2 * in_ch, out_ch)
        self.scale = FusedSequential(nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1), nn.LeakyReLU(0.2, True),
                                     nn.Conv2d(out_ch, out_ch, kernel_size=3, padding=1))
        self.shift = FusedSequential(nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1), nn.LeakyReLU(0.2, True),
                                     nn.Conv2d(out_ch, out_ch, kernel_size=3, padding=1))

    def forward(self, enc_feat: torch.Tensor, dec_feat: torch.Tensor, w: float | torch.Tensor = 1) -> torch.Tensor:
        enc_feat = self.encode_enc(torch.cat([enc_feat, dec_feat], dim=1))
        scale = self.scale(enc_feat)
        shift = self.shift(enc_feat)
        return dec_feat + w * (dec_feat * scale + shift)


class CodeFormer(nn.Module):
    """CodeFormer (state-dict keys as the released checkpoints: position_emb, encoder.blocks.*,
    quantize.embedding.weight, generator.blocks.*, feat_emb, ft_layers.*, idx_pred_layer.*,
    fuse_convs_dict.<res>.*). Input: (B, 3, img_size, img_size) RGB in [-1, 1]."""

    def __init__(self, dim_embd: int = 512, n_head: int = 8, n_layers: int = 9, codebook_size: int = 1024,
                 latent_size: int = 256, connect_list: Sequence[str] = ("32", "64", "128", "256"),
                 fix_modules: Sequence[str] | None = ("quantize", "generator"), *, img_size: int = 512, nf: int = 64,
                 ch_mult: Sequence[int] = (1, 2, 2, 4, 4, 8), res_blocks: int = 2,
                 attn_resolutions: Sequence[int] = (16,), emb_dim: int = 256) -> None:
        super().__init__()
        self.img_size, self.emb_dim = img_size, emb_dim
        self.exact_codes = True  # see forward: under autocast the code-choosing half runs in float32
        self.latent_res = img_size // 2 ** (len(ch_mult) - 1)
        if self.latent_res * 2 ** (len(ch_mult) - 1) != img_size or self.latent_res ** 2 != latent_size:
            raise ValueError(f"img_size {img_size} with {len(ch_mult)} levels gives a {self.latent_res}x"
                             f"{self.latent_res} latent grid; latent_size must be its area (got {latent_size})")
        self.encoder = Encoder(3, nf, emb_dim, ch_mult, res_blocks, img_size, attn_resolutions)
        self.quantize = VectorQuantizer(codebook_size, emb_dim)
        self.generator = Generator(nf, emb_dim, ch_mult, res_blocks, img_size, attn_resolutions)
        if fix_modules is not None:
            for name in fix_modules:
                for param in getattr(self, name).parameters():
                    param.requires_grad = False

        self.connect_list = [str(size) for size in connect_list]
        self.channels = {img_size >> level: nf * mult for level, mult in enumerate(ch_mult)}
        unknown = [size for size in self.connect_list if int(size) not in self.channels]
        if unknown:
            raise ValueError(f"connect_list entries {unknown} are not resolutions of this network "
                             f"({sorted(self.channels)})")
        self.n_layers, self.dim_embd, self.dim_mlp = n_layers, dim_embd, dim_embd * 2
        self.position_emb = nn.Parameter(torch.zeros(latent_size, dim_embd))
        self.feat_emb = nn.Linear(emb_dim, dim_embd)
        self.ft_layers = nn.Sequential(*[TransformerSALayer(dim_embd, n_head, self.dim_mlp) for _ in range(n_layers)])
        self.idx_pred_layer = nn.Sequential(nn.LayerNorm(dim_embd), nn.Linear(dim_embd, codebook_size, bias=False))
        self.fuse_convs_dict = nn.ModuleDict()
        for size in self.connect_list:
            channels = self.channels[int(size)]
            self.fuse_convs_dict[size] = FuseSftBlock(channels, channels)

    def forward(self, x: torch.Tensor, w: float | torch.Tensor = 0, detach_16: bool = True, code_only: bool = False,
                adain: bool = False):
        """(out, logits, lq_feat): the restored face (B, 3, H, W) in [-1, 1], the code logits
        (B, latent_size, codebook_size) in float32, and the encoder output (B, emb_dim, h, w).
        w may be a 0-d tensor (the fidelity input of an exported graph).
        code_only=True returns (logits, lq_feat) without decoding."""
        if x.dim() != 4 or tuple(x.shape[-2:]) != (self.img_size, self.img_size):
            raise ValueError(f"CodeFormer takes (B, 3, {self.img_size}, {self.img_size}) faces, got {tuple(x.shape)}; "
                             f"resize the aligned face to {self.img_size}x{self.img_size}")
        fuse_sizes = [int(size) for size in self.connect_list]
        encoder_taps = {self.encoder.fuse_index[size]: size for size in fuse_sizes}
        enc_feats: dict[int, torch.Tensor] = {}
        device = x.device.type
        # The code choice is discrete: the logits head, argmax, lookup and AdaIN always run in float32, and
        # with exact_codes (default) the encoder and transformer too (bf16 features flip close choices).
        with float32_region(device, self.exact_codes):
            if self.exact_codes:
                x = x.float()
            for i, block in enumerate(self.encoder.blocks):
                x = block(x)
                if i in encoder_taps:
                    enc_feats[encoder_taps[i]] = x
            lq_feat = x
            batch = lq_feat.shape[0]
            pos_emb = self.position_emb.unsqueeze(1).repeat(1, batch, 1)
            query_emb = self.feat_emb(lq_feat.flatten(2).permute(2, 0, 1))  # (B, C, H, W) -> (HW, B, C)
            for layer in self.ft_layers:
                query_emb = layer(query_emb, query_pos=pos_emb)

        with float32_region(device):
            norm, head = self.idx_pred_layer
            logits = F.linear(F.layer_norm(query_emb.float(), norm.normalized_shape, norm.weight.float(),
                                           norm.bias.float(), norm.eps), head.weight.float())
            logits = logits.permute(1, 0, 2)  # (HW, B, n) -> (B, HW, n)
            if code_only:
                return logits, lq_feat
            top_idx = logits.argmax(dim=2)  # = top-1 of softmax(logits), the official choice
            quant_feat = self.quantize.lookup(top_idx, (batch, self.latent_res, self.latent_res))
            if detach_16:
                quant_feat = quant_feat.detach()
            if adain:
                quant_feat = adaptive_instance_normalization(quant_feat, lq_feat.float())

        x = quant_feat
        generator_taps = {self.generator.fuse_index[size]: size for size in fuse_sizes}
        # A tensor w (an exported graph's input) always runs the fusion: at w = 0 it adds 0 * (finite
        # features), which leaves the decoder features exactly as skipping it does.
        fuse = isinstance(w, torch.Tensor) or w > 0
        for i, block in enumerate(self.generator.blocks):
            x = block(x)
            if i in generator_taps and fuse:
                size = generator_taps[i]
                x = self.fuse_convs_dict[str(size)](enc_feats[size].detach(), x, w)
        return x, logits, lq_feat
