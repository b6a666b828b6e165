"""RestoreFormer (Wang et al. CVPR 2022) and RestoreFormer++ (TPAMI 2023): multi-head cross-attention
between the degraded face's features and a high-quality key-value dictionary (a VQ codebook).
512x512 FFHQ-aligned faces, RGB in [-1, 1], official call `net(x)[0]`.

- `restoreformer`: GFPGAN's port (`RestoreFormer.pth`, GFPGAN release v1.3.4, weights under
  `params_ema`, else `params`), head_size 8.
- `restoreformer-plusplus` (`restoreformer++`): `RestoreFormer++.ckpt` (RestoreFormerPlusPlus release
  v1.0.0), a Lightning training checkpoint: weights under `state_dict` with keys prefixed `vqvae.`
  (stripped; loss and discriminator weights in the file are ignored, every network key must be there),
  `VQVAEGANMultiHeadTransformer(head_size=4, ex_multi_scale_num=1)`.
"""
from ..archs.restoreformer import RestoreFormer, RestoreFormerPlusPlus
from ..registry import Family, TrainingSpec, WeightFile, ZooEntry, register

_PAPER = ("Wang, Wu, Li, Zhao, Zhang, Zuo. RestoreFormer: High-Quality Blind Face Restoration from Undegraded "
          "Key-Value Pairs. CVPR 2022")
_PAPER_PP = ("Wang, Zhang, Li, Wu, Zuo, Zhao. RestoreFormer++: Towards Real-World Blind Face Restoration from "
             "Undegraded Key-Value Pairs. TPAMI 2023")


def train_forward(net: RestoreFormer, batch: dict, want_rgbs: bool) -> dict:
    image, _ = net(batch["lq"])
    return {"image": image}


FAMILY = Family(
    name="restoreformer",
    archs=(RestoreFormer, RestoreFormerPlusPlus),
    runner="facerestore.restorer:FaceRestorer",
    size_argument="resolution",
    # the restoration stage: encoder and decoder learn, the HQ codebook stays fixed (fix_codebook=True)
    training=TrainingSpec(config_archs={"restoreformer": "restoreformer", "restoreformer++": "restoreformer-plusplus"},
                          forward=train_forward, discriminator="stylegan2", frozen=("quantize",)),
    paste="parse",  # both inference scripts paste through facexlib's ParseNet mask
    export="facerestore.export:restoreformer_spec",  # image -> output, indices
    tiny=dict(n_embed=16, embed_dim=8, ch=32, ch_mult=(1, 1, 2), resolution=32, z_channels=32, attn_resolutions=(8,)),
)
_COMMON = dict(task="restore", face_size=512, template="ffhq", color="rgb", input_range=(-1.0, 1.0),
               forward_kwargs={}, precisions=("fp32", "bf16", "fp16"), family=FAMILY)
_FAST_NOTE = (" Fast modes (bf16/fp16) run the network under autocast with the quantizer's nearest-code choice "
              "in fp32.")

register(ZooEntry(
    name="restoreformer", arch=RestoreFormer, arch_config={},
    files=(WeightFile("RestoreFormer.pth",
                      ("https://github.com/TencentARC/GFPGAN/releases/download/v1.3.4/RestoreFormer.pth",),
                      state_dict_key="params_ema"),),
    license="Apache-2.0 (GFPGAN repository, which releases this port); RestoreFormer's own repository has "
            "its own terms", commercial_use=False,
    paper=_PAPER, source="https://github.com/wzhouxiff/RestoreFormer",
    description="RestoreFormer (GFPGAN's port): cross-attention to a high-quality key-value codebook",
    notes="GFPGAN's inference_gfpgan.py -v RestoreFormer uses this file and pastes with facexlib's parse mask."
          + _FAST_NOTE,
    **_COMMON,
))
register(ZooEntry(
    name="restoreformer-plusplus", arch=RestoreFormerPlusPlus, arch_config={"head_size": 4, "ex_multi_scale_num": 1},
    files=(WeightFile("RestoreFormer++.ckpt",
                      ("https://github.com/wzhouxiff/RestoreFormerPlusPlus/releases/download/v1.0.0/RestoreFormer++.ckpt",),
                      state_dict_key="state_dict", network_prefix="vqvae."),),
    aliases=("restoreformer++",),
    license="RestoreFormerPlusPlus repository terms (no standard open-source license stated; research use)",
    commercial_use=False,
    paper=_PAPER_PP, source="https://github.com/wzhouxiff/RestoreFormerPlusPlus",
    description="RestoreFormer++: multi-scale cross-attention to HQ key-value pairs, the extended RestoreFormer",
    notes="The release file is a training checkpoint (state_dict, keys prefixed vqvae., plus loss/discriminator "
          "weights that are ignored)." + _FAST_NOTE,
    **_COMMON,
))
