"""NIQE, the no-reference "naturalness" score (Mittal et al. 2013; lower is better), computed as
BasicSR's `calculate_niqe` does so that numbers match the papers that report it.

Steps: Y channel of MATLAB's YCbCr (or gray), rounded to integers; crop to whole 96x96 blocks; at
two scales (full, then MATLAB-style bicubic imresize x0.5 with antialiasing) normalise the image
by its local mean and contrast (7x7 Gaussian window, MSCN coefficients), fit per block a
generalised Gaussian to the coefficients and asymmetric generalised Gaussians to the products of
neighbours in 4 directions (18 features per scale); NIQE is the Mahalanobis-like distance between
the blocks' multivariate Gaussian and the pristine model (mu, cov) fitted on natural images.

The pristine model file `niqe_pris_params.npz` (mu_pris_param, cov_pris_param, gaussian_window)
is BasicSR's; it is looked up like model weights (see `NIQE_URL`).
"""
from __future__ import annotations

import math
import os

import cv2
import numpy as np
from scipy.ndimage import convolve
from scipy.special import gamma
import torch

from .pixel import bgr_to_y
from .weights import metric_weights_path

NIQE_FILE = "niqe_pris_params.npz"
NIQE_URL = "https://raw.githubusercontent.com/XPixelGroup/BasicSR/master/basicsr/metrics/niqe_pris_params.npz"
BLOCK = 96

# Shape parameters searched when fitting (A)GGDs, and the ratio r(alpha) they give.
_ALPHAS = np.arange(0.2, 10.001, 0.001)
_R_ALPHA = gamma(2 / _ALPHAS) ** 2 / (gamma(1 / _ALPHAS) * gamma(3 / _ALPHAS))


def load_pristine_params(weights: str | os.PathLike | None = None, download: bool = True) -> dict[str, np.ndarray]:
    """The pristine model (mu_pris_param, cov_pris_param, gaussian_window) from a local file, the
    cache, $FACERESTORE_NIQE_PARAMS, or a download."""
    path = metric_weights_path("niqe", NIQE_FILE, NIQE_URL, weights, env="FACERESTORE_NIQE_PARAMS",
                               download=download)
    with np.load(path) as data:
        return {key: np.asarray(data[key], np.float64)
                for key in ("mu_pris_param", "cov_pris_param", "gaussian_window")}


# ----------------------------------------------------------------------------------------------
# MATLAB imresize (bicubic, antialiased when shrinking)
# ----------------------------------------------------------------------------------------------
def _cubic(x: np.ndarray) -> np.ndarray:
    a = np.abs(x)
    return ((1.5 * a**3 - 2.5 * a**2 + 1) * (a <= 1)
            + (-0.5 * a**3 + 2.5 * a**2 - 4 * a + 2) * ((a > 1) & (a <= 2)))


