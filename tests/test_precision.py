"""Fast mode: load(..., precision="bf16") runs the same .net under bf16 autocast (channels_last) and
stays within 40 dB PSNR of the exact fp32 output on real faces."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

import facerestore
from conftest import shared_path
from facerestore.face.align import template

FACES = ["Adele_crop.png", "cf_0143.png"]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = ((a.astype(np.float64) - b) ** 2).mean()
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def real_faces(size: int) -> np.ndarray:
    return np.stack([cv2.resize(cv2.imread(str(shared_path(f"data/real/cropped/{f}"))), (size, size),
                                interpolation=cv2.INTER_AREA) for f in FACES])


def pair(name: str, seed: int, **overrides):
    """The same random weights in an fp32 and a bf16 restorer."""
    torch.manual_seed(seed)
    exact = facerestore.load(name, pretrained=False, device="cpu", **overrides)
    fast = facerestore.load(name, pretrained=False, device="cpu", precision="bf16", **overrides)
    fast.net.load_state_dict(exact.net.state_dict())
    return exact, fast


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name,overrides", [
    ("gpen-bfr-256", {}),
    ("gfpgan-v1.4", {"out_size": 256, "narrow": 0.5}),
])
def test_restorers_bf16_within_40db_of_fp32(name, overrides, seed):
    exact, fast = pair(name, seed, **overrides)
    size = overrides.get("out_size", exact.entry.face_size)
    faces = real_faces(size)
    points = np.repeat(template(exact.entry.template, size)[None], len(faces), 0)
    a = exact.forward_faces(faces, points, seed=0)
    b = fast.forward_faces(faces, points, seed=0)
    assert psnr(a, b) >= 40, psnr(a, b)
    assert np.abs(a.astype(int) - faces).mean() > 5  # the model really changed the faces


def test_dpr_real_weights_bf16_within_40db_of_fp32():
    weights = shared_path("weights/dpr/trained_model_03.t7")
    exact = facerestore.load("dpr", weights=weights, device="cpu")
    fast = facerestore.load("dpr", weights=weights, device="cpu", precision="bf16")
    from facerestore.shlight import SHLight

    faces = real_faces(512)
    light = SHLight.from_direction((1.0, 0.3, 1.0))
    a, _ = exact.relight_crops(faces, light)
    b, _ = fast.relight_crops(faces, light)
    assert psnr(a, b) >= 40, psnr(a, b)


def test_net_itself_runs_in_the_chosen_precision():
    exact, fast = pair("gpen-bfr-256", 0, size=64, narrow=0.0625, style_dim=32, n_mlp=2)
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.inference_mode():
        assert exact.net(x)[0].dtype == torch.float32
        assert fast.net(x)[0].dtype == torch.bfloat16
    conv_weights = [p for p in fast.net.parameters() if p.dim() == 4 and p.shape[-1] > 1]
    assert conv_weights and all(p.is_contiguous(memory_format=torch.channels_last) for p in conv_weights)


def test_unsupported_precision_is_refused():
    with pytest.raises(ValueError, match="precision"):
        facerestore.load("gpen-bfr-256", pretrained=False, precision="int8")
    with pytest.raises(ValueError, match="supports precision"):
        facerestore.load("dpr", pretrained=False, precision="fp16")


def test_dfdnet_bf16_within_40db_of_fp32():
    """DFDNet with the golden instance's weights and K=4 dictionaries (default-initialised random
    weights blow activations up to ~1e30, where any rounding flips the output)."""
    from test_arch_dfdnet import golden_state_dict

    state, _ = golden_state_dict()
    dictionaries = shared_path("golden/dfdnet/dfdnet_dictionaries_K4.npz")
    exact, fast = (facerestore.load("dfdnet", pretrained=False, device="cpu", precision=p) for p in ("fp32", "bf16"))
    for restorer in (exact, fast):
        restorer.net.load_state_dict(state, strict=True)
        restorer.net.load_dictionaries(dictionaries)
    faces = real_faces(512)
    points = np.repeat(template("ffhq", 512)[None], len(faces), 0)
    a = exact.forward_faces(faces, points)
    b = fast.forward_faces(faces, points)
    assert psnr(a, b) >= 40, psnr(a, b)
    assert np.abs(a.astype(int) - faces).mean() > 5


def test_exact_mode_layout_follows_the_entry_and_device():
    """DPR, DFDNet, GPEN and CodeFormer run channels_last in exact mode on CPU (measured faster), the
    others (GFP-GAN, RestoreFormer: no gain measured) NCHW."""
    def conv_weight(restorer):
        return next(p for p in restorer.net.parameters() if p.dim() == 4 and p.shape[-1] > 1)

    dpr = facerestore.load("dpr", pretrained=False, device="cpu")
    assert dpr.channels_last and conv_weight(dpr).is_contiguous(memory_format=torch.channels_last)
    gpen = facerestore.load("gpen-bfr-256", pretrained=False, device="cpu", size=64, narrow=0.0625,
                            style_dim=32, n_mlp=2)
    assert gpen.channels_last and conv_weight(gpen).is_contiguous(memory_format=torch.channels_last)
    gfpgan = facerestore.load("gfpgan-v1.4", pretrained=False, device="cpu", **facerestore.get_entry("gfpgan").family.tiny)
    assert not gfpgan.channels_last and conv_weight(gfpgan).is_contiguous()
