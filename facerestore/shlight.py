"""Lighting for DPR relighting: second-order spherical harmonics (SH) in the convention DPR was
trained with, and `SHLight`, which lets users build lights from directions instead of coefficients.

Conventions (DPR's `utils_SH.py`; "coordinates follow shtools"):

- The *DPR frame* is the one of the demo's lit-sphere image: X points to the image right, Z up, and
  Y away from the viewer (the visible hemisphere has Y < 0).
- The 9 coefficients are ordered [1, Y, Z, X, YX, YZ, 3Z²-1, XZ, X²-Y²] with the real-SH constants
  0.5/√π; √3/(2√π) (x3); √15/(2√π) (YX, YZ, XZ); √5/(4√π); √15/(4√π). They describe the distant
  light (radiance) L(ω) = Σ c_k Y_k(ω). The shading of a Lambertian surface with normal n is
  Σ A_k c_k Y_k(n), with the band factors A = π, 2π/3, π/4 (Ramamoorthi & Hanrahan 2001); `sh_basis`
  includes these factors, as DPR's does.
- Scale: the network was fed 0.7 × the values in the official light files (`example_light/*.txt`),
  so `SHLight.coefficients` are in *network scale*: exactly what `to_tensor()` gives the network.
  `SHLight.from_file` applies that 0.7 (and keeps the raw file values in `file_values`). The light
  the network estimates (`out_light`) is in the same network scale.

For users, directions are given in the *view frame*: x to the image right, y up, z toward the
viewer (out of the screen). `(0, 0, 1)` is a light from the camera, `(1, 0, 0)` one from the image
right. DPR-frame (X, Y, Z) = view-frame (x, -z, y).
"""
from __future__ import annotations

import math
import os
from typing import Sequence

import numpy as np
import torch

DEMO_FILE_SCALE = 0.7  # the official demo multiplies the light-file values by 0.7 before the network
LAMBERTIAN_BANDS = np.pi * np.array([1, 2.0 / 3.0, 1 / 4.0])  # A_0, A_1, A_2
BAND_OF_COEFFICIENT = np.array([0, 1, 1, 1, 2, 2, 2, 2, 2])

# Defaults of `SHLight.from_direction`, taken from the seven official example lights (network scale;
# all seven are one light turned about the viewing axis): intensity = |linear band| / (√3/(2√π)) =
# 1.177 and ambient = A_0 Y_0 (c_0 - intensity Y_0) = 0.378, so a light built from their direction
# has their linear band and DC term exactly (their quadratic band is not that of a point light).
DEFAULT_INTENSITY = 1.18
DEFAULT_AMBIENT = 0.38

# view frame (x right, y up, z toward viewer) -> DPR frame (X right, Y away from viewer, Z up)
VIEW_TO_DPR = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


def sh_basis(normals: np.ndarray, lambertian: bool = True) -> np.ndarray:
    """DPR's 9 SH basis functions at unit vectors (N, 3) in the DPR frame -> (N, 9) float64.

    lambertian=True multiplies each band by A_l (π, 2π/3, π/4): basis · c is then the shading of a
    surface with these normals under light c. lambertian=False gives the plain real SH Y_k, in which
    c are the coefficients of the light itself. The arithmetic order is the one of DPR's
    `utils_SH.SH_basis`, so lit-sphere renders match the official ones bit for bit.
    """
    normals = np.asarray(normals, dtype=np.float64)
    x, y, z = normals[:, 0], normals[:, 1], normals[:, 2]
    att = LAMBERTIAN_BANDS if lambertian else np.ones(3)
    basis = np.zeros((normals.shape[0], 9))
    basis[:, 0] = 0.5 / np.sqrt(np.pi) * att[0]
    basis[:, 1] = np.sqrt(3) / 2 / np.sqrt(np.pi) * y * att[1]
    basis[:, 2] = np.sqrt(3) / 2 / np.sqrt(np.pi) * z * att[1]
    basis[:, 3] = np.sqrt(3) / 2 / np.sqrt(np.pi) * x * att[1]
    basis[:, 4] = np.sqrt(15) / 2 / np.sqrt(np.pi) * y * x * att[2]
    basis[:, 5] = np.sqrt(15) / 2 / np.sqrt(np.pi) * y * z * att[2]
    basis[:, 6] = np.sqrt(5) / 4 / np.sqrt(np.pi) * (3 * z**2 - 1) * att[2]
    basis[:, 7] = np.sqrt(15) / 2 / np.sqrt(np.pi) * x * z * att[2]
    basis[:, 8] = np.sqrt(15) / 4 / np.sqrt(np.pi) * (x**2 - y**2) * att[2]
    return basis


