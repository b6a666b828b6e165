"""SHLight and DPR's SH conventions; the scale-invariant lighting metrics."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import shared_path
from facerestore.shlight import (
    DEFAULT_AMBIENT,
    DEFAULT_INTENSITY,
    SHLight,
    axis_angle_matrix,
    dpr_to_view,
    sh_basis,
    sh_rotation_matrix,
    view_to_dpr,
    yaw_pitch_roll_matrix,
)
from facerestore.metrics.lighting import best_scale, si_l2, si_mse


def example_path(i: int):
    return shared_path(f"data/relight/example_light/rotate_light_{i:02d}.txt")


@pytest.fixture(scope="module")
def examples() -> list[SHLight]:
    return [SHLight.from_file(example_path(i)) for i in range(7)]


def unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


# -- conventions --------------------------------------------------------------------------------------
def test_basis_satisfies_the_sh_addition_theorem():
    # Σ_m Y_lm(n) Y_lm(d) = (2l+1)/(4π) P_l(n·d): checks every constant, sign and the coefficient order.
    rng = np.random.default_rng(0)
    n, d = (np.stack([unit(v) for v in rng.normal(size=(20, 3))]) for _ in range(2))
    yn, yd = sh_basis(n, lambertian=False), sh_basis(d, lambertian=False)
    cos = (n * d).sum(1)
    for band, cols, legendre in ((0, [0], np.ones_like(cos)), (1, [1, 2, 3], cos), (2, [4, 5, 6, 7, 8], 1.5 * cos**2 - 0.5)):
        np.testing.assert_allclose((yn[:, cols] * yd[:, cols]).sum(1), (2 * band + 1) / (4 * np.pi) * legendre, atol=1e-12)
    # Lambertian factors π, 2π/3, π/4 per band
    np.testing.assert_allclose(sh_basis(n) / yn, np.tile(np.pi * np.array([1, 2 / 3, 2 / 3, 2 / 3] + [1 / 4] * 5), (20, 1)))
    # order [1, Y, Z, X, ...]: the Y column is linear in the Y coordinate, etc.
    np.testing.assert_allclose(sh_basis(np.eye(3), lambertian=False)[:, 1:4],
                               np.sqrt(3) / 2 / np.sqrt(np.pi) * np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]]))


def test_view_and_dpr_frames():
    # view: x right, y up, z toward the viewer; DPR: X right, Y away from the viewer, Z up
    np.testing.assert_array_equal(view_to_dpr([0, 0, 1]), [0, -1, 0])
    np.testing.assert_array_equal(view_to_dpr([0, 1, 0]), [0, 0, 1])
    np.testing.assert_array_equal(dpr_to_view(view_to_dpr([0.3, -0.2, 0.9])), [0.3, -0.2, 0.9])


def test_from_file_reproduces_the_demo_network_input():
    for i in range(7):
        case = np.load(shared_path(f"golden/dpr/dpr512_light_{i:02d}.npz"))
        light = SHLight.from_file(example_path(i))
        np.testing.assert_array_equal(light.file_values, case["sh_file_values"])
        assert light.to_tensor().dtype == torch.float32 and light.to_tensor().shape == (1, 9, 1, 1)
        np.testing.assert_array_equal(light.to_tensor().numpy(), case["sh_input"])  # bit-exact
        np.testing.assert_array_equal(light.coefficients, case["sh_file_values"] * 0.7)
    raw = SHLight.from_file(example_path(0), scale=1.0)
    np.testing.assert_array_equal(raw.coefficients, raw.file_values)


def test_light_file_errors(tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("1\n2\n3\n")
    with pytest.raises(ValueError, match="9 numbers"):
        SHLight.from_file(short)
    with pytest.raises(ValueError, match="not an SH light file"):
        SHLight.from_file(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="9 finite"):
        SHLight([1, 2, 3])


def test_to_file_round_trip(tmp_path, examples):
    examples[2].to_file(tmp_path / "l.txt")
    again = SHLight.from_file(tmp_path / "l.txt")
    np.testing.assert_allclose(again.coefficients, examples[2].coefficients, rtol=1e-14)
    np.testing.assert_allclose(again.file_values, examples[2].file_values, rtol=1e-14)


# -- directions ----------------------------------------------------------------------------------------
def test_from_direction_is_a_point_light_plus_ambient():
    d = unit([0.4, 0.5, 0.8])
    light = SHLight.from_direction(d, intensity=1.5, ambient=0.2)
    np.testing.assert_allclose(light.direction, d, atol=1e-12)
    # order-2 SH of the clamped cosine: shading(n) = ambient + I (1/4 + cosθ/2 + 5/16 P2(cosθ))
    np.testing.assert_allclose(light.shading(d[None]), [0.2 + 1.5 * 1.0625], atol=1e-12)
    np.testing.assert_allclose(light.shading(-d[None]), [0.2 + 1.5 * 0.0625], atol=1e-12)
    side = unit(np.cross(d, [0, 0, 1]))
    np.testing.assert_allclose(light.shading(side[None]), [0.2 + 1.5 * (0.25 - 5 / 32)], atol=1e-12)
    # pure ambient shades every normal alike
    flat = SHLight.from_direction((0, 0, 1), intensity=0.0, ambient=0.7)
    np.testing.assert_allclose(flat.shading(np.eye(3)), [0.7] * 3, atol=1e-12)
    with pytest.raises(ValueError, match="non-zero"):
        SHLight.from_direction((0, 0, 0))


def test_example_lights_are_directions_plus_ambient_with_the_default_strength(examples):
    for i, light in enumerate(examples):
        built = SHLight.from_direction(light.direction)  # default intensity/ambient
        # its nearest official example (scale-invariant and plain L2) is the one it was built from
        assert int(np.argmin([si_l2(built.coefficients, e.coefficients) for e in examples])) == i
        assert int(np.argmin([np.linalg.norm(built.coefficients - e.coefficients) for e in examples])) == i
        np.testing.assert_allclose(built.direction, light.direction, atol=1e-12)
        # the defaults reproduce the examples' DC and linear band (rounded to 2 decimals)
        np.testing.assert_allclose(built.coefficients[:4], light.coefficients[:4], atol=0.004)
    assert (DEFAULT_INTENSITY, DEFAULT_AMBIENT) == (1.18, 0.38)
    # light 00 comes from the image right and the front, light 02 from above, light 05 from below
    assert examples[0].direction[0] > 0.8 and examples[0].direction[2] > 0.5
    assert examples[2].direction[1] > 0.75 and examples[5].direction[1] < -0.75


# -- rotation ------------------------------------------------------------------------------------------
def test_official_examples_are_one_light_swept_around_the_view_axis(examples):
    # rotate_light_00..06 are light 00 turned by k * 360/7 degrees counter-clockwise on screen: this
    # pins down the rotation of the quadratic band (sign and handedness) to float precision.
    for k, swept in enumerate(examples[0].sweep(7)):
        np.testing.assert_allclose(swept.coefficients, examples[k].coefficients, atol=1e-12)
    np.testing.assert_allclose(examples[3].rotate(roll=-360 / 7).coefficients, examples[2].coefficients, atol=1e-12)


def test_rotating_a_point_light_moves_its_direction():
    light = SHLight.from_direction((0, 0, 1), intensity=1.0, ambient=0.3)
    np.testing.assert_allclose(light.rotate(yaw=90).coefficients, SHLight.from_direction((1, 0, 0), 1.0, 0.3).coefficients, atol=1e-12)
    np.testing.assert_allclose(light.rotate(pitch=90).coefficients, SHLight.from_direction((0, 1, 0), 1.0, 0.3).coefficients, atol=1e-12)
    right = SHLight.from_direction((1, 0, 0), 1.0, 0.3)
    np.testing.assert_allclose(right.rotate(roll=90).direction, [0, 1, 0], atol=1e-12)
    rng = np.random.default_rng(1)
    for _ in range(5):
        d, axis, angle = unit(rng.normal(size=3)), rng.normal(size=3), rng.uniform(-180, 180)
        rotated = SHLight.from_direction(d, 1.2, 0.1).rotate(axis=axis, angle=angle)
        expected = SHLight.from_direction(axis_angle_matrix(axis, np.radians(angle)) @ d, 1.2, 0.1)
        np.testing.assert_allclose(rotated.coefficients, expected.coefficients, atol=1e-12)


def test_rotation_matrix_is_orthogonal_and_keeps_bands(examples):
    m = sh_rotation_matrix(yaw_pitch_roll_matrix(0.3, -0.7, 1.1))
    np.testing.assert_allclose(m @ m.T, np.eye(9), atol=1e-12)
    off_band = np.ones((9, 9), bool)
    for cols in ([0], [1, 2, 3], [4, 5, 6, 7, 8]):
        off_band[np.ix_(cols, cols)] = False
    assert np.abs(m[off_band]).max() < 1e-12
    light = examples[4]
    turned = light.rotate(yaw=40, pitch=-25, roll=10)  # roll first, then pitch, then yaw
    assert np.abs(turned.coefficients - light.coefficients).max() > 0.1
    back = turned.rotate(yaw=-40).rotate(pitch=25).rotate(roll=-10)
    np.testing.assert_allclose(back.coefficients, light.coefficients, atol=1e-12)
    np.testing.assert_allclose(light.rotate(axis=(1, 2, 3), angle=0.5, degrees=False).coefficients,
                               light.rotate(axis=(1, 2, 3), angle=np.degrees(0.5)).coefficients, atol=1e-14)
    with pytest.raises(ValueError, match="both axis and angle"):
        light.rotate(axis=(0, 0, 1))


def test_interpolate_and_scale(examples):
    a, b = examples[0], examples[3]
    assert a.interpolate(b, 0) == a
    np.testing.assert_allclose(a.interpolate(b, 1).coefficients, b.coefficients, atol=1e-15)
    np.testing.assert_allclose(a.interpolate(b, 0.25).coefficients, 0.75 * a.coefficients + 0.25 * b.coefficients)
    np.testing.assert_allclose(a.scaled(2).coefficients, 2 * a.coefficients)
    with pytest.raises(ValueError):
        a.coefficients[0] = 1.0  # lights are immutable


def test_coefficients_are_copied():
    values = np.arange(9, dtype=np.float64)
    light = SHLight(values)
    values[0] = 100
    assert light.coefficients[0] == 0 and values.flags.writeable
    np.testing.assert_array_equal(SHLight(torch.arange(9.0)).coefficients, np.arange(9.0))


# -- lit sphere ----------------------------------------------------------------------------------------
def reference_sphere(sh: np.ndarray, size: int = 256) -> np.ndarray:
    """The demo's recipe (golden README, fact 7) written independently, with plain real-SH constants."""
    xs = np.linspace(-1, 1, size)
    zs = np.linspace(1, -1, size)
    out = np.zeros((size, size))
    valid = np.zeros((size, size), bool)
    c = [0.2820947917738782, 0.4886025119029199, 1.0925484305920792, 0.31539156525252005, 0.5462742152960396]
    a = [np.pi, 2 * np.pi / 3, np.pi / 4]
    for r, z in enumerate(zs):
        x = xs
        inside = x**2 + z**2 <= 1
        nx, nz = np.where(inside, x, 0.0), np.where(inside, z, 0.0)
        ny = np.where(inside, -np.sqrt(np.clip(1 - nx**2 - nz**2, 0, None)), 0.0)
        basis = [a[0] * c[0] * np.ones_like(nx), a[1] * c[1] * ny, a[1] * c[1] * nz, a[1] * c[1] * nx,
                 a[2] * c[2] * ny * nx, a[2] * c[2] * ny * nz, a[2] * c[3] * (3 * nz**2 - 1),
                 a[2] * c[2] * nx * nz, a[2] * c[4] * (nx**2 - ny**2)]
        out[r] = sum(b * s for b, s in zip(basis, sh))
        valid[r] = inside
    out = np.minimum(out, np.percentile(out, 95))
    out = (out - out.min()) / (out.max() - out.min())
    return (out * 255.0).astype(np.uint8) * valid


