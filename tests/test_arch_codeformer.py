"""CodeFormer against the official implementation (sczhou/CodeFormer): state-dict layout of the three
released configurations (manifests), golden forward cases (official outputs of recipe weights, see
shared/golden/README.md) for every distinct path (w = 0 / 0.5 / 0.7 / 1, AdaIN on/off, batch of two,
colorization, inpainting), bf16 + channels_last fast mode, and small configurations."""
from __future__ import annotations


import pytest
import torch

from conftest import shared_path
from facerestore.archs.codeformer import CodeFormer, adaptive_instance_normalization, inpaint_blend
from golden import load_case, manifest, psnr01, recipe_state_dict, state_dict_layout

CONFIGS = ["codeformer", "codeformer_colorization", "codeformer_inpainting"]
CASES = ["cf_w0.5_adain", "cf_w0_adain", "cf_w1_batch2", "cf_w0.7_noadain", "cfcolor_w0", "cfinpaint_w1"]
# lq_feat (std 1, max |x| ~8): the official float32 encoder is itself up to 2.2e-3 away from a float64
# evaluation of the same weights (cf_w1_batch2, second face), this one within 1.4e-5 of float64; the tokens
# built from it are compared exactly.
LQ_FEAT_ATOL = 5e-3
# The output follows that official noise on the second face of cf_w1_batch2 (w = 1 feeds the encoder features
# straight into the generator): there 0.56% of the values differ by more than 1e-4 (up to 6.7e-4).
NOISY_OUTPUT_ATOL = {"cf_w1_batch2": 1e-3}


@pytest.fixture(scope="module")
def golden_nets():
    """config -> CodeFormer with the recipe weights, built once per module on first use."""
    cache: dict[str, CodeFormer] = {}

    def get(config: str) -> CodeFormer:
        if config not in cache:
            net = CodeFormer(**manifest(config)["constructor_kwargs"])
            net.load_state_dict(recipe_state_dict(shared_path(f"golden/codeformer/{config}_recipe.json")), strict=True)
            cache[config] = net.eval()
        return cache[config]

    yield get
    cache.clear()


def official_output(net: CodeFormer, x: torch.Tensor, config: str, forward_kwargs: dict):
    """The call of the official inference script of the config (inpainting blends in the input)."""
    out, logits, lq_feat = net(x, **forward_kwargs)
    if config == "codeformer_inpainting":
        out = inpaint_blend(x, out)
    return out, logits, lq_feat


@pytest.mark.parametrize("config", CONFIGS)
def test_state_dict_layout_matches_the_released_checkpoints(config):
    m = manifest(config)
    with torch.device("meta"):
        net = CodeFormer(**m["constructor_kwargs"])
    layout = state_dict_layout(net)
    assert layout == m["state_dict"]  # ordered, 515 / 497 / 497 entries
    assert len(layout) == m["num_tensors"]
    assert sum(p.numel() for p in net.parameters()) == m["num_parameters"]


def test_fusion_points_are_the_official_tables():
    with torch.device("meta"):
        net = CodeFormer()
    assert net.encoder.fuse_index == {512: 2, 256: 5, 128: 8, 64: 11, 32: 14, 16: 18}
    assert net.generator.fuse_index == {16: 6, 32: 9, 64: 12, 128: 15, 256: 18, 512: 21}
    assert net.channels == {16: 512, 32: 256, 64: 256, 128: 128, 256: 128, 512: 64}
    frozen = {name.split(".")[0] for name, p in net.named_parameters() if not p.requires_grad}
    assert frozen == {"quantize", "generator"}  # fix_modules default


@pytest.mark.parametrize("name", CASES)
def test_forward_matches_official(name, golden_nets):
    meta, case = load_case("codeformer", name)
    net = golden_nets(meta["config"])
    with torch.no_grad():
        out, logits, lq_feat = official_output(net, case["input"], meta["config"], meta["forward_kwargs"])
    assert torch.equal(logits.argmax(dim=2), case["logits_top1"])  # every token exactly
    torch.testing.assert_close(lq_feat, case["lq_feat"], rtol=0, atol=LQ_FEAT_ATOL)
    # golden/README.md: the official code differs from itself by up to 2x this between thread counts
    tolerance = max(1e-4, 2 * meta["one_thread_vs_default_max_abs_diff"])
    assert out.shape == case["output"].shape and out.dtype == torch.float32
    error = (out - case["output"]).abs()
    assert error.max().item() <= NOISY_OUTPUT_ATOL.get(name, tolerance)
    assert (error > tolerance).float().mean().item() < 1e-2


