"""Synthetic degradations for blind face restoration: small pure functions and seeded presets.

Every operation is a pure function of an image and explicit parameters. Randomness lives in one
place: `sample_params(preset, rng, size)` draws a preset's parameters from a numpy `Generator`
(PCG64, `np.random.default_rng(seed)`) and returns plain, JSON-serialisable data -- the ordered list
of operations with their arguments. `apply(img, params)` then runs that list deterministically.
Noise is stored in the parameters as an integer seed, so the parameters alone reproduce the image.

Images are BGR (cv2 convention), HxWx3. Operations accept uint8 (0..255) or float (0..1) images and
return float32 in [0, 1]: the chain stays in float like the official training pipelines, and
`degrade()` rounds to uint8 once at the end. Noise sigmas and colour shifts are given in 8-bit
levels (0..255), as in the papers and configs.

Reproducibility: the same seed gives the same parameters and pixels on every machine running the
same numpy (Generator streams are platform independent; numpy does not promise identical streams
across its versions) and the same OpenCV build. cv2.filter2D, cv2.resize and cv2.cvtColor are
deterministic; the JPEG step uses OpenCV's bundled libjpeg(-turbo), whose encoder and decoder are
deterministic for a given library version (another libjpeg may differ by a level here and there).
No cv2 or torch random number generator is used.
"""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import cv2
import numpy as np

INTERPOLATIONS = {
    "nearest": cv2.INTER_NEAREST,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "lanczos": cv2.INTER_LANCZOS4,
}


# ----------------------------------------------------------------------------------------------
# Conversions
# ----------------------------------------------------------------------------------------------
def to_float(img: np.ndarray) -> np.ndarray:
    """uint8 0..255 -> float32 0..1; float images are passed through as float32."""
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    if np.issubdtype(img.dtype, np.floating):
        return img.astype(np.float32, copy=False)
    raise TypeError(f"expected a uint8 or float image, got {img.dtype}")


def to_uint8(img: np.ndarray) -> np.ndarray:
    """float 0..1 -> uint8 (rounded, clipped); uint8 images are passed through."""
    if img.dtype == np.uint8:
        return img
    return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# Kernels
# ----------------------------------------------------------------------------------------------
def gaussian_kernel(kernel_size: int, sigma_x: float, sigma_y: float | None = None, theta: float = 0.0) -> np.ndarray:
    """Normalised 2-D Gaussian kernel (kernel_size x kernel_size, odd size).

    Anisotropic when sigma_y != sigma_x: covariance R(theta) diag(sigma_x^2, sigma_y^2) R(theta)^T,
    theta in radians, x along columns and y along rows (the bivariate Gaussian of BasicSR's
    degradations, which GFPGAN and CodeFormer train with).
    """
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd number, got {kernel_size}")
    sigma_y = sigma_x if sigma_y is None else sigma_y
    if sigma_x <= 0 or sigma_y <= 0:
        raise ValueError(f"sigmas must be positive, got {sigma_x}, {sigma_y}")
    cos, sin = math.cos(theta), math.sin(theta)
    rotation = np.array([[cos, -sin], [sin, cos]])
    covariance = rotation @ np.diag([sigma_x**2, sigma_y**2]) @ rotation.T
    radius = kernel_size // 2
    axis = np.arange(-radius, radius + 1, dtype=np.float64)
    points = np.stack(np.meshgrid(axis, axis), axis=-1)  # (k, k, 2) as (x, y)
    exponent = np.einsum("...i,ij,...j->...", points, np.linalg.inv(covariance), points)
    kernel = np.exp(-0.5 * exponent)
    return (kernel / kernel.sum()).astype(np.float32)


