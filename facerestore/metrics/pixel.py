"""PSNR and SSIM with BasicSR's conventions, so numbers compare with the papers that use them.

Inputs are BGR images with values in [0, 255] (uint8 or float), HxWx3 or HxW.
- crop_border: pixels removed at each edge before measuring (0 = none).
- test_y_channel: measure on the Y channel of YCbCr (ITU-R BT.601 "studio swing", MATLAB's
  rgb2ycbcr: Y in [16, 235]) instead of on the three BGR channels.
PSNR: 10 log10(255^2 / MSE) over all pixels and channels, float64; identical images give inf.
SSIM: Wang et al. 2004 as in their MATLAB code: 11x11 Gaussian window (sigma 1.5), 'valid' filtering
(no border padding), C1 = (0.01*255)^2, C2 = (0.03*255)^2, float64, averaged per channel.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

# MATLAB rgb2ycbcr (BT.601 studio swing): Y = 16 + 65.481 R + 128.553 G + 24.966 B for R, G, B in [0, 1]
_Y_WEIGHTS_BGR = np.array([24.966, 128.553, 65.481])


def bgr_to_y(img: np.ndarray) -> np.ndarray:
    """Y channel of YCbCr (BT.601, MATLAB's rgb2ycbcr) of a BGR image in [0, 255]: HxW float64 in [16, 235].

    The float32/float64 steps follow BasicSR's `to_y_channel`, so values on a .5 boundary round the
    same way when NIQE rounds them."""
    unit = np.asarray(img).astype(np.float32) / np.float32(255.0)
    y = unit.astype(np.float64) @ _Y_WEIGHTS_BGR + 16.0
    return ((y / 255.0).astype(np.float32) * np.float32(255.0)).astype(np.float64)


def _prepare(img: np.ndarray, crop_border: int, test_y_channel: bool) -> np.ndarray:
    img = np.asarray(img)
    if crop_border:
        img = img[crop_border:-crop_border, crop_border:-crop_border, ...]
    if test_y_channel and img.ndim == 3 and img.shape[2] == 3:
        return bgr_to_y(img)[..., None]
    img = img.astype(np.float64)
    return img if img.ndim == 3 else img[..., None]


def _check_pair(img: np.ndarray, reference: np.ndarray) -> None:
    if reference is None:
        raise ValueError("this metric compares with a reference image: pass reference=...")
    if np.shape(img) != np.shape(reference):
        raise ValueError(f"image shapes differ: {np.shape(img)} vs reference {np.shape(reference)}; resize first")


def psnr(img: np.ndarray, reference: np.ndarray, crop_border: int = 0, test_y_channel: bool = False) -> float:
    """Peak signal-to-noise ratio in dB (higher is better; inf for identical images)."""
    _check_pair(img, reference)
    a, b = _prepare(img, crop_border, test_y_channel), _prepare(reference, crop_border, test_y_channel)
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0 * 255.0 / mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    g = np.exp(-0.5 * ((np.arange(size) - (size - 1) / 2) / sigma) ** 2)
    g /= g.sum()
    return np.outer(g, g)


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel SSIM of two single-channel float64 images ('valid' region: 10 px smaller per axis)."""
    window = _gaussian_window()
    r = window.shape[0] // 2

    def local_mean(x: np.ndarray) -> np.ndarray:
        # filter2D correlates; the window is symmetric so this is the convolution. Cropping r px per
        # side keeps only outputs whose window lies inside the image ('valid').
        return cv2.filter2D(x, -1, window, borderType=cv2.BORDER_REFLECT_101)[r:-r, r:-r]

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = local_mean(a), local_mean(b)
    var_a = local_mean(a * a) - mu_a**2
    var_b = local_mean(b * b) - mu_b**2
    cov_ab = local_mean(a * b) - mu_a * mu_b
    return ((2 * mu_a * mu_b + c1) * (2 * cov_ab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))


def ssim(img: np.ndarray, reference: np.ndarray, crop_border: int = 0, test_y_channel: bool = False) -> float:
    """Structural similarity in [-1, 1] (higher is better), the mean over channels of the mean SSIM map."""
    _check_pair(img, reference)
    a, b = _prepare(img, crop_border, test_y_channel), _prepare(reference, crop_border, test_y_channel)
    if min(a.shape[:2]) <= 10:
        raise ValueError(f"SSIM needs images larger than 11x11 after cropping, got {a.shape[:2]}")
    return float(np.mean([ssim_map(a[..., c], b[..., c]).mean() for c in range(a.shape[2])]))