def test_bfloat16_channels_last_keeps_tokens_and_40db(golden_nets):
    """Fast mode (as the Restorer runs it): tokens identical to float32, image within 40 dB."""
    meta, case = load_case("codeformer", "cf_w0.5_adain")
    net = golden_nets(meta["config"]).to(memory_format=torch.channels_last)
    try:
        x = case["input"].contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            out, logits, lq_feat = net(x, **meta["forward_kwargs"])
    finally:
        net.to(memory_format=torch.contiguous_format)
    assert out.dtype == torch.bfloat16 and logits.dtype == lq_feat.dtype == torch.float32
    assert torch.equal(logits.argmax(dim=2), case["logits_top1"])
    assert psnr01(out, case["output"]) >= 40


def test_inpaint_blend_replaces_only_pure_white_pixels():
    x = torch.tensor([1.0, 1.0, 0.99, -1.0, 0.0]).view(1, 1, 1, 5).expand(1, 3, 1, 5).clone()
    x[0, 2, 0, 1] = 0.5  # two white channels are not a hole
    out = torch.full_like(x, 0.25)
    blended = inpaint_blend(x, out)
    assert torch.equal(blended[..., 0], out[..., 0])  # the only pure-white pixel
    assert torch.equal(blended[..., 1:], x[..., 1:])


def test_adain_takes_the_style_mean_and_unbiased_std():
    content, style = torch.randn(2, 4, 5, 5), 3 * torch.randn(2, 4, 5, 5) + 1
    out = adaptive_instance_normalization(content, style)
    torch.testing.assert_close(out.mean((2, 3)), style.mean((2, 3)), rtol=0, atol=1e-5)
    # std = sqrt(unbiased var + 1e-5) for both maps
    expected = (style.flatten(2).var(2) + 1e-5).sqrt() / (content.flatten(2).var(2) + 1e-5).sqrt() \
        * content.flatten(2).std(2)
    torch.testing.assert_close(out.flatten(2).std(2), expected, rtol=1e-4, atol=1e-5)


def small_codeformer(**overrides) -> CodeFormer:
    """A 32x32 CodeFormer (8x8 tokens, three levels) of the same structure."""
    kwargs = dict(dim_embd=64, n_head=4, n_layers=2, codebook_size=32, latent_size=64, connect_list=["16", "32"],
                  img_size=32, nf=32, ch_mult=(1, 1, 2), attn_resolutions=(8,))
    return CodeFormer(**{**kwargs, **overrides}).eval()


def test_small_config_forward_shapes_and_fusion_switch():
    net = small_codeformer()
    assert net.encoder.fuse_index == {32: 2, 16: 5, 8: 9} and net.generator.fuse_index == {8: 6, 16: 9, 32: 12}
    for module in net.fuse_convs_dict.values():  # make the fusion visible: random init gives scale/shift ~0
        torch.nn.init.normal_(module.shift[2].bias, std=1.0)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        out0, logits, lq_feat = net(x, w=0)
        out_half = net(x, w=0.5, adain=True)[0]
        code_logits, code_lq = net(x, code_only=True)
    assert out0.shape == (2, 3, 32, 32) and logits.shape == (2, 64, 32) and lq_feat.shape == (2, 256, 8, 8)
    assert torch.equal(code_logits, logits) and torch.equal(code_lq, lq_feat)
    assert not torch.allclose(out0, out_half)
    with torch.no_grad():  # w = 0 skips the fusion blocks entirely
        for p in net.fuse_convs_dict.parameters():
            p.fill_(float("nan"))
        torch.testing.assert_close(net(x, w=0)[0], out0, rtol=0, atol=0)
    with pytest.raises(ValueError, match="resize the aligned face to 32x32"):
        net(torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match="connect_list"):
        small_codeformer(connect_list=["64"])


def test_small_config_bfloat16_tokens_equal_float32_and_gradients_flow():
    net = small_codeformer(fix_modules=None)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        exact = net(x, w=1, adain=True)
        net.to(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast = net(x.contiguous(memory_format=torch.channels_last), w=1, adain=True)
        net.to(memory_format=torch.contiguous_format)
    assert torch.equal(fast[1].argmax(2), exact[1].argmax(2))
    assert torch.isfinite(fast[0].float()).all()
    net.train()
    logits, _ = net(x, code_only=True)
    logits.logsumexp(2).sum().backward()
    assert net.encoder.blocks[0].weight.grad is not None and net.position_emb.grad is not None