def sphere_normals(size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Normals (size*size, 3) in the DPR frame of the demo's lit sphere seen from the front, and its
    disk mask (size, size): columns go x = -1..1, rows z = 1..-1, y = -sqrt(1 - x² - z²) (facing
    the viewer); outside the disk the normal is (0, 0, 0)."""
    x, z = np.meshgrid(np.linspace(-1, 1, size), np.linspace(1, -1, size))
    valid = np.sqrt(x**2 + z**2) <= 1
    y = -np.sqrt(1 - (x * valid) ** 2 - (z * valid) ** 2)
    normals = np.stack([x * valid, y * valid, z * valid], axis=2).reshape(-1, 3)
    return normals, valid


def render_sphere(coefficients: np.ndarray, size: int = 256) -> np.ndarray:
    """The demo's lit-sphere preview of a light: (size, size) uint8 grey, background 0.

    Shading = basis(normal) · c over all pixels (the background has normal 0 and so shading
    c_0·A_0·Y_0), clipped at its 95th percentile, min-max normalised over all pixels, × 255,
    truncated to uint8 and masked to the disk. Bit-exact with the official `light_XX.png` for the
    example lights (c = 0.7 × file values, as the demo does).
    """
    normals, valid = sphere_normals(size)
    shading = np.matmul(sh_basis(normals), np.asarray(coefficients, dtype=np.float64).reshape(9))
    ceiling = np.percentile(shading, 95)
    shading[shading > ceiling] = ceiling
    span = np.max(shading) - np.min(shading)
    shading = (shading - np.min(shading)) / (span if span > 0 else 1.0)
    shading = (shading * 255.0).astype(np.uint8).reshape(size, size)
    return shading * valid.astype(np.uint8)


def view_to_dpr(vectors: np.ndarray) -> np.ndarray:
    """(..., 3) view-frame vectors -> DPR frame."""
    return np.asarray(vectors, dtype=np.float64) @ VIEW_TO_DPR.T


def dpr_to_view(vectors: np.ndarray) -> np.ndarray:
    """(..., 3) DPR-frame vectors -> view frame."""
    return np.asarray(vectors, dtype=np.float64) @ VIEW_TO_DPR


def fibonacci_sphere(count: int = 64) -> np.ndarray:
    """`count` nearly uniform unit vectors (count, 3)."""
    i = np.arange(count) + 0.5
    z = 1 - 2 * i / count
    r = np.sqrt(1 - z**2)
    phi = np.pi * (3 - np.sqrt(5)) * i
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def axis_angle_matrix(axis: Sequence[float], angle: float) -> np.ndarray:
    """3x3 rotation by `angle` radians about `axis` (right-hand rule), Rodrigues' formula."""
    axis = np.asarray(axis, dtype=np.float64)
    norm = np.linalg.norm(axis)
    if norm == 0:
        raise ValueError("rotation axis must be non-zero")
    kx, ky, kz = axis / norm
    k = np.array([[0, -kz, ky], [kz, 0, -kx], [-ky, kx, 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)


def sh_rotation_matrix(rotation: np.ndarray) -> np.ndarray:
    """9x9 matrix M with M @ c = coefficients of the light c rotated by `rotation` (3x3, DPR frame).

    SH bands are closed under rotation, so the rotated light g(ω) = f(Rᵀω) is fitted exactly (up to
    float rounding) by least squares on 64 sample directions: M = pinv(Y(S)) Y(Rᵀ S). Band 0 stays,
    bands 1 and 2 rotate within themselves.
    """
    samples = fibonacci_sphere(64)
    plain = sh_basis(samples, lambertian=False)
    rotated = sh_basis(samples @ np.asarray(rotation, dtype=np.float64), lambertian=False)  # rows Rᵀ s
    return np.linalg.lstsq(plain, rotated, rcond=None)[0]


def yaw_pitch_roll_matrix(yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """View-frame rotation (radians): roll first (about the viewing axis, positive = counter-clockwise
    on screen), then pitch (positive raises a frontal light), then yaw (about the vertical axis,
    positive turns a frontal light toward the image right)."""
    r_roll = axis_angle_matrix((0, 0, 1), roll)
    r_pitch = axis_angle_matrix((-1, 0, 0), pitch)
    r_yaw = axis_angle_matrix((0, 1, 0), yaw)
    return r_yaw @ r_pitch @ r_roll


class SHLight:
    """A distant light as 9 SH coefficients in DPR's convention and network scale (see module doc).

    Build one from a direction (`from_direction`), an official light file (`from_file`), the
    network's estimate (`Relighter.estimate_light`) or 9 coefficients (`SHLight(c)`, used as given).
    Lights are immutable; `rotate`, `interpolate` and `scaled` return new ones.
    """

    def __init__(self, coefficients: Sequence[float] | np.ndarray | torch.Tensor,
                 file_values: np.ndarray | None = None) -> None:
        if isinstance(coefficients, torch.Tensor):
            coefficients = coefficients.detach().float().cpu().numpy()
        values = np.array(coefficients, dtype=np.float64).reshape(-1)  # a private copy
        if values.size != 9 or not np.all(np.isfinite(values)):
            raise ValueError(f"an SH light needs 9 finite coefficients, got {np.asarray(coefficients).shape}")
        self._coefficients = values
        self._coefficients.setflags(write=False)
        self.file_values = None if file_values is None else np.array(file_values, dtype=np.float64)

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_file(cls, path: str | os.PathLike, scale: float = DEMO_FILE_SCALE) -> "SHLight":
        """An official light file (9 numbers, one per line; extra lines are ignored as in the demo).

        coefficients = scale × file values (float64), so the default 0.7 reproduces the demo's
        network input exactly; the raw values stay in `file_values`."""
        try:
            values = np.loadtxt(os.fspath(path), dtype=np.float64).reshape(-1)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: not an SH light file (expected 9 numbers, one per line): {exc}") from exc
        if values.size < 9:
            raise ValueError(f"{path}: an SH light file needs 9 numbers, found {values.size}")
        values = values[0:9]
        return cls(values * scale, file_values=values)

    @classmethod
    def from_direction(cls, direction: Sequence[float], intensity: float = DEFAULT_INTENSITY,
                       ambient: float = DEFAULT_AMBIENT) -> "SHLight":
        """A distant point light from `direction` (view frame: x right, y up, z toward the viewer;
        need not be unit length) plus uniform ambient light.

        The light's SH coefficients are c = intensity · Y(d) + ambient / (A_0 Y_0) · e_0, so a
        Lambertian surface is shaded ≈ ambient + intensity · max(0, n·d) (the order-2 approximation
        of the clamped cosine). Defaults match the strength of the official example lights.
        """
        d = np.asarray(direction, dtype=np.float64).reshape(3)
        norm = np.linalg.norm(d)
        if norm == 0:
            raise ValueError("light direction must be non-zero, e.g. (1, 0, 1) for a light from the front-right")
        coefficients = intensity * sh_basis(view_to_dpr(d / norm)[None], lambertian=False)[0]
        coefficients[0] += ambient / (LAMBERTIAN_BANDS[0] * 0.5 / np.sqrt(np.pi))
        return cls(coefficients)

    # -- views ----------------------------------------------------------------------------------
    @property
    def coefficients(self) -> np.ndarray:
        """(9,) float64 in network scale (read-only)."""
        return self._coefficients

    def to_tensor(self, device: str | torch.device | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """(1, 9, 1, 1): the network's target-light input."""
        return torch.as_tensor(self._coefficients.astype(np.float32), device=device).to(dtype).reshape(1, 9, 1, 1)

    @property
    def direction(self) -> np.ndarray:
        """Dominant light direction (unit, view frame) from the linear band: exact for a single
        directional light, the 'optimal linear direction' of Sloan (2008) for any other."""
        linear = np.array([self._coefficients[3], self._coefficients[1], self._coefficients[2]])  # X, Y, Z
        norm = np.linalg.norm(linear)
        return dpr_to_view(linear / norm) if norm > 0 else np.zeros(3)

    def shading(self, normals: np.ndarray, frame: str = "view") -> np.ndarray:
        """Lambertian shading at unit normals (N, 3) given in the view (default) or DPR frame."""
        normals = np.asarray(normals, dtype=np.float64).reshape(-1, 3)
        if frame == "view":
            normals = view_to_dpr(normals)
        elif frame != "dpr":
            raise ValueError(f"frame must be 'view' or 'dpr', got {frame!r}")
        return sh_basis(normals) @ self._coefficients

    def render_sphere(self, size: int = 256) -> np.ndarray:
        """The demo's lit-sphere preview (size, size) uint8: a sphere seen from the camera, bright
        where this light shines (image right = light from the right). See `render_sphere`."""
        return render_sphere(self._coefficients, size)

    # -- operations -----------------------------------------------------------------------------
    def rotate(self, axis: Sequence[float] | None = None, angle: float | None = None, *, yaw: float = 0.0,
               pitch: float = 0.0, roll: float = 0.0, degrees: bool = True) -> "SHLight":
        """The light turned rigidly about the face: by `angle` about `axis` (view frame, right-hand
        rule), or by yaw/pitch/roll (see `yaw_pitch_roll_matrix`; roll = around the viewing axis, as
        the official `rotate_light_XX` examples turn). Angles in degrees unless degrees=False."""
        to_rad = math.radians if degrees else float
        if axis is not None or angle is not None:
            if axis is None or angle is None:
                raise ValueError("pass both axis and angle (or yaw/pitch/roll)")
            rotation = axis_angle_matrix(axis, to_rad(angle))
        else:
            rotation = yaw_pitch_roll_matrix(to_rad(yaw), to_rad(pitch), to_rad(roll))
        rotation_dpr = VIEW_TO_DPR @ rotation @ VIEW_TO_DPR.T
        return SHLight(sh_rotation_matrix(rotation_dpr) @ self._coefficients)

    def sweep(self, count: int) -> list["SHLight"]:
        """`count` copies of this light turned around the viewing axis in equal steps (0, 360/count,
        ... degrees, counter-clockwise on screen): a light circling the face. The official examples
        `rotate_light_00..06` are exactly `rotate_light_00.sweep(7)`."""
        if count < 1:
            raise ValueError(f"a sweep needs at least 1 light, got {count}")
        return [self.rotate(roll=360.0 * k / count) for k in range(count)]

    def interpolate(self, other: "SHLight", t: float) -> "SHLight":
        """(1 - t) · self + t · other, coefficient-wise (shading is linear in the coefficients)."""
        return SHLight((1.0 - t) * self._coefficients + t * np.asarray(other.coefficients))

    def scaled(self, factor: float) -> "SHLight":
        """The same light `factor` times as strong."""
        return SHLight(self._coefficients * factor)

    def to_file(self, path: str | os.PathLike, scale: float = DEMO_FILE_SCALE) -> None:
        """Write an official-style light file (coefficients / scale, one per line)."""
        np.savetxt(os.fspath(path), self._coefficients / scale)

    def __repr__(self) -> str:
        x, y, z = self.direction
        return f"SHLight(direction=({x:+.2f}, {y:+.2f}, {z:+.2f}), coefficients={np.round(self._coefficients, 4).tolist()})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SHLight) and np.array_equal(self._coefficients, other._coefficients)

    __hash__ = None  # mutable-looking numpy content; compare with ==