def motion_kernel(length: float, angle: float) -> np.ndarray:
    """Normalised linear motion-blur kernel: a straight segment `length` pixels long (1 = no blur)
    at `angle` degrees counter-clockwise from the x axis, drawn with bilinear weights."""
    if length < 1:
        raise ValueError(f"motion length must be >= 1 pixel, got {length}")
    half = (length - 1) / 2
    size = 2 * math.ceil(half) + 3  # odd, one pixel of margin for the bilinear spread
    center = size // 2
    t = np.linspace(-half, half, max(2, math.ceil(length * 4)))
    x = center + t * math.cos(math.radians(angle))
    y = center - t * math.sin(math.radians(angle))  # image rows grow downwards
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    kernel = np.zeros((size, size), np.float64)
    for dy, dx, weight in ((0, 0, (1 - fx) * (1 - fy)), (0, 1, fx * (1 - fy)), (1, 0, (1 - fx) * fy), (1, 1, fx * fy)):
        np.add.at(kernel, (y0 + dy, x0 + dx), weight)
    return (kernel / kernel.sum()).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Operations: (image, explicit parameters) -> float32 image in [0, 1]
# ----------------------------------------------------------------------------------------------
def blur(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve with a kernel (cv2.filter2D, reflect-101 borders as in the official pipelines)."""
    return cv2.filter2D(to_float(img), -1, kernel, borderType=cv2.BORDER_REFLECT_101)


def gaussian_blur(img: np.ndarray, kernel_size: int, sigma_x: float, sigma_y: float | None = None,
                  theta: float = 0.0) -> np.ndarray:
    """Isotropic (sigma_y None or equal) or anisotropic, rotated Gaussian blur."""
    return blur(img, gaussian_kernel(kernel_size, sigma_x, sigma_y, theta))


def motion_blur(img: np.ndarray, length: float, angle: float) -> np.ndarray:
    """Linear motion blur of `length` pixels at `angle` degrees."""
    return blur(img, motion_kernel(length, angle))


def downsample(img: np.ndarray, scale: float, interpolation: str = "linear") -> np.ndarray:
    """Shrink by `scale` to (int(w // scale), int(h // scale)) as GFPGAN's dataset does (scale < 1 enlarges)."""
    h, w = img.shape[:2]
    size = (max(1, int(w // scale)), max(1, int(h // scale)))
    return cv2.resize(to_float(img), size, interpolation=INTERPOLATIONS[interpolation])


def resize(img: np.ndarray, height: int, width: int, interpolation: str = "linear") -> np.ndarray:
    """Resize to height x width (used to bring a downsampled image back to its size)."""
    return cv2.resize(to_float(img), (int(width), int(height)), interpolation=INTERPOLATIONS[interpolation])


def resize_square(img: np.ndarray, size: int | None) -> np.ndarray:
    """Resize to size x size (area when shrinking, cubic when enlarging); None keeps the image as is.
    Used to bring faces to a working resolution, not as a degradation."""
    if size is None or img.shape[:2] == (size, size):
        return img
    interpolation = cv2.INTER_AREA if max(img.shape[:2]) > size else cv2.INTER_CUBIC
    return cv2.resize(img, (size, size), interpolation=interpolation)


def gaussian_noise(img: np.ndarray, sigma: float, seed: int, gray: bool = False) -> np.ndarray:
    """Add white Gaussian noise of standard deviation `sigma` (8-bit levels); clip to [0, 1].
    gray=True adds the same noise to the three channels."""
    img = to_float(img)
    shape = img.shape[:2] + (1,) * (img.ndim - 2) if gray else img.shape
    noise = np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * np.float32(sigma / 255.0)
    return np.clip(img + noise, 0.0, 1.0)


def poisson_noise(img: np.ndarray, scale: float, seed: int) -> np.ndarray:
    """Add shot noise: each 8-bit level v is replaced by a Poisson(v) draw, the difference scaled by `scale`."""
    img = to_float(img)
    levels = img.astype(np.float64) * 255.0
    noise = (np.random.default_rng(seed).poisson(levels) - levels) / 255.0 * scale
    return np.clip(img + noise.astype(np.float32), 0.0, 1.0)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """JPEG round trip at an integer quality (cv2.imencode/imdecode, 8-bit)."""
    ok, buffer = cv2.imencode(".jpg", to_uint8(img), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("OpenCV could not JPEG-encode the image")
    return to_float(cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED))


def quantize(img: np.ndarray) -> np.ndarray:
    """Round to 8-bit levels (GPEN's pipeline does this before resizing back)."""
    return to_float(to_uint8(img))


def color_shift(img: np.ndarray, shift: list[float]) -> np.ndarray:
    """Add a constant per channel (B, G, R, in 8-bit levels): GFPGAN's `color_jitter`."""
    return np.clip(to_float(img) + np.asarray(shift, np.float32) / np.float32(255.0), 0.0, 1.0)


def _luma(img: np.ndarray) -> np.ndarray:
    # torchvision's rgb_to_grayscale weights (0.2989 R + 0.587 G + 0.114 B), on a BGR image
    return img[..., 2] * np.float32(0.2989) + img[..., 1] * np.float32(0.587) + img[..., 0] * np.float32(0.114)


def brightness(img: np.ndarray, factor: float) -> np.ndarray:
    """Multiply by `factor` (torchvision's adjust_brightness)."""
    return np.clip(to_float(img) * np.float32(factor), 0.0, 1.0)


def contrast(img: np.ndarray, factor: float) -> np.ndarray:
    """Blend with the image's mean gray level (torchvision's adjust_contrast)."""
    img = to_float(img)
    mean = np.float32(_luma(img).mean())
    return np.clip(img * np.float32(factor) + mean * np.float32(1 - factor), 0.0, 1.0)


def saturation(img: np.ndarray, factor: float) -> np.ndarray:
    """Blend with the per-pixel gray image (torchvision's adjust_saturation)."""
    img = to_float(img)
    gray = _luma(img)[..., None]
    return np.clip(img * np.float32(factor) + gray * np.float32(1 - factor), 0.0, 1.0)


def hue(img: np.ndarray, shift: float) -> np.ndarray:
    """Rotate the hue by `shift` turns (-0.5..0.5), as torchvision's adjust_hue."""
    hsv = cv2.cvtColor(np.clip(to_float(img), 0.0, 1.0), cv2.COLOR_BGR2HSV)  # float: H in [0, 360)
    hsv[..., 0] = np.mod(hsv[..., 0] + np.float32(shift * 360.0), np.float32(360.0))
    return np.clip(cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR), 0.0, 1.0)


def grayscale(img: np.ndarray) -> np.ndarray:
    """cv2 BGR->gray, repeated on the three channels."""
    gray = cv2.cvtColor(to_float(img), cv2.COLOR_BGR2GRAY)
    return np.repeat(gray[..., None], 3, axis=2)


OPS: dict[str, Callable[..., np.ndarray]] = {
    "gaussian_blur": gaussian_blur,
    "motion_blur": motion_blur,
    "downsample": downsample,
    "resize": resize,
    "gaussian_noise": gaussian_noise,
    "poisson_noise": poisson_noise,
    "jpeg": jpeg,
    "quantize": quantize,
    "color_shift": color_shift,
    "brightness": brightness,
    "contrast": contrast,
    "saturation": saturation,
    "hue": hue,
    "grayscale": grayscale,
}


def apply_steps(img: np.ndarray, steps: list[Mapping[str, Any]]) -> np.ndarray:
    """Run a list of {"op": name, **arguments} in order; returns float32 in [0, 1]."""
    out = to_float(img)
    for step in steps:
        arguments = dict(step)
        name = arguments.pop("op")
        if name not in OPS:
            raise ValueError(f"unknown degradation op {name!r}; known: {', '.join(OPS)}")
        out = OPS[name](out, **arguments)
    return out


# ----------------------------------------------------------------------------------------------
# Presets: published parameter ranges + the op order
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Preset:
    """A degradation model: how to draw one parameter set, from which published ranges."""

    name: str
    sampler: Callable[[np.random.Generator, tuple[int, int], Mapping[str, Any]], dict]
    ranges: Mapping[str, Any]  # the published parameters, passed to the sampler
    order: str  # the op order, for people
    source: str  # where the parameters come from
    notes: str = ""  # assumptions and deviations
    description: str = ""  # one line for listings

    def sample(self, rng: np.random.Generator, size: tuple[int, int]) -> dict:
        drawn = self.sampler(rng, (int(size[0]), int(size[1])), self.ranges)
        return {"preset": self.name, "size": [int(size[0]), int(size[1])], "target_steps": [], **drawn}


def _noise_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**63 - 1))


def _sample_bivariate_blur(rng: np.random.Generator, r: Mapping[str, Any]) -> dict:
    """BasicSR's random_mixed_kernels with kernel_list iso/aniso (no kernel noise)."""
    kind = r["kernel_list"][int(rng.choice(len(r["kernel_list"]), p=r["kernel_prob"]))]
    sigma_x = float(rng.uniform(*r["blur_sigma"]))
    if kind == "iso":
        sigma_y, theta = sigma_x, 0.0
    else:
        sigma_y = float(rng.uniform(*r["blur_sigma"]))
        theta = float(rng.uniform(-math.pi, math.pi))
    return {"op": "gaussian_blur", "kernel_size": r["blur_kernel_size"], "sigma_x": sigma_x, "sigma_y": sigma_y,
            "theta": theta}


def _sample_color_jitter(rng: np.random.Generator, r: Mapping[str, Any]) -> list[dict]:
    """GFPGAN's `color_jitter_pt`: brightness, contrast, saturation and hue in a random order."""
    steps = {
        "brightness": {"op": "brightness", "factor": float(rng.uniform(*r["brightness"]))},
        "contrast": {"op": "contrast", "factor": float(rng.uniform(*r["contrast"]))},
        "saturation": {"op": "saturation", "factor": float(rng.uniform(*r["saturation"]))},
        "hue": {"op": "hue", "shift": float(rng.uniform(*r["hue"]))},
    }
    names = list(steps)
    return [steps[names[i]] for i in rng.permutation(len(names))]


def _sample_gfpgan_pipeline(rng: np.random.Generator, size: tuple[int, int], r: Mapping[str, Any]) -> dict:
    """GFPGAN's FFHQDegradationDataset (CodeFormer's dataset follows it with other ranges):
    blur -> downsample (linear) -> Gaussian noise -> JPEG -> resize back (linear)
    -> [colour shift] -> [grayscale, also on the target with gt_gray] -> [colour jitter]."""
    h, w = size
    steps = [
        _sample_bivariate_blur(rng, r),
        {"op": "downsample", "scale": float(rng.uniform(*r["downsample"])), "interpolation": "linear"},
        {"op": "gaussian_noise", "sigma": float(rng.uniform(*r["noise"])), "seed": _noise_seed(rng)},
        {"op": "jpeg", "quality": int(rng.uniform(*r["jpeg"]))},  # int() truncates, as the official code
        {"op": "resize", "height": h, "width": w, "interpolation": "linear"},
    ]
    target_steps = []
    if rng.uniform() < r["color_jitter_prob"]:
        shift = r["color_jitter_shift"]
        steps.append({"op": "color_shift", "shift": [float(v) for v in rng.uniform(-shift, shift, 3)]})
    if rng.uniform() < r["gray_prob"]:
        steps.append({"op": "grayscale"})
        if r["gt_gray"]:
            target_steps.append({"op": "grayscale"})
    if rng.uniform() < r["color_jitter_pt_prob"]:
        steps += _sample_color_jitter(rng, r)
    return {"steps": steps, "target_steps": target_steps}


def _sample_gpen_pipeline(rng: np.random.Generator, size: tuple[int, int], r: Mapping[str, Any]) -> dict:
    """GPEN's GFPGAN_degradation.degrade_process: [grayscale on the target AND the input] -> blur
    -> downsample (linear) -> Gaussian noise -> JPEG -> round to 8 bit -> resize back (linear)."""
    h, w = size
    target_steps = [{"op": "grayscale"}] if rng.uniform() < r["gray_prob"] else []
    steps = [
        *target_steps,
        _sample_bivariate_blur(rng, r),
        {"op": "downsample", "scale": float(rng.uniform(*r["downsample"])), "interpolation": "linear"},
        {"op": "gaussian_noise", "sigma": float(rng.uniform(*r["noise"])), "seed": _noise_seed(rng)},
        {"op": "jpeg", "quality": int(rng.uniform(*r["jpeg"]))},
        {"op": "quantize"},
        {"op": "resize", "height": h, "width": w, "interpolation": "linear"},
    ]
    return {"steps": steps, "target_steps": target_steps}


def _grid(rng: np.random.Generator, start: float, stop: float, step: float) -> float:
    """A value of the MATLAB-style range start:step:stop, drawn uniformly."""
    count = int(round((stop - start) / step)) + 1
    return round(start + step * int(rng.integers(0, count)), 6)


def _sample_dfdnet_pipeline(rng: np.random.Generator, size: tuple[int, int], r: Mapping[str, Any]) -> dict:
    """DFDNet (Li et al. 2020, Eq. 5): Gaussian or motion blur -> bicubic downsample -> Gaussian
    noise -> JPEG -> bicubic upsample back to the input size."""
    h, w = size
    if rng.uniform() < r["gaussian_prob"]:
        sigma = _grid(rng, *r["blur_sigma"])
        kernel = {"op": "gaussian_blur", "kernel_size": r["blur_kernel_size"], "sigma_x": sigma, "sigma_y": sigma,
                  "theta": 0.0}
    else:
        kernel = {"op": "motion_blur", "length": float(rng.uniform(*r["motion_length"])),
                  "angle": float(rng.uniform(0.0, 180.0))}
    steps = [
        kernel,
        {"op": "downsample", "scale": _grid(rng, *r["downsample"]), "interpolation": "cubic"},
        {"op": "gaussian_noise", "sigma": _grid(rng, *r["noise"]), "seed": _noise_seed(rng)},
        {"op": "jpeg", "quality": int(_grid(rng, *r["jpeg"]))},
        {"op": "resize", "height": h, "width": w, "interpolation": "cubic"},
    ]
    return {"steps": steps}


def _sample_jpeg_colorcast_pipeline(rng: np.random.Generator, size: tuple[int, int], r: Mapping[str, Any]) -> dict:
    """A domain of our own (old prints, a cheap scanner, a chat app): a colour cast of one direction
    (warm: blue down, red up, each by a random amount) -> mild blur -> strong JPEG."""
    shift = [float(rng.uniform(*r["cast_b"])), float(rng.uniform(*r["cast_g"])), float(rng.uniform(*r["cast_r"]))]
    sigma = float(rng.uniform(*r["blur_sigma"]))
    return {"steps": [
        {"op": "color_shift", "shift": shift},
        {"op": "gaussian_blur", "kernel_size": r["blur_kernel_size"], "sigma_x": sigma, "sigma_y": sigma, "theta": 0.0},
        {"op": "jpeg", "quality": int(rng.integers(r["jpeg"][0], r["jpeg"][1] + 1))},
    ]}


_GFPGAN_RANGES = {
    "blur_kernel_size": 41,
    "kernel_list": ("iso", "aniso"),
    "kernel_prob": (0.5, 0.5),
    "blur_sigma": (0.1, 10.0),
    "downsample": (0.8, 8.0),
    "noise": (0.0, 20.0),
    "jpeg": (60, 100),
    "color_jitter_prob": 0.3,
    "color_jitter_shift": 20.0,
    "color_jitter_pt_prob": 0.3,
    "brightness": (0.5, 1.5),
    "contrast": (0.5, 1.5),
    "saturation": (0.0, 1.5),
    "hue": (-0.1, 0.1),
    "gray_prob": 0.01,
    "gt_gray": True,
}

PRESETS: dict[str, Preset] = {}


def register_preset(preset: Preset) -> Preset:
    """Add a preset (names must be unique)."""
    if preset.name in PRESETS:
        raise ValueError(f"degradation preset {preset.name!r} is registered twice")
    PRESETS[preset.name] = preset
    return preset


register_preset(Preset(
    name="gfpgan",
    sampler=_sample_gfpgan_pipeline,
    ranges=_GFPGAN_RANGES,
    order="blur -> down (linear) -> noise -> JPEG -> up (linear) -> [shift] -> [gray] -> [jitter]",
    source="GFPGAN options/train_gfpgan_v1.yml + gfpgan/data/ffhq_degradation_dataset.py (Wang et al. 2021)",
    notes="Training-time flips are augmentation, not degradation, and are left out. gray also makes the target "
          "gray (gt_gray: True), see apply_target().",
    description="GFP-GAN's training degradation: iso/aniso Gaussian blur (41x41, sigma 0.1-10), down 0.8-8x, "
                "noise 0-20, JPEG 60-100, colour shift (p 0.3, +-20), colour jitter (p 0.3), gray (p 0.01).",
))
register_preset(Preset(
    name="gpen",
    sampler=_sample_gpen_pipeline,
    ranges={**_GFPGAN_RANGES, "gray_prob": 0.2, "color_jitter_prob": 0.0, "color_jitter_pt_prob": 0.0},
    order="[gray, also on the target] -> blur -> down (linear) -> noise -> JPEG -> round -> up (linear)",
    source="GPEN training/data_loader/dataset_face.py (class GFPGAN_degradation, used by train_simple.py), "
           "Yang et al. 2021",
    notes="Written from our reading of the GPEN repository (not re-checked against it here: no network): GPEN "
          "reuses GFPGAN's kernel/resize/noise/JPEG ranges with gray_prob 0.2 applied to the target before "
          "degrading, colour jitter probability 0, and rounds to 8 bit before resizing back. Its random "
          "horizontal flip is augmentation and is left out.",
    description="GPEN's training degradation: GFPGAN ranges, gray p 0.2 (target too), no colour jitter.",
))
register_preset(Preset(
    name="dfdnet",
    sampler=_sample_dfdnet_pipeline,
    ranges={
        "gaussian_prob": 0.5,
        "blur_kernel_size": 21,
        "blur_sigma": (1.0, 3.0, 0.1),  # start, stop, step
        "motion_length": (5.0, 25.0),
        "downsample": (1.0, 8.0, 0.1),
        "noise": (0, 15, 1),
        "jpeg": (40, 80, 1),
    },
    order="Gaussian or motion blur -> down (bicubic) -> noise -> JPEG -> up (bicubic)",
    source="DFDNet paper, Li et al. ECCV 2020, Sec. 4 (degradation model of Eq. 5, following GFRNet)",
    notes="Ranges as we read them in the paper (sigma {1:0.1:3}, scale {1:0.1:8}, noise {0:1:15}, JPEG "
          "{40:1:80}); not re-checked here. The paper's 32 recorded motion kernels (Boracchi & Foi) are "
          "not available: we draw synthetic linear motion (5-25 px, any angle) instead, Gaussian or motion "
          "with probability 0.5 each (assumed). The Gaussian kernel size 21 and cv2 bicubic resizing are "
          "our choices.",
    description="DFDNet's degradation: Gaussian (sigma 1-3) or motion blur, down 1-8x, noise 0-15, JPEG 40-80.",
))
register_preset(Preset(
    name="codeformer",
    sampler=_sample_gfpgan_pipeline,
    ranges={**_GFPGAN_RANGES, "blur_sigma": (1.0, 15.0), "downsample": (1.0, 30.0), "jpeg": (30, 90)},
    order="blur -> down (linear) -> noise -> JPEG -> up (linear) -> [shift] -> [gray] -> [jitter]",
    source="CodeFormer paper, Zhou et al. NeurIPS 2022, Sec. 4 (sigma 1-15, r 1-30, delta 0-20, q 30-90)",
    notes="CodeFormer's dataset code follows GFPGAN's; the colour shift/jitter and gray probabilities are "
          "assumed equal to GFPGAN's.",
    description="CodeFormer's heavier degradation: blur sigma 1-15, down 1-30x, noise 0-20, JPEG 30-90.",
))


register_preset(Preset(
    name="jpeg-colorcast",
    sampler=_sample_jpeg_colorcast_pipeline,
    ranges={"cast_b": (-40.0, -20.0), "cast_g": (-10.0, 0.0), "cast_r": (10.0, 25.0), "blur_kernel_size": 7,
            "blur_sigma": (0.3, 1.0), "jpeg": (10, 25)},
    order="colour cast (B, G, R shifts) -> Gaussian blur (iso) -> JPEG",
    source="facerestore's own domain-shift preset (not from a paper): a warm colour cast plus strong JPEG",
    notes="Shifts in 8-bit levels: blue -40..-20, green -10..0, red +10..+25 (always warm), blur sigma 0.3-1 "
          "(7x7), JPEG quality 10-25. Made to show fine-tuning on a new domain: a model trained on the "
          "gfpgan/gpen presets has never seen a cast of one direction nor such strong blocking.",
    description="Domain shift: warm colour cast (B -40..-20, R +10..+25) + mild blur + strong JPEG (q 10-25).",
))


def list_presets() -> list[str]:
    """Names of the registered degradation presets."""
    return sorted(PRESETS)


def get_preset(preset: str | Preset) -> Preset:
    """A preset by name (or the preset itself); unknown names list close matches."""
    if isinstance(preset, Preset):
        return preset
    key = str(preset).strip().lower()
    if key not in PRESETS:
        close = difflib.get_close_matches(key, PRESETS, n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown degradation preset {preset!r}.{hint} Known presets: {', '.join(list_presets())}.")
    return PRESETS[key]


def sample_params(preset: str | Preset, rng: np.random.Generator | int | None, size: tuple[int, int]) -> dict:
    """Draw one parameter set of `preset` for an image of `size` (height, width).

    rng: a numpy Generator, or an int seed for `np.random.default_rng(seed)`.
    Returns {"preset", "size", "steps": [{"op": ..., **arguments}, ...], "target_steps": [...]}:
    `steps` make the degraded input, `target_steps` what the official pipeline also does to the
    ground truth (e.g. GPEN's and GFPGAN's grayscale).
    """
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(rng)
    return get_preset(preset).sample(rng, size)


def apply(img: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
    """Degrade `img` with sampled parameters; float32 BGR in [0, 1]."""
    return apply_steps(img, params["steps"])


def apply_target(img: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
    """What the official pipeline does to the ground truth with these parameters; float32 in [0, 1]."""
    return apply_steps(img, params.get("target_steps", []))


def degrade(img: Any, preset: str | Preset = "gfpgan", seed: int | None = None,
            return_params: bool = False) -> np.ndarray | tuple[np.ndarray, dict]:
    """Degrade one image with a preset: BGR uint8 of the same size (+ the parameters drawn).

    img: anything facerestore.imageio.to_bgr_uint8 accepts (BGR uint8 array, path, PIL image, ...).
    seed: same seed -> same output; None draws fresh randomness (the parameters say what was drawn).
    """
    from ..imageio import to_bgr_uint8

    bgr, _ = to_bgr_uint8(img)
    params = sample_params(preset, seed, bgr.shape[:2])
    out = to_uint8(apply(bgr, params))
    return (out, params) if return_params else out


def describe(params: Mapping[str, Any]) -> list[str]:
    """Short human-readable lines for the key parameters of a sampled degradation."""
    lines, extras = [], []
    for step in params["steps"]:
        op = step["op"]
        if op == "gaussian_blur":
            if step["sigma_x"] == step["sigma_y"]:
                lines.append(f"blur iso s={step['sigma_x']:.1f}")
            else:
                lines.append(f"blur aniso s={step['sigma_x']:.1f}/{step['sigma_y']:.1f} "
                             f"{math.degrees(step['theta']):.0f}deg")
        elif op == "motion_blur":
            lines.append(f"motion {step['length']:.0f}px {step['angle']:.0f}deg")
        elif op == "downsample":
            lines.append(f"down x{step['scale']:.1f}")
        elif op == "gaussian_noise":
            lines.append(f"noise {step['sigma']:.1f}")
        elif op == "poisson_noise":
            lines.append(f"poisson x{step['scale']:.1f}")
        elif op == "jpeg":
            lines.append(f"jpeg q{step['quality']}")
        elif op == "color_shift":
            extras.append("shift")
        elif op in ("brightness", "contrast", "saturation", "hue"):
            if "jitter" not in extras:
                extras.append("jitter")
        elif op == "grayscale":
            extras.append("gray")
    if extras:
        lines.append(" ".join(extras))
    return lines