def test_render_sphere_follows_the_demo_recipe(examples):
    for light in examples:
        img = light.render_sphere()
        assert img.shape == (256, 256) and img.dtype == np.uint8
        ref = reference_sphere(light.coefficients)
        # the same recipe with other float rounding: truncation flips a few values by 1 at most
        diff = np.abs(img.astype(int) - ref)
        assert diff.max() <= 1 and (diff > 0).mean() < 0.002
        assert img[0, 0] == 0 and img[0, 255] == 0 and img[255, 128] == 0  # background
        assert img.max() == 255 and (img == 255).mean() > 0.03  # clipped at the 95th percentile
    assert examples[0].render_sphere(64).shape == (64, 64)


def test_render_sphere_is_bright_where_the_light_comes_from(examples):
    def halves(img):
        return img[:, :128].mean(), img[:, 128:].mean(), img[:128].mean(), img[128:].mean()

    left, right, top, bottom = halves(examples[0].render_sphere())
    assert right > left + 40  # light 00: from the image right
    left, right, top, bottom = halves(SHLight.from_direction((0, 1, 0.3)).render_sphere())
    assert top > bottom + 40
    left, right, top, bottom = halves(SHLight.from_direction((-1, 0, 0.3)).render_sphere())
    assert left > right + 40


# -- metrics -------------------------------------------------------------------------------------------
def test_scale_invariant_metrics_known_values():
    a, b = np.array([1.0, 0.0]), np.array([2.0, 1.0])
    assert best_scale(a, b) == 2.0
    assert si_l2(a, b) == pytest.approx(1.0)  # 2a - b = (0, -1)
    assert si_mse(a, b) == pytest.approx(0.5)
    assert si_l2(5 * a, b) == pytest.approx(1.0) and si_l2(-3 * a, b) == pytest.approx(1.0)
    assert si_l2(b, b) == 0.0 and si_mse(3 * b, b) == pytest.approx(0.0, abs=1e-30)
    assert si_l2(np.zeros(2), b) == pytest.approx(np.sqrt(5.0))  # nothing to scale: ||b||
    x, y = np.array([1.0, 2.0, 3.0]), np.array([1.0, 1.0, 1.0])
    # α = 6/14; residual = 6/14 * x - y
    expected = np.sum((6 / 14 * x - y) ** 2)
    assert si_l2(x, y) == pytest.approx(np.sqrt(expected)) and si_mse(x, y) == pytest.approx(expected / 3)
    assert si_l2(y, x) != pytest.approx(si_l2(x, y))  # prediction first: not symmetric


def test_scale_invariant_metrics_on_tensors_and_errors():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 3, 4))
    t = si_mse(torch.from_numpy(a), torch.from_numpy(b))
    assert isinstance(t, torch.Tensor) and float(t) == pytest.approx(float(si_mse(a, b)), rel=1e-12)
    assert float(si_l2(torch.from_numpy(a), b)) == pytest.approx(float(si_l2(a, b)), rel=1e-12)
    with pytest.raises(ValueError, match="same number"):
        si_l2(np.ones(3), np.ones(4))
