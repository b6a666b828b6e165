"""Degradation synthesis: pure ops, seeded presets with the published ranges, the preview command."""
from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from facerestore.data import degradations as D
from facerestore.data import degrade, describe, list_presets, preview_degradations, sample_params


def synthetic_face(size: int = 128) -> np.ndarray:
    """A deterministic colourful test image with edges and smooth areas."""
    y, x = np.mgrid[0:size, 0:size] / size
    img = np.stack([255 * x, 255 * y, 255 * (1 - x * y)], axis=2)
    img = img.astype(np.uint8)
    cv2.circle(img, (size // 2, size // 2), size // 3, (40, 90, 200), -1)
    cv2.circle(img, (size // 3, size // 2 - 8), size // 12, (250, 250, 250), -1)
    cv2.rectangle(img, (size // 4, 3 * size // 4), (3 * size // 4, 3 * size // 4 + 6), (10, 10, 60), -1)
    return img


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * math.log10(255**2 / mse)


# ---------------------------------------------------------------- ops
def test_iso_gaussian_kernel_equals_opencv():
    k = D.gaussian_kernel(21, 2.5)
    g = cv2.getGaussianKernel(21, 2.5)
    np.testing.assert_allclose(k, g @ g.T, atol=1e-7)
    assert k.sum() == pytest.approx(1.0, abs=1e-6)


def test_aniso_kernel_rotation_swaps_axes():
    k = D.gaussian_kernel(41, 6.0, 1.5, 0.0)
    rotated = D.gaussian_kernel(41, 6.0, 1.5, math.pi / 2)
    swapped = D.gaussian_kernel(41, 1.5, 6.0, 0.0)
    np.testing.assert_allclose(rotated, swapped, atol=1e-7)
    # sigma_x along columns: the kernel is wider horizontally
    assert k[20, 20 + 5] > k[20 + 5, 20] * 10
    with pytest.raises(ValueError, match="odd"):
        D.gaussian_kernel(40, 1.0)


def test_motion_kernel_shape_and_direction():
    delta = D.motion_kernel(1, 30)
    assert delta.sum() == pytest.approx(1.0) and delta.max() == pytest.approx(1.0)
    horizontal = D.motion_kernel(9, 0)
    center = horizontal.shape[0] // 2
    assert horizontal.sum() == pytest.approx(1.0, abs=1e-6)
    assert horizontal[center].sum() == pytest.approx(1.0, abs=1e-6)  # all weight on the middle row
    assert np.count_nonzero(horizontal[center]) == 9
    vertical = D.motion_kernel(9, 90)
    np.testing.assert_allclose(vertical, horizontal.T, atol=1e-6)


def test_downsample_size_follows_gfpgan_and_resize_back():
    img = synthetic_face(128)
    small = D.downsample(img, 3.7)
    assert small.shape == (int(128 // 3.7), int(128 // 3.7), 3) == (34, 34, 3)
    assert small.dtype == np.float32
    back = D.resize(small, 128, 100, "cubic")
    assert back.shape == (128, 100, 3)


def test_gaussian_noise_statistics_and_seed():
    gray = np.full((256, 256, 3), 128, np.uint8)
    noisy = D.gaussian_noise(gray, sigma=10.0, seed=3)
    residual = (noisy - 128 / 255) * 255
    assert residual.std() == pytest.approx(10.0, rel=0.02)
    assert abs(residual.mean()) < 0.1
    np.testing.assert_array_equal(noisy, D.gaussian_noise(gray, 10.0, seed=3))
    assert not np.array_equal(noisy, D.gaussian_noise(gray, 10.0, seed=4))
    same = D.gaussian_noise(gray, 10.0, seed=3, gray=True)
    np.testing.assert_array_equal(same[..., 0], same[..., 2])


def test_poisson_noise_grows_with_brightness():
    dark = D.poisson_noise(np.full((128, 128, 3), 10, np.uint8), 1.0, seed=0)
    bright = D.poisson_noise(np.full((128, 128, 3), 200, np.uint8), 1.0, seed=0)
    assert (bright * 255).std() == pytest.approx(math.sqrt(200), rel=0.05)
    assert (dark * 255).std() == pytest.approx(math.sqrt(10), rel=0.05)


def test_jpeg_quality_orders_error():
    img = synthetic_face(128)
    errors = [psnr(D.to_uint8(D.jpeg(img, q)), img) for q in (20, 60, 95)]
    assert errors[0] < errors[1] < errors[2]
    assert errors[2] > 32


def test_color_ops():
    img = synthetic_face(64)
    f = D.to_float(img)
    np.testing.assert_allclose(D.brightness(img, 1.0), f)
    np.testing.assert_allclose(D.contrast(img, 1.0), f, atol=1e-6)
    desaturated = D.saturation(img, 0.0)
    np.testing.assert_allclose(desaturated[..., 0], desaturated[..., 2], atol=1e-6)
    np.testing.assert_allclose(D.hue(img, 0.0), f, atol=1e-5)
    np.testing.assert_allclose(D.hue(D.hue(img, 0.25), -0.25), f, atol=1e-4)
    assert not np.allclose(D.hue(img, 0.25), f, atol=0.05)
    shifted = D.color_shift(np.full((4, 4, 3), 100, np.uint8), [10.0, -20.0, 0.0])
    np.testing.assert_allclose(shifted[0, 0] * 255, [110, 80, 100], atol=1e-3)
    gray = D.grayscale(img)
    np.testing.assert_array_equal(gray[..., 0], gray[..., 1])


# ---------------------------------------------------------------- presets
def test_presets_listed():
    assert list_presets() == ["codeformer", "dfdnet", "gfpgan", "gpen", "jpeg-colorcast"]
    with pytest.raises(KeyError, match="gfpgan"):
        degrade(synthetic_face(32), "gfpgn", seed=0)


@pytest.mark.parametrize("preset", ["gfpgan", "gpen", "dfdnet", "codeformer"])
def test_same_seed_same_output(preset):
    img = synthetic_face(128)
    a, params = degrade(img, preset, seed=7, return_params=True)
    b = degrade(img, preset, seed=7)
    c = degrade(img, preset, seed=8)
    assert a.dtype == np.uint8 and a.shape == img.shape
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # the parameters alone (through JSON) reproduce the image
    replay = D.to_uint8(D.apply(img, json.loads(json.dumps(params))))
    np.testing.assert_array_equal(replay, a)
    assert params["preset"] == preset and params["size"] == [128, 128]
    assert describe(params)


def test_seed_zero_parameters_are_pinned():
    # numpy's PCG64 stream is platform independent: these numbers must be the same everywhere
    # (for this numpy major version); they are what `degrade(img, "gfpgan", seed=0)` uses.
    params = sample_params("gfpgan", 0, (512, 512))
    blur, down, noise, jpeg, back = params["steps"][:5]
    assert blur["op"] == "gaussian_blur" and blur["kernel_size"] == 41
    assert (blur["sigma_x"], blur["sigma_y"]) == pytest.approx((2.7709, 0.5056), abs=1e-4)
    assert down == {"op": "downsample", "scale": pytest.approx(6.6555, abs=1e-4), "interpolation": "linear"}
    assert noise["sigma"] == pytest.approx(18.2551, abs=1e-4)
    assert jpeg == {"op": "jpeg", "quality": 89}
    assert back == {"op": "resize", "height": 512, "width": 512, "interpolation": "linear"}


def test_gfpgan_ranges_and_probabilities():
    rng = np.random.default_rng(123)
    draws = [sample_params("gfpgan", rng, (512, 512)) for _ in range(600)]
    blurs = [d["steps"][0] for d in draws]
    assert all(0.1 <= b["sigma_x"] <= 10 and 0.1 <= b["sigma_y"] <= 10 for b in blurs)
    iso = sum(b["sigma_x"] == b["sigma_y"] and b["theta"] == 0 for b in blurs)
    assert 240 < iso < 360  # p = 0.5
    assert all(0.8 <= d["steps"][1]["scale"] <= 8 for d in draws)
    assert all(0 <= d["steps"][2]["sigma"] <= 20 for d in draws)
    assert all(60 <= d["steps"][3]["quality"] <= 99 for d in draws)
    ops = [[s["op"] for s in d["steps"]] for d in draws]
    shifts = sum("color_shift" in o for o in ops)
    jitters = sum("brightness" in o for o in ops)
    grays = sum("grayscale" in o for o in ops)
    assert 140 < shifts < 220 and 140 < jitters < 220  # p = 0.3
    assert grays < 20  # p = 0.01
    for d, o in zip(draws, ops):
        if "grayscale" in o:  # gt_gray: the target becomes gray too
            assert d["target_steps"] == [{"op": "grayscale"}]
        if "brightness" in o:
            assert sorted(o[-4:]) == ["brightness", "contrast", "hue", "saturation"]


def test_gpen_gray_applies_to_target_and_input_first():
    img = synthetic_face(96)
    rng = np.random.default_rng(0)
    draws = [sample_params("gpen", rng, (96, 96)) for _ in range(100)]
    gray = [d for d in draws if d["target_steps"]]
    assert 10 < len(gray) < 30  # p = 0.2
    d = gray[0]
    assert d["steps"][0] == {"op": "grayscale"}
    assert [s["op"] for s in d["steps"]][-2:] == ["quantize", "resize"]
    lq, hq = D.to_uint8(D.apply(img, d)), D.to_uint8(D.apply_target(img, d))
    assert np.array_equal(hq[..., 0], hq[..., 2])
    # gray before degrading; only the per-channel noise (as in GPEN) adds some colour back
    assert np.abs(lq[..., 0].astype(int) - lq[..., 2]).mean() < 6
    colour = D.to_uint8(D.apply(img, next(x for x in draws if not x["target_steps"])))
    assert np.abs(colour[..., 0].astype(int) - colour[..., 2]).mean() > 20
    assert not any(s["op"] in ("color_shift", "brightness") for x in draws for s in x["steps"])


def test_dfdnet_and_codeformer_ranges():
    rng = np.random.default_rng(5)
    for _ in range(200):
        steps = sample_params("dfdnet", rng, (64, 64))["steps"]
        blur = steps[0]
        if blur["op"] == "gaussian_blur":
            assert 1.0 <= blur["sigma_x"] <= 3.0 and round(blur["sigma_x"] * 10) == blur["sigma_x"] * 10
        else:
            assert blur["op"] == "motion_blur" and 5 <= blur["length"] <= 25
        assert 1.0 <= steps[1]["scale"] <= 8.0 and steps[1]["interpolation"] == "cubic"
        assert steps[2]["sigma"] in range(16) and 40 <= steps[3]["quality"] <= 80
        cf = sample_params("codeformer", rng, (64, 64))["steps"]
        assert 1 <= cf[0]["sigma_x"] <= 15 and 1 <= cf[1]["scale"] <= 30 and 30 <= cf[3]["quality"] < 90


def test_heavier_presets_degrade_more_on_average():
    img = synthetic_face(128)
    mean_psnr = {p: np.mean([psnr(degrade(img, p, seed=s), img) for s in range(12)]) for p in ("gfpgan", "codeformer")}
    assert mean_psnr["codeformer"] < mean_psnr["gfpgan"]


def test_real_face_degradation(shared):
    face = cv2.resize(cv2.imread(str(shared("data/ffhq/hq/00001.png"))), (256, 256), interpolation=cv2.INTER_AREA)
    out = degrade(face, "gfpgan", seed=0)
    # seed 0: aniso blur 2.8/0.5, down x6.7, noise 18.3, JPEG 89 -> clearly degraded, same colours
    assert 18 < psnr(out, face) < 30
    assert np.abs(out.mean(axis=(0, 1)) - face.mean(axis=(0, 1))).max() < 6


def test_preview_grid_and_cli(tmp_path):
    img = synthetic_face(64)
    grid = preview_degradations(img, "dfdnet", n=3, seed=2, tile=64, columns=2)
    assert grid.dtype == np.uint8 and grid.shape[1] == 2 * 64 and grid.shape[0] > 2 * 64
    from facerestore.cli import main
    from facerestore.imageio import read_image, write_image

    src = write_image(tmp_path / "face.png", img)
    out = tmp_path / "grid.png"
    each = tmp_path / "each"
    assert main(["degrade", str(src), "--preset", "gfpgan", "-n", "2", "--seed", "0", "-o", str(out),
                 "--tile", "64", "--each", str(each)]) == 0
    assert read_image(out).shape[1] == 3 * 64  # original + 2 draws in one row
    np.testing.assert_array_equal(read_image(each / "face_gfpgan_seed1.png"), degrade(img, "gfpgan", seed=1))
    params = json.loads((each / "face_gfpgan_seed1.json").read_text())
    assert params == json.loads(json.dumps(sample_params("gfpgan", 1, (64, 64))))
