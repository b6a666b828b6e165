"""Paste restored faces back into a photo with a feathered mask.

Each face is warped back and blended only within its own bounding region of the background (not the
whole image), so a photo with N faces costs N small warps and blends.
"""
from __future__ import annotations

import functools

import cv2
import numpy as np

from .align import invert_affine


@functools.lru_cache(maxsize=8)
def feather_mask(size: int, margin: float = 0.06, softness: float = 0.03) -> np.ndarray:
    """(size, size) float32 weights: 1 in the middle of the crop, falling smoothly to 0 at its border."""
    mask = np.zeros((size, size), np.float32)
    m = max(1, round(size * margin))
    mask[m:size - m, m:size - m] = 1.0
    sigma = max(0.5, size * softness)
    mask = cv2.GaussianBlur(mask, (0, 0), sigma)
    mask[mask > 0.999] = 1.0  # exactly 1 in the core, so a face that is not changed there comes back unchanged
    mask.setflags(write=False)
    return mask


def paste_faces(background: np.ndarray, faces: np.ndarray, affines: np.ndarray) -> np.ndarray:
    """Composite restored faces onto `background` (later faces over earlier ones where they overlap).

    background: (H, W, 3) uint8; faces: (N, S, S, 3) uint8; affines: (N, 2, 3) mapping background
    pixels to crop pixels (the alignment transforms, composed with any background scaling, see
    `resize_affine`). Only each face's bounding region is warped and blended, so the cost grows with
    the faces' area, not with N x the photo; pixels outside every face mask are returned unchanged.
    """
    out = background.copy()
    h, w = background.shape[:2]
    for face, affine in zip(faces, np.asarray(affines).reshape(-1, 2, 3)):
        size = face.shape[0]
        inverse = invert_affine(affine)  # crop -> background
        corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64) @ inverse[:, :2].T + inverse[:, 2]
        x0, y0 = np.floor(corners.min(0)).astype(int) - 1
        x1, y1 = np.ceil(corners.max(0)).astype(int) + 1
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if x1 <= x0 or y1 <= y0:
            continue  # the face lies entirely outside the background
        local = inverse.copy()
        local[:, 2] -= (x0, y0)  # warp straight into the region of interest
        roi = (x1 - x0, y1 - y0)
        face_back = cv2.warpAffine(face, local, roi, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        mask = cv2.warpAffine(feather_mask(size), local, roi, flags=cv2.INTER_LINEAR, borderValue=0)[..., None]
        region = out[y0:y1, x0:x1].astype(np.float32)
        region += mask * (face_back.astype(np.float32) - region)
        out[y0:y1, x0:x1] = np.clip(region.round(), 0, 255).astype(np.uint8)
    return out


def resize_affine(src_shape: tuple[int, ...], dst_shape: tuple[int, ...]) -> np.ndarray:
    """(3, 3) map from pixels of a resized image (`dst_shape`, e.g. the upscaled background) to pixels of
    the original (`src_shape`), with cv2.resize's pixel-centre convention: x_src = (x_dst + 0.5) * sx - 0.5.

    Compose it with an alignment affine (`affine @ resize_affine(img.shape, background.shape)`) to paste
    onto a resized background; a plain diag(sx, sy) shifts the faces by (1 - sx) / 2 pixels.
    """
    sy, sx = src_shape[0] / dst_shape[0], src_shape[1] / dst_shape[1]
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])
