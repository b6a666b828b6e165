"""Metrics: BasicSR-convention PSNR/SSIM/NIQE against reference numbers, LPIPS/FID/identity/LMD code
paths with local files, and the offline error messages."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from conftest import shared_path
from facerestore import hub
from facerestore.metrics import compute, get_metric, list_metrics
from facerestore.metrics.niqe import matlab_imresize, niqe

NIQE_PARAMS = "weights/metrics/niqe_pris_params.npz"


def noisy_pair(size: int = 64, sigma: float = 12.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    clean = np.stack([x * 3, y * 3, (x + y) * 2], axis=2).clip(0, 255).astype(np.uint8)
    noisy = np.clip(clean + rng.normal(0, sigma, clean.shape), 0, 255).astype(np.uint8)
    return noisy, clean


def read(relpath: str) -> np.ndarray:
    return cv2.imread(str(shared_path(relpath)), cv2.IMREAD_COLOR)


# ---------------------------------------------------------------- registry
def test_registry_lists_directions_references_and_weights():
    metrics = list_metrics()
    assert {"psnr", "ssim", "lpips", "niqe", "ids", "deg", "lmd", "fid"} <= set(metrics)
    assert not metrics["psnr"].lower_is_better and not metrics["ssim"].lower_is_better
    assert not metrics["ids"].lower_is_better
    assert all(metrics[m].lower_is_better for m in ("lpips", "niqe", "deg", "lmd", "fid"))
    assert not metrics["niqe"].needs_reference and metrics["lpips"].needs_reference
    assert not metrics["psnr"].needs_weights and metrics["lpips"].needs_weights and metrics["niqe"].needs_weights
    assert metrics["fid"].inputs == "folders"
    assert "si_mse" in metrics  # the relighting module is present in this tree
    assert compute("si_mse", np.array([1.0, 2.0]), np.array([2.0, 4.0])) == pytest.approx(0.0)
    with pytest.raises(KeyError, match="psnr"):
        compute("psnrr", *noisy_pair())


# ---------------------------------------------------------------- PSNR / SSIM
def test_psnr_hand_computed_and_skimage():
    from skimage.metrics import peak_signal_noise_ratio

    zeros, tens = np.zeros((8, 8, 3), np.uint8), np.full((8, 8, 3), 10, np.uint8)
    assert compute("psnr", tens, zeros) == pytest.approx(10 * math.log10(255**2 / 100), abs=1e-12)
    assert compute("psnr", zeros, zeros) == math.inf
    noisy, clean = noisy_pair()
    assert compute("psnr", noisy, clean) == pytest.approx(peak_signal_noise_ratio(clean, noisy, data_range=255),
                                                           abs=1e-12)
    # Y channel (MATLAB BT.601): pure red gives Y = 16 + 65.481, black gives 16
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 2] = 255
    assert compute("psnr", red, zeros, test_y_channel=True) == pytest.approx(
        10 * math.log10(255**2 / 65.481**2), abs=1e-4)
    # crop_border ignores the edges
    edged = clean.copy()
    edged[:2] = 0
    assert compute("psnr", edged, clean, crop_border=2) == math.inf


def test_ssim_hand_computed_and_skimage():
    from skimage.metrics import structural_similarity

    a, b = np.full((32, 32, 3), 100, np.uint8), np.full((32, 32, 3), 110, np.uint8)
    c1 = (0.01 * 255) ** 2  # flat images: only the luminance term remains
    assert compute("ssim", a, b) == pytest.approx((2 * 100 * 110 + c1) / (100**2 + 110**2 + c1), abs=1e-12)
    noisy, clean = noisy_pair(96)
    assert compute("ssim", clean, clean) == pytest.approx(1.0, abs=1e-12)
    ours = compute("ssim", noisy, clean)
    # skimage with the same definition: Gaussian 1.5 (truncate 3.5 -> 11x11), population covariance;
    # it filters with reflected borders but averages only pixels 5 px inside: BasicSR's 'valid' region.
    reference = structural_similarity(clean, noisy, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                      data_range=255, channel_axis=2)
    assert ours == pytest.approx(reference, abs=1e-9)
    assert 0.2 < ours < 0.9
    with pytest.raises(ValueError, match="shapes differ"):
        compute("ssim", noisy[:-1], clean)


def test_psnr_ssim_match_basicsr(shared):
    # Reference: BasicSR 1.4.2 `calculate_psnr` / `calculate_ssim` (basicsr/metrics/psnr_ssim.py from the
    # PyPI sdist, run outside this repo with small import shims) on cv2.imread of these files.
    lq, hq = read("data/ffhq/val/lq/ffhq_00000.png"), read("data/ffhq/val/hq/ffhq_00000.png")
    assert compute("psnr", lq, hq) == pytest.approx(24.535713558244233, abs=1e-10)
    assert compute("ssim", lq, hq) == pytest.approx(0.7081659402208714, abs=1e-10)
    assert compute("psnr", lq, hq, crop_border=4, test_y_channel=True) == pytest.approx(27.04314211417215, abs=1e-10)
    assert compute("ssim", lq, hq, crop_border=4, test_y_channel=True) == pytest.approx(0.7980921869950195, abs=1e-10)


# ---------------------------------------------------------------- NIQE
# Reference values: BasicSR 1.4.2 `calculate_niqe(img, 0, input_order="HWC", convert_to="y")`, run from
# the PyPI sdist's own files (basicsr/metrics/niqe.py + metric_util.py, utils/color_util.py,
# utils/matlab_functions.py loaded by path with import shims, outside this repo) on cv2.imread(path,
# IMREAD_UNCHANGED) of each file, torch 2.14.1 (MKL, AVX512), numpy 2.4, scipy 1.17.
# NIQE's float32 local variance E[x^2] - E[x]^2 cancels most of its digits, so float32 results (BasicSR's
# and ours) move with the CPU's summation order: 1.96e-3 between two x86 machines on cf_0143, and
# float32 lies up to 0.065 from the float64 value of the same formula on these images (ffhq_00000 lq).
# So the test compares both with a float64 evaluation of the formula, computed here: float64 leaves
# ~1e-10 of that amplified rounding, the same on every machine.
NIQE_REFERENCE = {
    "data/real/cropped/Adele_crop.png": 7.872444413435473,
    "data/real/cropped/cf_0143.png": 12.053294048025784,
    "data/real/cropped/Justin_Timberlake_crop.png": 11.773614474345788,
    "data/ffhq/val/lq/ffhq_00000.png": 14.024943014415848,
}
NIQE_FLOAT32_TOLERANCE = 0.1  # float32 vs float64 of the same formula: measured up to 0.065 (see above)


def _resize_axis_float64(img: np.ndarray, axis: int, weights: np.ndarray, index: np.ndarray) -> np.ndarray:
    """MATLAB bicubic taps along one axis in float64, borders mirrored (-1 -> 0)."""
    n = img.shape[axis]
    index = np.where(index < 0, -index - 1, index)
    index = np.where(index >= n, 2 * n - 1 - index, index)
    moved = np.moveaxis(img, axis, 0)
    return np.moveaxis(np.einsum("ot,ot...->o...", weights, moved[index]), 0, axis)


def niqe_float64(bgr: np.ndarray, params: dict[str, np.ndarray]) -> float:
    """BasicSR's NIQE formula evaluated in float64 throughout (MSCN, half-size imresize, features,
    Gaussian fit): the machine-independent value float32 implementations approximate."""
    from scipy.ndimage import convolve

    from facerestore.metrics.niqe import BLOCK, _to_blocks, block_features, matlab_resize_taps
    from facerestore.metrics.pixel import bgr_to_y

    luma = np.round(bgr_to_y(bgr))
    h, w = luma.shape
    img = luma[:h // BLOCK * BLOCK, :w // BLOCK * BLOCK].astype(np.float64)
    window = params["gaussian_window"]
    per_scale = []
    for scale in (1, 2):
        mu = convolve(img, window, mode="nearest")
        sigma = np.sqrt(np.abs(convolve(img * img, window, mode="nearest") - mu * mu))
        per_scale.append(block_features(_to_blocks((img - mu) / (sigma + 1), BLOCK // scale)))
        if scale == 1:
            half = img / 255.0
            for axis in (0, 1):
                n = half.shape[axis]
                half = _resize_axis_float64(half, axis, *matlab_resize_taps(n, math.ceil(n / 2), 0.5))
            img = half * 255.0
    features = np.concatenate(per_scale, axis=1)
    difference = params["mu_pris_param"].reshape(-1) - np.nanmean(features, axis=0)
    cov = np.cov(features[~np.isnan(features).any(axis=1)], rowvar=False)
    return float(np.sqrt(difference @ np.linalg.pinv((params["cov_pris_param"] + cov) / 2) @ difference))


def test_niqe_matches_basicsr(shared):
    from facerestore.metrics.niqe import load_pristine_params

    metric = get_metric("niqe", weights=shared(NIQE_PARAMS))
    params = load_pristine_params(shared(NIQE_PARAMS))
    exact = {relpath: niqe_float64(read(relpath), params) for relpath in NIQE_REFERENCE}
    for relpath, basicsr in NIQE_REFERENCE.items():
        assert abs(basicsr - exact[relpath]) < NIQE_FLOAT32_TOLERANCE, relpath  # BasicSR computes this formula
        assert abs(metric(read(relpath)) - exact[relpath]) < NIQE_FLOAT32_TOLERANCE, relpath  # so do we
    # the images' scores are far apart compared with the tolerance: the check tells them apart
    values = sorted(exact.values())
    assert min(b - a for a, b in zip(values, values[1:])) > 2 * NIQE_FLOAT32_TOLERANCE


def test_niqe_orders_quality_and_options(shared):
    params = shared(NIQE_PARAMS)
    hq = cv2.resize(read("data/ffhq/hq/00002.png"), (384, 384), interpolation=cv2.INTER_AREA)
    blurred = cv2.GaussianBlur(hq, (0, 0), 3)
    assert niqe(blurred, weights=params) > niqe(hq, weights=params) + 1
    gray = niqe(hq, convert_to="gray", weights=params)
    assert abs(gray - niqe(hq, weights=params)) < 1.0
    assert niqe(hq, crop_border=4, weights=params) != niqe(hq, weights=params)
    with pytest.raises(ValueError, match="two whole 96x96 blocks"):
        niqe(hq[:191, :191], weights=params)


def test_matlab_imresize_properties():
    flat = np.full((20, 30), 0.25, np.float32)
    out = matlab_imresize(flat, 0.5)
    assert out.shape == (10, 15) and np.allclose(out, 0.25, atol=1e-7)
    ramp = np.tile(np.arange(32, dtype=np.float32), (8, 1))
    half = matlab_imresize(ramp, 0.5)
    # a linear ramp stays linear inside (MATLAB: output pixel k sits at input 2k + 0.5)
    np.testing.assert_allclose(half[:, 4:12], np.tile(np.arange(4, 12) * 2 + 0.5, (4, 1)), atol=1e-4)


def test_niqe_offline_error_names_file_and_url(monkeypatch):
    monkeypatch.delenv("FACERESTORE_NIQE_PARAMS", raising=False)
    with pytest.raises(hub.WeightsError) as err:
        get_metric("niqe", download=False)
    message = str(err.value)
    assert "niqe_pris_params.npz" in message and "BasicSR" in message and "FACERESTORE_NIQE_PARAMS" in message
    monkeypatch.setenv("FACERESTORE_NIQE_PARAMS", str(shared_path(NIQE_PARAMS)))
    assert get_metric("niqe", download=False)(noisy_pair(192)[1]) > 0


# ---------------------------------------------------------------- LPIPS
def alexnet_features_file(path) -> str:
    """A torchvision-format AlexNet file with random (untrained) features: exercises the real loading
    code without ImageNet weights. Not a real LPIPS."""
    import torchvision

    torch.manual_seed(0)
    features = torchvision.models.alexnet().features.state_dict()
    torch.save({f"features.{k}": v for k, v in features.items()}, path)
    return str(path)


def test_lpips_offline_error(monkeypatch):
    monkeypatch.delenv("FACERESTORE_LPIPS_BACKBONE", raising=False)
    monkeypatch.setenv("TORCH_HOME", "/nonexistent-torch-home")
    with pytest.raises(hub.WeightsError) as err:
        get_metric("lpips", download=False)
    message = str(err.value)
    assert "alexnet-owt-7be5be79.pth" in message and "https://download.pytorch.org/models/" in message
    assert "FACERESTORE_LPIPS_BACKBONE" in message and "weights=" in message


def test_lpips_loads_local_backbone_and_shipped_linear_layers(tmp_path):
    import lpips as lpips_package

    from facerestore.metrics.perceptual import shipped_linear_weights

    metric = get_metric("lpips", weights=alexnet_features_file(tmp_path / "alexnet.pth"), device="cpu")
    shipped = torch.load(shipped_linear_weights("alex"), map_location="cpu", weights_only=True)
    assert torch.equal(metric.model.lin0.model[1].weight, shipped["lin0.model.1.weight"])
    assert isinstance(metric.model, lpips_package.LPIPS)
    noisy, clean = noisy_pair(64)
    assert metric(clean, clean) == pytest.approx(0.0, abs=1e-7)
    d1, d2 = metric(noisy, clean), metric(clean, noisy)
    assert d1 > 1e-4 and d1 == pytest.approx(d2, rel=1e-5)
    more_noise = noisy_pair(64, sigma=40)[0]
    assert metric(more_noise, clean) > d1


def test_lpips_rejects_a_wrong_file(tmp_path):
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(1)}, wrong)
    with pytest.raises(hub.WeightsError, match="not torchvision alex weights"):
        get_metric("lpips", weights=wrong)


# ---------------------------------------------------------------- FID
def test_fid_offline_error(monkeypatch):
    monkeypatch.delenv("FACERESTORE_FID_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", "/nonexistent-torch-home")
    with pytest.raises(hub.WeightsError) as err:
        get_metric("fid", download=False)
    message = str(err.value)
    assert "pt_inception-2015-12-05-6726825d.pth" in message and "mseitzer/pytorch-fid" in message
    assert "FACERESTORE_FID_WEIGHTS" in message


def test_fid_network_equals_pytorch_fid_and_distance(tmp_path, monkeypatch):
    from pytorch_fid.inception import InceptionV3

    from facerestore.imageio import write_image
    from facerestore.metrics.fid import FID_FILE, LAYERS, build_fid_inception

    torch.manual_seed(0)
    weights = tmp_path / "hub" / "checkpoints" / FID_FILE  # random weights: tests the plumbing only
    weights.parent.mkdir(parents=True)
    torch.save(build_fid_inception().state_dict(), weights)
    small = get_metric("fid", weights=weights, device="cpu", dims=64, progress=False)
    # pytorch-fid's own InceptionV3 finds the same file in torch's cache: the same modules in the
    # same order (a full 2048-d forward of both would take seconds), and the same early features
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    reference_net = InceptionV3([0, 3]).eval()
    theirs = [m for block in reference_net.blocks for m in block]
    ours = [getattr(small.net, name) for name in LAYERS]
    assert [type(m) for m in ours] == [type(m) for m in theirs]
    for a, b in zip(ours, theirs):
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    x = torch.rand(1, 3, 80, 80, generator=torch.Generator().manual_seed(1))
    reference_net.last_needed_block = 0  # pytorch-fid's forward stops there: block 0 only, no full forward
    with torch.inference_mode():
        expected = reference_net(x)[0].mean(dim=(2, 3))
    torch.testing.assert_close(small.features(x), expected, rtol=1e-4, atol=1e-5)

    # the distance (on 64-d features: the 2048-d matrix square root is slow on a test machine)
    a, b = tmp_path / "a", tmp_path / "b"
    for k in range(4):
        write_image(a / f"{k}.png", noisy_pair(64, seed=k)[1])
        write_image(b / f"{k}.png", noisy_pair(64, sigma=60, seed=k)[0])
    same, different = small(a, a), small(a, b)
    assert abs(same) < 1e-3 * different and different > 0
    with pytest.raises(ValueError, match="folders"):
        small(a / "0.png", b)


# ---------------------------------------------------------------- identity (ArcFace) and LMD
def test_identity_offline_error(monkeypatch):
    monkeypatch.delenv("FACERESTORE_ARCFACE_WEIGHTS", raising=False)
    for name in ("ids", "deg"):
        with pytest.raises(hub.WeightsError) as err:
            get_metric(name, download=False)
        message = str(err.value)
        assert "recognition_arcface_ir_se50.pth" in message and "xinntao/facexlib/releases" in message
        assert "FACERESTORE_ARCFACE_WEIGHTS" in message


def test_identity_code_path_with_local_weights(shared, tmp_path, monkeypatch):
    pytest.importorskip("facerestore.face.align", reason="face pipeline not present yet")
    from facexlib.recognition.arcface_arch import Backbone

    from facerestore.face.align import gpen_reference
    from facerestore.metrics.identity import IdentityAngle

    torch.manual_seed(0)  # untrained ArcFace: exercises warping, loading and the maths, not real identity
    weights = tmp_path / "recognition_arcface_ir_se50.pth"
    torch.save(Backbone(50, 0.6, "ir_se").state_dict(), weights)
    monkeypatch.setenv("FACERESTORE_ARCFACE_WEIGHTS", str(weights))
    deg = get_metric("deg", device="cpu")  # one 175 MB network: `ids` is the same class's cosine
    assert isinstance(deg, IdentityAngle) and list_metrics()["ids"].target.endswith(":IdentitySimilarity")
    face = cv2.resize(read("data/ffhq/hq/00001.png"), (256, 256), interpolation=cv2.INTER_AREA)
    other = cv2.resize(read("data/ffhq/hq/00004.png"), (256, 256), interpolation=cv2.INTER_AREA)
    embedding = {name: deg.embed(img) for name, img in
                 (("face", face), ("other", other), ("blurred", cv2.GaussianBlur(face, (0, 0), 1.0)))}
    assert embedding["face"].shape == (512,) and embedding["face"].norm().item() == pytest.approx(1.0, abs=1e-5)
    different = torch.dot(embedding["face"], embedding["other"]).item()
    assert different < torch.dot(embedding["face"], embedding["blurred"]).item() < 1.0
    assert deg(face, other) == pytest.approx(math.degrees(math.acos(different)), abs=1e-3)
    # ArcFace's own 112 px template (InsightFace), derived from the shared 96x112 reference
    np.testing.assert_allclose(gpen_reference(112, inner_padding_factor=0.0)[0], [38.2946, 51.6963], atol=1e-4)


def test_lmd_with_the_real_detector(shared):
    pytest.importorskip("facerestore.face.detect", reason="face pipeline not present yet")
    # The shared 1 MB RetinaFace is the detector available offline; its landmarks jitter by several
    # pixels between nearby positions (and are poor on large aligned faces), so only coarse checks.
    lmd = get_metric("lmd", detector="retinaface-mobile0.25-1mb", detect_size=320,
                     detector_weights=shared("weights/retinaface/mobilenet0.25_Final.pth"), device="cpu")
    photo = read("data/real/whole/Blake_Lively.jpg")[:, 350:]  # one face
    assert lmd(photo, photo) == 0.0
    h, w = photo.shape[:2]
    shifted = cv2.warpAffine(photo, np.float32([[1, 0, 30], [0, 1, 40]]), (w, h), borderMode=cv2.BORDER_REFLECT)
    assert 25 < lmd(shifted, photo) < 80  # every landmark moved by 50 px
    assert math.isnan(lmd(np.full_like(photo, 128), photo))  # no face: NaN, not an error
