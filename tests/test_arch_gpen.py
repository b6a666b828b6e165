"""GPEN's FullGenerator against the official implementation (state-dict layout of the four released
BFR configurations, golden forward cases), and the GPEN zoo entries with GPENRestorer's tasks."""
from __future__ import annotations

import dataclasses
import json

import cv2
import numpy as np
import pytest
import torch

import facerestore
from conftest import shared_path
from facerestore.archs.gpen import FullGenerator
from facerestore.registry import get_entry

TOL = dict(rtol=0, atol=1e-4)  # golden/README.md
MANIFESTS = {"gpen-bfr-256": "gpen_bfr_256", "gpen-bfr-512": "gpen_bfr_512", "gpen-bfr-1024": "gpen_bfr_1024",
             "gpen-bfr-2048": "gpen_bfr_2048"}
SMALL = dict(style_dim=32, n_mlp=2, channel_multiplier=2, narrow=1 / 16)


def layout(net: torch.nn.Module) -> list:
    return [[k, list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in net.state_dict().items()]


def load_case(name: str) -> dict:
    return torch.load(shared_path(f"golden/gpen/{name}.pt"), map_location="cpu", weights_only=True)


def build(case: dict, device: str = "cpu") -> FullGenerator:
    net = FullGenerator(**case["config"])
    net.load_state_dict(case["state_dict"], strict=True)
    return net.to(device).eval()


@pytest.mark.parametrize("manifest", sorted(MANIFESTS.values()))
def test_state_dict_layout_matches_the_released_checkpoints(manifest):
    m = json.loads(shared_path(f"golden/manifests/{manifest}.json").read_text())
    kwargs = m["constructor_kwargs"]
    with torch.device("meta"):  # 2048 px would allocate 285 MB of random init for nothing
        net = FullGenerator(kwargs.pop("size"), kwargs.pop("style_dim"), kwargs.pop("n_mlp"), **kwargs)
    assert layout(net) == m["state_dict"]
    assert {name for name, _ in net.named_buffers()} == set(m["buffers"])  # FIR kernels, all persistent
    assert sum(p.numel() for p in net.parameters()) == m["num_parameters"]


def test_fir_kernel_buffers_hold_the_official_values():
    net = FullGenerator(64, **SMALL)
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
    encoder_kernel = torch.outer(taps, taps) / 64
    state = net.state_dict()
    torch.testing.assert_close(state["ecd1.0.0.kernel"], encoder_kernel)
    torch.testing.assert_close(state["generator.convs.0.conv.blur.kernel"], encoder_kernel * 4)
    torch.testing.assert_close(state["generator.to_rgbs.0.upsample.kernel"], encoder_kernel * 4)


@pytest.mark.parametrize("name", ["gpen_c1", "gpen_c2"])
def test_forward_matches_official(name):
    case = load_case(name)
    net = build(case)
    with torch.no_grad():
        image, latents = net(case["input"], **case["forward_kwargs"])
        torch.testing.assert_close(image, case["output"]["image"], **TOL)
        assert latents is None
        for i in range(case["input"].shape[0]):  # a batch of one takes the weight-modulation path
            torch.testing.assert_close(net(case["input"][i:i + 1])[0], case["output"]["image"][i:i + 1], **TOL)


def test_bfloat16_autocast_runs_close_to_float32():
    case = load_case("gpen_c2")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        image, _ = build(case)(case["input"])
    expected = case["output"]["image"]
    assert (image.float() - expected).square().mean().sqrt() < 0.05 * expected.square().mean().sqrt()


def test_forward_is_deterministic_and_returns_latents():
    net = FullGenerator(32, **SMALL).eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    state = torch.get_rng_state()
    with torch.no_grad():
        first, _ = net(x)
        again, latents = net(x, return_latents=True)
    assert torch.equal(torch.get_rng_state(), state)  # the encoder features replace StyleGAN2's noise
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    assert latents.shape == (2, 8, 32)  # n_latent = 2 * log2(32) - 2, one style repeated


def test_device_argument_is_accepted_and_ignored():
    net = FullGenerator(32, **SMALL, device="cuda")  # the official signature; no GPU needed
    assert all(p.device.type == "cpu" for p in net.parameters())


def test_training_backward_pass():
    net = FullGenerator(32, **SMALL)
    image, _ = net(torch.randn(2, 3, 32, 32))
    image.square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", ["gpen_c1", "gpen_c2"])
def test_cuda_forward_matches_official(name, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    case = load_case(name)
    with torch.no_grad():
        image, _ = build(case, "cuda")(case["input"].cuda())
    torch.testing.assert_close(image.cpu(), case["output"]["image"], **TOL)


# ----------------------------------------------------------------------------------------------
# Zoo entries and GPENRestorer


def test_bfr_entries_match_the_official_configs():
    for name, manifest in MANIFESTS.items():
        m = json.loads(shared_path(f"golden/manifests/{manifest}.json").read_text())
        entry = get_entry(name)
        expected = {k: v for k, v in m["constructor_kwargs"].items() if k != "device"}
        assert dict(entry.arch_config) == expected and entry.arch is FullGenerator
        assert entry.face_size == m["native_input_size"] and entry.template == "gpen"
        (wf,) = entry.files
        assert wf.state_dict_key is None  # bare state dicts
        released = m["released_checkpoints"][0]["url"]
        assert wf.url == released or "modelscope" in released  # 1024/2048: a model page -> its file URL
    assert get_entry("gpen") is get_entry("gpen-bfr-512")
    for name, task in [("gpen-colorization-1024", "colorize"), ("gpen-inpainting-1024", "inpaint"),
                       ("gpen-seg2face-512", "seg2face")]:
        assert get_entry(name).task == task


def small_restorer(name: str, size: int = 32):
    """The zoo entry with a small network of the same architecture (random weights)."""
    entry = dataclasses.replace(get_entry(name), arch_config=dict(size=size, **SMALL), face_size=size)
    return facerestore.load(entry, pretrained=False, device="cpu", detector=None)


def face(h: int = 40, w: int = 48) -> np.ndarray:
    rng = np.random.default_rng(0)
    return cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (5, 5), 0)


def test_colorize_uses_only_the_luminance():
    restorer = small_restorer("gpen-colorization-1024")
    img = face()
    out = restorer.colorize(img)
    assert out.shape == img.shape and out.dtype == np.uint8
    gray = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    np.testing.assert_array_equal(restorer.colorize(gray), out)
    np.testing.assert_array_equal(restorer.colorize(gray[:, :, 0]), out)  # a 2-D grey image works too


def test_inpaint_paints_the_holes_white_like_the_demo():
    restorer = small_restorer("gpen-inpainting-1024")
    img, mask = face(), np.zeros((40, 48), np.uint8)
    mask[10:20, 12:30] = 1
    out = restorer.inpaint(img, mask)
    assert out.shape == img.shape and out.dtype == np.uint8
    painted = img.copy()
    painted[10:20, 12:30] = 255
    np.testing.assert_array_equal(out, restorer.inpaint(painted, np.zeros_like(mask)))
    assert not np.array_equal(out, restorer.inpaint(img, np.zeros_like(mask)))
    with pytest.raises(ValueError, match="mask"):
        restorer.inpaint(img, mask[:10])


def test_seg2face_uses_the_unnormalised_input_range():
    restorer = small_restorer("gpen-seg2face-512")
    seg = face(32, 32)
    out = restorer.seg2face(seg)
    # GPEN's FaceGAN with is_norm=False: /255, BGR -> RGB; output clipped to [0, 1], x255, truncated
    x = torch.from_numpy(seg).float().div(255).permute(2, 0, 1)[None].flip(1)
    with torch.no_grad():
        y, _ = restorer.net(x)
    expected = (y[0].permute(1, 2, 0).flip(2).clamp(0, 1) * 255).numpy().astype(np.uint8)
    np.testing.assert_array_equal(out, expected)


def test_task_methods_need_the_matching_head():
    restorer = small_restorer("gpen-bfr-512")
    with pytest.raises(RuntimeError, match="gpen-colorization-1024"):
        restorer.colorize(face())


def test_faces_are_converted_like_gpen_facegan():
    """FaceGAN.process: /255, [-1, 1], RGB; output x*0.5+0.5, clip, x255, truncate."""
    restorer = small_restorer("gpen-bfr-512")
    crop = face(32, 32)
    out = restorer.forward_faces(crop[None], np.zeros((1, 5, 2)))[0]
    x = (torch.from_numpy(crop).float() / 255 - 0.5) / 0.5
    with torch.no_grad():
        y, _ = restorer.net(x.permute(2, 0, 1)[None].flip(1))
    expected = ((y[0].permute(1, 2, 0).flip(2) * 0.5 + 0.5).clamp(0, 1) * 255).numpy().astype(np.uint8)
    assert np.abs(out.astype(int) - expected).max() <= 1  # float order of the de-normalisation
    assert (out == expected).mean() > 0.99