def matlab_resize_taps(in_length: int, out_length: int, scale: float,
                       antialias: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB's bicubic resampling along one axis: (weights (out, taps), input indices (out, taps)).

    Indices are 0-based and may fall outside [0, in_length): MATLAB mirrors those (symmetric
    padding, -1 -> 0). Taps whose weight is zero for every output are dropped."""
    stretch = scale < 1 and antialias  # widen the kernel to low-pass before shrinking
    width = 4.0 / scale if stretch else 4.0
    centers = np.arange(1, out_length + 1) / scale + 0.5 * (1 - 1 / scale)  # 1-based input coordinates
    first = np.floor(centers - width / 2)
    taps = first[:, None] + np.arange(math.ceil(width) + 2)[None, :]
    distance = centers[:, None] - taps
    weights = scale * _cubic(distance * scale) if stretch else _cubic(distance)
    weights /= weights.sum(axis=1, keepdims=True)
    used = ~(weights == 0).all(axis=0)
    return weights[:, used], taps[:, used].astype(np.int64) - 1


def _resize_axis(img: torch.Tensor, axis: int, weights: np.ndarray, index: np.ndarray) -> torch.Tensor:
    """Resample one axis of a 2-D float32 tensor with MATLAB taps (mirrored borders)."""
    n = img.shape[axis]
    before, after = max(0, -int(index.min())), max(0, int(index.max()) - n + 1)
    mirror = np.arange(-before, n + after)
    mirror = np.where(mirror < 0, -mirror - 1, mirror)
    mirror = np.where(mirror >= n, 2 * n - 1 - mirror, mirror)
    padded = img.index_select(axis, torch.from_numpy(mirror))
    w = torch.from_numpy(np.ascontiguousarray(weights, dtype=np.float32))  # unit-stride rows, as BasicSR
    starts = index[:, 0] + before
    taps = weights.shape[1]
    if axis == 0:
        return torch.stack([padded[s:s + taps].T.mv(w[k]) for k, s in enumerate(starts)])
    return torch.stack([padded[:, s:s + taps].mv(w[k]) for k, s in enumerate(starts)], dim=1)


@torch.no_grad()
def matlab_imresize(img: np.ndarray, scale: float, antialias: bool = True) -> np.ndarray:
    """MATLAB `imresize(img, scale)` (bicubic) of a 2-D image, in float32; output ceil(size * scale).

    Each output value is a float32 `torch.mv` over its input taps, rows first, then columns, with
    the memory layout of BasicSR's `imresize`. NIQE's float32 local variance amplifies last-bit
    differences of the half-size image (by up to ~0.01 in the score), so following the same
    arithmetic is what makes our NIQE agree with BasicSR's."""
    h, w = img.shape
    x = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))
    x = _resize_axis(x, 0, *matlab_resize_taps(h, math.ceil(h * scale), scale, antialias))
    x = _resize_axis(x, 1, *matlab_resize_taps(w, math.ceil(w * scale), scale, antialias))
    return x.numpy()


# ----------------------------------------------------------------------------------------------
# Features
# ----------------------------------------------------------------------------------------------
def _rms(values: np.ndarray) -> np.floating:
    return np.sqrt(np.mean(values**2)) if values.size else np.float32(np.nan)


