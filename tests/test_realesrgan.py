"""Real-ESRGAN: RRDBNet's checkpoint layout, the golden network outputs and every golden
`RealESRGANer.enhance` case (shared/golden/realesrgan, produced by the official code with recipe weights),
config detection, the fast modes, and the tile assembly on small configs of the real architecture."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from conftest import shared_path
from facerestore.archs.ops import official_ops
from facerestore.archs.rrdbnet import RRDBNet, rrdbnet_config_from_state_dict
from facerestore.metrics.pixel import psnr
from facerestore.upscale import Upscaler
from golden import manifest as golden_manifest
from golden import recipe_state_dict, state_dict_layout

CONFIGS = ("x2plus", "x4plus")
PIPELINE_CASES = {"x2plus": 8, "x4plus": 3}


def golden(relpath: str):
    return shared_path(f"golden/{relpath}")


def manifest(config: str) -> dict:
    return golden_manifest(f"realesrgan_{config}")


@pytest.fixture(scope="module")
def golden_nets() -> dict[str, RRDBNet]:
    nets = {}
    for config in CONFIGS:
        net = RRDBNet(**manifest(config)["constructor_kwargs"]).eval()
        net.load_state_dict(recipe_state_dict(golden(f"realesrgan/realesrgan_{config}_recipe.json")), strict=True)
        nets[config] = net
    return nets


def small_net(scale: int, seed: int = 0) -> RRDBNet:
    """The real architecture at a small size, with weights that keep outputs mostly in [0, 1]."""
    torch.manual_seed(seed)
    net = RRDBNet(scale=scale, num_feat=16, num_block=1, num_grow_ch=8).eval()
    with torch.no_grad():
        net.conv_last.weight.mul_(0.1)
        net.conv_last.bias.fill_(0.5)
    return net


def test_layout_equals_the_manifests():
    for config in CONFIGS:
        expected = manifest(config)
        net = RRDBNet(**expected["constructor_kwargs"])
        assert state_dict_layout(net) == expected["state_dict"]  # keys, order, shapes, dtypes
        assert sum(p.numel() for p in net.parameters()) == expected["num_parameters"]
    assert manifest("x2plus")["state_dict"][0]["shape"] == [64, 12, 3, 3]  # pixel-unshuffled input


@pytest.mark.parametrize("config", CONFIGS)
def test_network_reproduces_the_official_outputs(golden_nets, config):
    case = np.load(golden(f"realesrgan/realesrgan_{config}_net.npz"))
    x = torch.from_numpy(case["input"])
    net = golden_nets[config]
    with torch.inference_mode():
        out = net(x)  # fast exact mode, NCHW
        out_channels_last = net.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
        net.to(memory_format=torch.contiguous_format)
    expected = torch.from_numpy(case["output"])
    # tolerance of the golden data: 1e-4 (the official code's own fp32-vs-fp64 spread is ~1e-6)
    for result in (out, out_channels_last):
        assert result.shape == expected.shape
        assert (result - expected).abs().max().item() <= 1e-4


@pytest.mark.parametrize("config", CONFIGS)
def test_pipeline_reproduces_realesrganer_enhance(golden_nets, config):
    cases = json.loads(golden(f"realesrgan/realesrgan_{config}_pipeline.json").read_text())["cases"]
    assert len(cases) == PIPELINE_CASES[config]
    upscaler = Upscaler(golden_nets[config], device="cpu")
    for case in cases:
        data = np.load(golden(f"realesrgan/{case['case']}.npz"))
        kwargs = case["constructor"]
        assert kwargs["scale"] == upscaler.scale and not kwargs["half"]
        out = upscaler.upscale(data["input"], tile=kwargs["tile"], tile_pad=kwargs["tile_pad"],
                               pre_pad=kwargs["pre_pad"], **case["enhance_kwargs"])
        expected = data["output"]
        assert out.shape == expected.shape and out.dtype == expected.dtype, case["case"]
        # within one grey level (16-bit: 257): float noise can flip a rounding
        limit = 257 if expected.dtype == np.uint16 else 1
        assert np.abs(out.astype(np.int64) - expected.astype(np.int64)).max() <= limit, case["case"]


def test_config_detection():
    for config in CONFIGS:
        expected = manifest(config)["constructor_kwargs"]
        net = RRDBNet(**expected)
        assert rrdbnet_config_from_state_dict(net.state_dict()) == expected
    # other block counts / widths / scales (e.g. the 6-block anime model, community 4x models)
    for kwargs in ({"scale": 4, "num_block": 6}, {"scale": 1, "num_feat": 32, "num_block": 2, "num_grow_ch": 16},
                   {"scale": 2, "num_in_ch": 1, "num_out_ch": 1, "num_block": 3}):
        full = {"num_in_ch": 3, "num_out_ch": 3, "scale": 4, "num_feat": 64, "num_block": 23, "num_grow_ch": 32,
                **kwargs}
        assert rrdbnet_config_from_state_dict(RRDBNet(**full).state_dict()) == full
    with pytest.raises(ValueError, match="params_ema"):
        rrdbnet_config_from_state_dict({"params_ema": {}})


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_fast_exact_mode_is_the_official_op_sequence(scale):
    net = small_net(scale)
    x = torch.rand(1, 3, 24, 20)
    with torch.inference_mode():
        fast = net(x)
        with official_ops():
            plain = net(x)
    assert fast.shape == (1, 3, 24 * scale, 20 * scale)
    # the fused epilogues and in-place residual scalings round as the separate ops; only the conv
    # algorithm may differ (PyTorch runs small plain convs through im2col + GEMM, the fused ones through
    # oneDNN): summation-order noise of a few 1e-8 (bit-identical on the released config's sizes)
    torch.testing.assert_close(fast, plain, rtol=0, atol=1e-6)


def test_odd_sizes_need_padding_with_a_clear_error():
    with pytest.raises(ValueError, match="divisible by 2"):
        small_net(2)(torch.rand(1, 3, 9, 10))


def test_bf16_within_40db_of_fp32_on_a_real_photo(golden_nets):
    photo = cv2.imread(str(shared_path("data/real/whole/Blake_Lively.jpg")))
    h, w = photo.shape[:2]
    crop = photo[h // 3:h // 3 + 80, w // 3:w // 3 + 96]
    exact = Upscaler(golden_nets["x2plus"], device="cpu").upscale(crop, tile=0)
    fast_net = RRDBNet(**manifest("x2plus")["constructor_kwargs"])
    fast_net.load_state_dict(golden_nets["x2plus"].state_dict())
    fast = Upscaler(fast_net, device="cpu", precision="bf16").upscale(crop, tile=0)
    assert fast.shape == exact.shape == (160, 192, 3)
    assert psnr(fast, exact) >= 40, psnr(fast, exact)


@pytest.mark.parametrize("scale, tile_pad", [(4, 24), (2, 40)])
def test_tiles_with_enough_overlap_equal_the_untiled_run(scale, tile_pad):
    """Each output pixel depends on input pixels within the network's receptive field (here < 20 input
    pixels at scale 4, < 40 at scale 2: the convs before the upsampling run at half resolution). With a
    tile_pad that covers it, tiles reproduce the untiled output; a short tile_pad differs near seams."""
    upscaler = Upscaler(small_net(scale, seed=1), device="cpu")
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 256, (45, 62, 3), dtype=np.uint8), (5, 5), 0)
    whole = upscaler.upscale(img, tile=0, pre_pad=4)
    tiled = upscaler.upscale(img, tile=16, tile_pad=tile_pad, pre_pad=4)
    assert whole.shape == tiled.shape == (45 * scale, 62 * scale, 3)
    # conv algorithms differ with the tile shape: float noise (~1e-6) may flip a rounding
    assert np.abs(whole.astype(int) - tiled.astype(int)).max() <= 1
    assert np.mean(whole != tiled) < 1e-3
    # the default tile (tile=None) equals tile=0 on images no larger than one tile
    assert upscaler.default_tile >= 62 + 4
    assert np.array_equal(upscaler.upscale(img, pre_pad=4), whole)


def test_call_is_a_background_upsampler_and_inputs_are_checked():
    upscaler = Upscaler(small_net(2), device="cpu")
    assert upscaler.scale == 2
    img = np.random.default_rng(0).integers(0, 256, (30, 41, 3), dtype=np.uint8)
    out = upscaler(img, 2)
    assert out.shape == (60, 82, 3) and out.dtype == np.uint8
    assert np.array_equal(out, upscaler.upscale(img))
    assert upscaler(img, 1.5).shape == (45, 61, 3)  # int(w * outscale), as GFPGAN's bg_upsampler
    assert upscaler.upscale(img[:, :, :1]).shape == (60, 82)  # HxWx1 runs as gray
    with pytest.raises(ValueError, match="alpha_upsampler"):
        upscaler.upscale(img, alpha_upsampler="bicubic")
    with pytest.raises(ValueError, match="pre_pad"):
        upscaler.upscale(img[:8, :8], pre_pad=10)
    with pytest.raises(ValueError, match="precision"):
        Upscaler(small_net(2), precision="int8")
