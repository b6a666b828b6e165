"""RestoreFormer (GFPGAN's port) and RestoreFormer++ against the official implementations: state-dict
layout of the released configurations (manifests), golden forward cases (official outputs of recipe
weights, see shared/golden/README.md), bf16 + channels_last fast mode, the vector quantizer, and small
configurations."""
from __future__ import annotations


import pytest
import torch

from conftest import shared_path
from facerestore.archs.restoreformer import RestoreFormer, RestoreFormerPlusPlus
from facerestore.archs.vqgan import VectorQuantizer
from golden import load_case, manifest, psnr01, recipe_state_dict, state_dict_layout

CONFIGS = ["restoreformer_gfpgan", "restoreformerpp", "restoreformer_rfpp"]
CLASSES = {"restoreformer_gfpgan": RestoreFormer, "restoreformerpp": RestoreFormerPlusPlus}


@pytest.fixture(scope="module")
def golden_nets():
    cache: dict[str, RestoreFormer] = {}

    def get(config: str) -> RestoreFormer:
        if config not in cache:
            net = CLASSES[config]()
            net.load_state_dict(recipe_state_dict(shared_path(f"golden/restoreformer/{config}_recipe.json")),
                                strict=True)
            cache[config] = net.eval()
        return cache[config]

    yield get
    cache.clear()


@pytest.mark.parametrize("config", CONFIGS)
def test_state_dict_layout_matches_the_released_checkpoints(config):
    m = manifest(config)
    with torch.device("meta"):
        net = RestoreFormer(**m["constructor_kwargs"])  # the official classes' arguments
    layout = state_dict_layout(net)
    assert layout == m["state_dict"]  # ordered, 405 / 441 / 405 entries
    assert sum(p.numel() for p in net.parameters()) == m["num_parameters"]


def test_plus_plus_defaults_are_the_released_restoreformer_plus_plus():
    with torch.device("meta"):
        net = RestoreFormerPlusPlus()
    layout = [[k, list(v.shape)] for k, v in net.state_dict().items()]
    assert layout == [[row["key"], row["shape"]] for row in manifest("restoreformerpp")["state_dict"]]
    assert net.decoder.mid.attn_1.head_size == 4


@pytest.mark.parametrize("config,name", [("restoreformer_gfpgan", "restoreformer_gfpgan_a"),
                                         ("restoreformerpp", "restoreformerpp_batch2")])
def test_forward_matches_official(config, name, golden_nets):
    meta, case = load_case("restoreformer", name)
    assert meta["config"] == config
    with torch.no_grad():
        out, indices = golden_nets(config)(case["input"], return_rgb=False, weight=0.5)  # GFPGANer's call
    assert torch.equal(indices, case["quant_index"])  # every code exactly
    # golden/README.md: networks within 1e-4 (their own float32-vs-float64 noise is ~3e-6)
    assert out.dtype == torch.float32 and (out - case["output"]).abs().max().item() <= 1e-4


def test_bfloat16_channels_last_keeps_codes_and_40db(golden_nets):
    """Fast mode (as the Restorer runs it): codes identical to float32, image within 40 dB."""
    meta, case = load_case("restoreformer", "restoreformerpp_a")
    net = golden_nets(meta["config"]).to(memory_format=torch.channels_last)
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            out, indices = net(case["input"].contiguous(memory_format=torch.channels_last))
    finally:
        net.to(memory_format=torch.contiguous_format)
    assert out.dtype == torch.bfloat16
    assert torch.equal(indices, case["quant_index"])
    assert psnr01(out, case["output"]) >= 40


def test_vector_quantizer_picks_the_nearest_code_and_looks_it_up():
    quantizer = VectorQuantizer(40, 8)
    torch.nn.init.normal_(quantizer.embedding.weight)
    z = torch.randn(2, 8, 3, 5)
    flat = z.permute(0, 2, 3, 1).reshape(-1, 8)
    expected = torch.cdist(flat.double(), quantizer.embedding.weight.double()).argmin(1)
    indices = quantizer.nearest(z)
    assert torch.equal(indices, expected)
    codes = quantizer.lookup(indices, (2, 3, 5))
    one_hot = torch.nn.functional.one_hot(indices, 40).float()
    assert torch.equal(codes, (one_hot @ quantizer.embedding.weight).view(2, 3, 5, 8).permute(0, 3, 1, 2))
    z_q, same = quantizer.quantize(z)
    assert torch.equal(same, indices)
    torch.testing.assert_close(z_q, codes, rtol=0, atol=1e-6)  # straight-through z + (z_q - z)


@pytest.mark.parametrize("cls", [RestoreFormer, RestoreFormerPlusPlus])
def test_small_config_forward(cls):
    net = cls(n_embed=16, embed_dim=8, ch=32, ch_mult=(1, 1, 2), resolution=32, z_channels=32,
              attn_resolutions=(8,)).eval()
    decoder_attention = [len(level.attn) for level in net.decoder.up]
    assert decoder_attention == ([0, 0, 3] if cls is RestoreFormer else [0, 3, 3])  # RF++: also at 16x16
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        out, indices = net(x)
        net.to(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast, fast_indices = net(x.contiguous(memory_format=torch.channels_last))
    assert out.shape == (2, 3, 32, 32) and indices.shape == (2 * 8 * 8,)
    assert int(indices.min()) >= 0 and int(indices.max()) < 16
    assert torch.equal(fast_indices, indices) and torch.isfinite(fast.float()).all()
    frozen = {name.split(".")[0] for name, p in net.named_parameters() if not p.requires_grad}
    assert frozen == {"quantize"}  # fix_codebook default
