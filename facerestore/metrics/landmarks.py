"""LMD, the landmark distance (lower is better): how far the facial landmarks of the restored face
are from those of the ground truth.

Landmarks are the face detector's 5 points (eye centres, nose tip, mouth corners; RetinaFace via
facerestore.face), of the most confident face in each image; LMD is their mean Euclidean distance
in pixels of the evaluated images. (Papers that use a 68-point landmark model report other
numbers; this one needs no extra network.) NaN when a face is not found in either image.
"""
from __future__ import annotations

import math
import os

import numpy as np
import torch

from .identity import face_landmarks


class LandmarkDistance:
    """LMD in pixels with a loaded detector; `metric(restored, reference)`.

    detect_size / score_threshold: the long side of the copy the detector runs on (320 suits aligned
    faces; None: the detector's default, sized for whole photos) and the detection threshold (0.5:
    the most confident face is used); see face_landmarks."""

    def __init__(self, detector: str = "retinaface-resnet50", detector_weights: str | os.PathLike | None = None,
                 device: str | torch.device | None = None, detect_size: int | None = 320,
                 score_threshold: float = 0.5) -> None:
        from ..face.detect import load_detector

        self.detector = load_detector(detector, weights=detector_weights, device=device)
        self.detect_size, self.score_threshold = detect_size, score_threshold

    def landmarks(self, img: np.ndarray) -> np.ndarray | None:
        return face_landmarks(img, None, self.detector, self.detect_size, self.score_threshold)

    def __call__(self, restored: np.ndarray, reference: np.ndarray) -> float:
        if reference is None:
            raise ValueError("LMD compares with a reference face: pass reference=...")
        a, b = self.landmarks(restored), self.landmarks(reference)
        if a is None or b is None:
            return math.nan
        return float(np.linalg.norm(a - b, axis=1).mean())