def fit_aggd(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Moment-matching fit of an asymmetric generalised Gaussian to each row of `samples` (N, M):
    (alpha, beta_left, beta_right). A side without samples gives NaN spreads and alpha 0.2, as in
    BasicSR. Rows are fitted one by one with float32 means over the selected values, the
    arithmetic of the reference implementation (NIQE's covariance amplifies last-bit changes)."""
    fitted = np.empty((len(samples), 3))
    for n, row in enumerate(samples):
        left_std, right_std = _rms(row[row < 0]), _rms(row[row > 0])
        with np.errstate(invalid="ignore", divide="ignore"):
            gamma_hat = left_std / right_std
            r_hat = np.mean(np.abs(row)) ** 2 / np.mean(row**2)
            r_hat_norm = r_hat * (gamma_hat**3 + 1) * (gamma_hat + 1) / (gamma_hat**2 + 1) ** 2
        alpha = _ALPHAS[np.argmin((_R_ALPHA - r_hat_norm) ** 2)]
        spread = np.sqrt(gamma(1 / alpha) / gamma(3 / alpha))
        fitted[n] = alpha, left_std * spread, right_std * spread
    return fitted[:, 0], fitted[:, 1], fitted[:, 2]


def block_features(blocks: np.ndarray) -> np.ndarray:
    """18 NIQE features of each normalised block (N, h, w): GGD shape and spread of the coefficients,
    then AGGD shape, mean and both spreads of the products with the neighbour in 4 directions
    (neighbours wrap around inside the block)."""
    n = len(blocks)
    alpha, beta_l, beta_r = fit_aggd(blocks.reshape(n, -1))
    features = [alpha, (beta_l + beta_r) / 2]
    for shift in ((0, 1), (1, 0), (1, 1), (1, -1)):
        products = blocks * np.roll(blocks, shift, axis=(1, 2))
        alpha, beta_l, beta_r = fit_aggd(products.reshape(n, -1))
        with np.errstate(invalid="ignore"):
            mean = (beta_r - beta_l) * gamma(2 / alpha) / gamma(1 / alpha)
        features += [alpha, mean, beta_l, beta_r]
    return np.stack(features, axis=1)


def _to_blocks(img: np.ndarray, size: int) -> np.ndarray:
    rows, cols = img.shape[0] // size, img.shape[1] // size
    return img[:rows * size, :cols * size].reshape(rows, size, cols, size).transpose(0, 2, 1, 3).reshape(-1, size, size)


def niqe_of_luma(luma: np.ndarray, params: dict[str, np.ndarray]) -> float:
    """NIQE of a 2-D image in [0, 255] (already rounded Y or gray)."""
    h, w = luma.shape
    if (h // BLOCK) * (w // BLOCK) < 2:  # the blocks' covariance needs two of them
        raise ValueError(f"NIQE needs at least two whole {BLOCK}x{BLOCK} blocks (e.g. 192x96 pixels), got {w}x{h}")
    # float32 like BasicSR: the local variance E[x^2] - E[x]^2 loses digits in float32 and NIQE is
    # sensitive to it (about 0.02 on real faces), so the reference numbers need the same precision.
    img = luma[:h // BLOCK * BLOCK, :w // BLOCK * BLOCK].astype(np.float32)
    window = params["gaussian_window"]
    per_scale = []
    for scale in (1, 2):
        mu = convolve(img, window, mode="nearest")  # float32 in -> float32 out
        sigma = np.sqrt(np.abs(convolve(img * img, window, mode="nearest") - mu * mu))
        normalised = (img - mu) / (sigma + 1)
        per_scale.append(block_features(_to_blocks(normalised, BLOCK // scale)))
        if scale == 1:
            img = matlab_imresize(img / np.float32(255.0), 0.5) * np.float32(255.0)
    features = np.concatenate(per_scale, axis=1)
    mu_dist = np.nanmean(features, axis=0)
    cov_dist = np.cov(features[~np.isnan(features).any(axis=1)], rowvar=False)
    difference = params["mu_pris_param"].reshape(-1) - mu_dist
    inverse = np.linalg.pinv((params["cov_pris_param"] + cov_dist) / 2)
    return float(np.sqrt(difference @ inverse @ difference))


def niqe(img: np.ndarray, crop_border: int = 0, convert_to: str = "y", weights: str | os.PathLike | None = None,
         params: dict[str, np.ndarray] | None = None, download: bool = True) -> float:
    """NIQE of a BGR (HxWx3) or gray (HxW) image in [0, 255]; lower is better.

    convert_to: "y" (MATLAB YCbCr luma, BasicSR's default) or "gray" (cv2 BGR->gray).
    weights / params: the pristine model file, or the already loaded parameters.
    """
    if params is None:
        params = load_pristine_params(weights, download)
    img = np.asarray(img)
    if img.ndim == 3:
        if convert_to == "y":
            luma = bgr_to_y(img)
        elif convert_to == "gray":
            luma = cv2.cvtColor(img.astype(np.float32) / np.float32(255.0), cv2.COLOR_BGR2GRAY) * np.float32(255.0)
        else:
            raise ValueError(f"convert_to must be 'y' or 'gray', got {convert_to!r}")
    else:
        luma = img.astype(np.float64)
    if crop_border:
        luma = luma[crop_border:-crop_border, crop_border:-crop_border]
    return niqe_of_luma(np.round(luma), params)



class NIQE:
    """NIQE with the pristine model loaded once; `metric(img)` (a reference, if given, is ignored)."""

    def __init__(self, crop_border: int = 0, convert_to: str = "y", weights: str | os.PathLike | None = None,
                 download: bool = True) -> None:
        self.params = load_pristine_params(weights, download)
        self.crop_border, self.convert_to = crop_border, convert_to

    def __call__(self, restored: np.ndarray, reference: np.ndarray | None = None) -> float:
        return niqe(restored, self.crop_border, self.convert_to, params=self.params)
