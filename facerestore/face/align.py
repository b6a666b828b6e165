"""5-point face alignment: per-model landmark templates and similarity warps (pure functions on arrays).

Landmark order everywhere: left eye, right eye, nose tip, left mouth corner, right mouth corner, as
they appear in the image (image-left first), in pixel coordinates.
"""
from __future__ import annotations

import cv2
import numpy as np

# GFP-GAN / facexlib template for a 512x512 FFHQ-aligned face; scaled linearly for other sizes.
FFHQ_512 = np.array([[192.98138, 239.94708], [318.90277, 240.1936], [256.63416, 314.01935],
                     [201.26117, 371.41043], [313.08905, 371.15118]])

# The 96x112 reference points of the SphereFace/ArcFace alignment that GPEN starts from.
REFERENCE_96x112 = np.array([[30.29459953, 51.69630051], [65.53179932, 51.50139999], [48.02519989, 71.73660278],
                             [33.54930115, 92.3655014], [62.72990036, 92.20410156]])

BORDER_VALUE = (135, 133, 132)  # the grey GFP-GAN fills outside the photo with


def gpen_reference(size: int, inner_padding_factor: float = 0.25) -> np.ndarray:
    """GPEN's alignment target: `get_reference_facial_points((size, size), inner_padding_factor=0.25,
    outer_padding=(0, 0), default_square=True)`.

    default_square shifts the 96x112 points right by 8 px so they sit in a 112x112 square; inner
    padding grows that square by 2 x 0.25 of its side (to 168 px) with the points moved to its
    centre; the result is scaled to `size`.
    """
    crop = 112.0
    points = REFERENCE_96x112 + [(crop - 96.0) / 2, 0.0]
    pad = crop * inner_padding_factor * 2
    points = points + pad / 2
    crop += round(pad)
    return points * (size / crop)


def template(name: str, size: int) -> np.ndarray:
    """(5, 2) landmark positions of template `name` ("ffhq" or "gpen") in a size x size crop."""
    if name == "ffhq":
        return FFHQ_512 * (size / 512.0)
    if name == "gpen":
        return gpen_reference(size)
    raise KeyError(f"unknown alignment template {name!r}; known: ffhq, gpen")


def estimate_affine(landmarks: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Similarity transform (rotation, uniform scale, translation) taking `landmarks` onto `dst`, (2, 3).

    Uses OpenCV's LMEDS fit as GFP-GAN's face helper does, so crops match the official ones; falls
    back to the exact least-squares (Umeyama) fit when LMEDS finds no solution.
    """
    src = np.asarray(landmarks, np.float64).reshape(-1, 2)
    dst = np.asarray(dst, np.float64).reshape(-1, 2)
    affine = cv2.estimateAffinePartial2D(src, dst, method=cv2.LMEDS)[0]
    return affine if affine is not None else umeyama(src, dst)


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform src -> dst (Umeyama 1991), (2, 3)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    u, sigma, vt = np.linalg.svd(d.T @ s / len(src))
    sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt))])
    rotation = u @ sign @ vt
    scale = (sigma * np.diag(sign)).sum() / s.var(0).sum()
    return np.hstack([scale * rotation, (mu_d - scale * rotation @ mu_s)[:, None]])


def warp_faces(img: np.ndarray, affines: np.ndarray, size: int) -> np.ndarray:
    """Aligned crops (N, size, size, C) of `img` under each (2, 3) affine (image -> crop)."""
    crops = [cv2.warpAffine(img, a, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                            borderValue=BORDER_VALUE) for a in np.asarray(affines).reshape(-1, 2, 3)]
    return np.stack(crops) if crops else np.zeros((0, size, size) + img.shape[2:], img.dtype)


def transform_points(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine to (..., 2) points."""
    return np.asarray(points) @ np.asarray(affine)[:, :2].T + np.asarray(affine)[:, 2]


def invert_affine(affine: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(np.asarray(affine, np.float64))
