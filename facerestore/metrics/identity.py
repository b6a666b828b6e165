"""Identity preservation with ArcFace (Deng et al. 2019): "IDS" (cosine similarity of the
embeddings of the restored face and the ground truth, higher is better) and "Deg." (the angle
between them in degrees, lower is better; the identity distance reported by GFP-GAN).

The recognition network is facexlib's ArcFace IR-SE50 (`facexlib.recognition.arcface_arch.Backbone`,
weights `recognition_arcface_ir_se50.pth` from facexlib's releases), loaded from a local file found
through facerestore.metrics.weights: facexlib's own loader would download into its package folder.
Faces are warped to ArcFace's 112x112 5-point template (InsightFace), RGB in [-1, 1]. Inputs are
aligned faces by default (their landmarks are the alignment template's points, no detection);
with `template=None` the landmarks come from the face detector instead.
"""
from __future__ import annotations

import math
import os

import numpy as np
import torch

from .. import hub
from .perceptual import image_to_unit_tensor
from .weights import metric_weights_path

ARCFACE_FILE = "recognition_arcface_ir_se50.pth"
ARCFACE_URL = "https://github.com/xinntao/facexlib/releases/download/v0.1.0/" + ARCFACE_FILE
ARCFACE_SIZE = 112


def face_landmarks(img: np.ndarray, template_name: str | None, detector, detect_size: int | None = 320,
                   score_threshold: float = 0.5) -> np.ndarray | None:
    """5 landmarks of the face in `img`: the alignment template's points scaled to the image when
    it is an aligned face (`template_name`), else the most confident detection (None if no face),
    run on a copy whose long side is `detect_size` (320 suits aligned crops: the face, ~60% of the
    crop, is then ~190 px, inside every RetinaFace's anchor sizes; None: the detector's default,
    sized for whole photos). The threshold is lower than for photos: the image is known to hold a
    face and only the most confident detection is used."""
    if template_name is not None:
        from ..face.align import template

        h, w = img.shape[:2]
        return template(template_name, h) * np.array([w / h, 1.0], np.float32)
    detections = detector.detect(img, score_threshold=score_threshold, detect_size=detect_size)
    if len(detections.scores) == 0:
        return None
    return np.asarray(detections.landmarks[int(np.argmax(detections.scores))], np.float32)


class ArcFaceEmbedding:
    """ArcFace embeddings of faces; shared by the `ids` and `deg` metrics.

    weights: the ArcFace IR-SE50 file (default: $FACERESTORE_ARCFACE_WEIGHTS, the cache, a download).
    template: alignment template of the input faces ("ffhq" for FFHQ-aligned crops; None: detect).
    detector / detector_weights: the face detector used when template is None.
    """

    def __init__(self, weights: str | os.PathLike | None = None, device: str | torch.device | None = None,
                 template: str | None = "ffhq", detector: str = "retinaface-resnet50",
                 detector_weights: str | os.PathLike | None = None, download: bool = True) -> None:
        from facexlib.recognition.arcface_arch import Backbone

        path = metric_weights_path("ids", ARCFACE_FILE, ARCFACE_URL, weights, env="FACERESTORE_ARCFACE_WEIGHTS",
                                   download=download)
        net = Backbone(num_layers=50, drop_ratio=0.6, mode="ir_se")
        hub.load_weights(net, path)
        self.device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.net = net.to(self.device).eval()
        self.template = template
        self.detector = None
        if template is None:
            from ..face.detect import load_detector

            self.detector = load_detector(detector, weights=detector_weights, device=self.device)

    @torch.inference_mode()
    def embed(self, img: np.ndarray) -> torch.Tensor | None:
        """(512,) unit-length embedding of the face in a BGR uint8 image (None if no face is found)."""
        from ..face.align import estimate_affine, gpen_reference, warp_faces

        points = face_landmarks(img, self.template, self.detector)
        if points is None:
            return None
        # ArcFace's 112x112 template (InsightFace) is the 96x112 reference made square, without padding
        affine = estimate_affine(points, gpen_reference(ARCFACE_SIZE, inner_padding_factor=0.0))
        crop = warp_faces(img, affine[None], ARCFACE_SIZE)[0]
        return self.net(image_to_unit_tensor(crop, self.device))[0]

    def cosine(self, restored: np.ndarray, reference: np.ndarray) -> float:
        if reference is None:
            raise ValueError("identity metrics compare with a reference face: pass reference=...")
        a, b = self.embed(restored), self.embed(reference)
        if a is None or b is None:
            return math.nan
        return float(torch.dot(a, b).clamp(-1.0, 1.0).item())


class IdentitySimilarity(ArcFaceEmbedding):
    """IDS: cosine similarity of ArcFace embeddings (1 = same embedding; higher is better)."""

    def __call__(self, restored: np.ndarray, reference: np.ndarray) -> float:
        return self.cosine(restored, reference)


class IdentityAngle(ArcFaceEmbedding):
    """Deg.: angle between ArcFace embeddings in degrees (0 = same; lower is better)."""

    def __call__(self, restored: np.ndarray, reference: np.ndarray) -> float:
        return math.degrees(math.acos(self.cosine(restored, reference)))
