"""Facial component boxes (left eye, right eye, nose, mouth) of an aligned face, from its landmarks.

Boxes are [x1, y1, x2, y2] ("left" = image left) in the aligned face's pixels. DFDNet's official test
script gets them from 68 landmarks (`part_locations_from_landmarks68`, its `get_part_location`); the
face pipeline has 5 landmarks, so `part_locations_from_landmarks5` places the boxes with proportions
calibrated to reproduce the 68-point boxes of a typical aligned face (within 1-2 px on DFDNet's golden
cases). DFDNet's network and GFP-GAN's facial-component losses both use them.
"""
from __future__ import annotations

import numpy as np

PARTS = ("left_eye", "right_eye", "nose", "mouth")

# iBUG 68-point indices of each component, as in the official get_part_location.
LANDMARKS68_PARTS = {
    "left_eye": list(range(17, 22)) + list(range(36, 42)),  # brow + eye
    "right_eye": list(range(22, 27)) + list(range(42, 48)),
    "nose": list(range(29, 36)),
    "mouth": list(range(48, 68)),
}
MIN_HALF_SIZE_512 = 16  # the official lower bound of a box's half side, in 512 px

# Box of each component from the 5 points, in units of the eye distance d, in the face frame
# (x along the eye line, image-left to image-right; y perpendicular, downwards). Calibrated on the
# golden 68-point layout: the eye box holds brow + eye (centre 0.112 d above the eye, half side 0.33
# d), the nose box the points 29-35 (centre 0.083 d below the tip), the mouth box spans the corners.
EYE_OUTWARD, EYE_UP, EYE_HALF = 0.010, 0.112, 0.330
NOSE_DOWN, NOSE_HALF = 0.083, 0.185
MOUTH_DOWN, MOUTH_HALF_OF_WIDTH = 0.007, 0.5


def _boxes_from_centres(centres: np.ndarray, halves: np.ndarray) -> np.ndarray:
    """The official box rule: int-cast (truncation) of [cx-L+1, cy-L+1, cx+L, cy+L]."""
    halves = halves[..., None]
    return np.concatenate([centres - halves + 1, centres + halves], axis=-1).astype(np.int64)


def part_locations_from_landmarks68(landmarks: np.ndarray) -> np.ndarray:
    """Official `get_part_location`: (68,2) or (N,68,2) iBUG landmarks in 512 px -> (4,4) or (N,4,4)
    int64 boxes [x1,y1,x2,y2] (left eye, right eye, nose, mouth).

    Centre = mean of the component's points; half side L = max(largest x/y extent / 2, 16)."""
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape[-2:] != (68, 2):
        raise ValueError(f"expected 68 landmarks of shape (68, 2) or (N, 68, 2), got {points.shape}")
    centres, halves = [], []
    for part in PARTS:
        group = points[..., LANDMARKS68_PARTS[part], :]
        centres.append(group.mean(axis=-2))
        extent = (group.max(axis=-2) - group.min(axis=-2)).max(axis=-1)
        halves.append(np.maximum(extent / 2, MIN_HALF_SIZE_512))
    return _boxes_from_centres(np.stack(centres, axis=-2), np.stack(halves, axis=-1))


def part_locations_from_landmarks5(landmarks: np.ndarray, size: int = 512) -> np.ndarray:
    """Component boxes from the 5 points (left eye, right eye, nose, left and right mouth corner) of
    an aligned face of `size` px: (5,2) or (N,5,2) -> (4,4) or (N,4,4) int64 [x1,y1,x2,y2] in the
    same pixel frame, clipped to the image.

    Same box rule as the 68-point path (square, truncated, half side >= 16 px at 512), with centres
    and sizes placed relative to the eyes/nose/mouth as on a typical face (see the constants above)."""
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape[-2:] != (5, 2):
        raise ValueError(f"expected 5 landmarks of shape (5, 2) or (N, 5, 2), got {points.shape}")
    left_eye, right_eye, nose, mouth_left, mouth_right = (points[..., i, :] for i in range(5))
    axis_x = right_eye - left_eye
    eye_distance = np.linalg.norm(axis_x, axis=-1, keepdims=True)
    axis_x = axis_x / np.maximum(eye_distance, 1e-6)
    axis_y = np.stack([-axis_x[..., 1], axis_x[..., 0]], axis=-1)  # x rotated +90 deg: image "down"
    d = eye_distance
    centres = np.stack([
        left_eye - EYE_OUTWARD * d * axis_x - EYE_UP * d * axis_y,
        right_eye + EYE_OUTWARD * d * axis_x - EYE_UP * d * axis_y,
        nose + NOSE_DOWN * d * axis_y,
        (mouth_left + mouth_right) / 2 + MOUTH_DOWN * d * axis_y,
    ], axis=-2)
    mouth_width = np.linalg.norm(mouth_right - mouth_left, axis=-1)
    d = d[..., 0]
    halves = np.stack([EYE_HALF * d, EYE_HALF * d, NOSE_HALF * d, MOUTH_HALF_OF_WIDTH * mouth_width], axis=-1)
    halves = np.maximum(halves, MIN_HALF_SIZE_512 * size / 512)
    return np.clip(_boxes_from_centres(centres, halves), 0, size)
