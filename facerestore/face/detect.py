"""Face detection with 5-point landmarks: RetinaFace.

The network is assembled from facexlib's RetinaFace building blocks (same module names, so its
released checkpoints load strictly); prior boxes, decoding and NMS are ours, because the prior
configuration differs between checkpoints (the "Face-Detector-1MB" mobilenet0.25 file was trained
with smaller priors than facexlib hard-codes). Images are detected on a resized copy and the results
mapped back to the input's pixels.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torchvision
from torch import nn

MEAN_BGR = (104.0, 117.0, 123.0)
# multi-scale merge: a box lying at least this much (fraction of the smaller box's area) inside a
# higher-scoring one is the same face found at another scale with another size; IoU-NMS keeps such pairs
# (a box nested in one twice its area has IoU 0.5 at most, often under 0.4)
NESTED_OVERLAP = 0.5


@dataclass
class Detections:
    """Faces found in one image, sorted by score (highest first)."""

    boxes: np.ndarray  # (N, 4) float32 x1, y1, x2, y2 in input pixels
    scores: np.ndarray  # (N,) float32
    landmarks: np.ndarray  # (N, 5, 2) float32: left eye, right eye, nose, left/right mouth corner (image order)

    def __len__(self) -> int:
        return len(self.scores)

    def select(self, index) -> "Detections":
        return Detections(self.boxes[index], self.scores[index], self.landmarks[index])


class RetinaFaceNet(nn.Module):
    """RetinaFace: backbone (mobilenet0.25 or resnet50) -> FPN -> SSH -> class/box/landmark heads.

    forward(x) returns (box deltas (B,P,4), face probability (B,P), landmark deltas (B,P,10)) for the
    P prior boxes, in prior order (level, row, column, anchor).
    """

    def __init__(self, backbone: str = "resnet50") -> None:
        super().__init__()
        from facexlib.detection.retinaface_net import (FPN, SSH, MobileNetV1, make_bbox_head, make_class_head,
                                                       make_landmark_head)
        from torchvision.models._utils import IntermediateLayerGetter

        if backbone == "mobilenet0.25":
            body, layers, in_channels, out_channels = MobileNetV1(), {"stage1": 1, "stage2": 2, "stage3": 3}, 32, 64
        elif backbone == "resnet50":
            body = torchvision.models.resnet50(weights=None)
            layers, in_channels, out_channels = {"layer2": 1, "layer3": 2, "layer4": 3}, 256, 256
        else:
            raise ValueError(f"unknown RetinaFace backbone {backbone!r} (mobilenet0.25 or resnet50)")
        self.body = IntermediateLayerGetter(body, layers)
        self.fpn = FPN([in_channels * 2, in_channels * 4, in_channels * 8], out_channels)
        self.ssh1 = SSH(out_channels, out_channels)
        self.ssh2 = SSH(out_channels, out_channels)
        self.ssh3 = SSH(out_channels, out_channels)
        self.ClassHead = make_class_head(fpn_num=3, inchannels=out_channels)
        self.BboxHead = make_bbox_head(fpn_num=3, inchannels=out_channels)
        self.LandmarkHead = make_landmark_head(fpn_num=3, inchannels=out_channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        fpn = self.fpn(list(self.body(x).values()))
        features = [self.ssh1(fpn[0]), self.ssh2(fpn[1]), self.ssh3(fpn[2])]
        boxes = torch.cat([head(f) for head, f in zip(self.BboxHead, features)], dim=1)
        logits = torch.cat([head(f) for head, f in zip(self.ClassHead, features)], dim=1)
        landmarks = torch.cat([head(f) for head, f in zip(self.LandmarkHead, features)], dim=1)
        return boxes, logits.softmax(-1)[..., 1], landmarks


def prior_boxes(height: int, width: int, min_sizes, steps) -> torch.Tensor:
    """(P, 4) priors cx, cy, w, h normalised to the image, ordered level, row, column, anchor."""
    priors = []
    for sizes, step in zip(min_sizes, steps):
        rows, cols = -(-height // step), -(-width // step)
        cy, cx = torch.meshgrid((torch.arange(rows) + 0.5) * step / height,
                                (torch.arange(cols) + 0.5) * step / width, indexing="ij")
        for_level = [torch.stack([cx, cy, torch.full_like(cx, s / width), torch.full_like(cy, s / height)], -1)
                     for s in sizes]
        priors.append(torch.stack(for_level, dim=2).reshape(-1, 4))
    return torch.cat(priors)


def decode(deltas: torch.Tensor, landmark_deltas: torch.Tensor, priors: torch.Tensor,
           variances=(0.1, 0.2)) -> tuple[torch.Tensor, torch.Tensor]:
    """Box (x1,y1,x2,y2) and landmark (5,2) positions, normalised, from the regression outputs."""
    centres = priors[:, :2] + deltas[:, :2] * variances[0] * priors[:, 2:]
    sizes = priors[:, 2:] * torch.exp(deltas[:, 2:] * variances[1])
    boxes = torch.cat([centres - sizes / 2, centres + sizes / 2], dim=1)
    landmarks = priors[:, None, :2] + landmark_deltas.view(-1, 5, 2) * variances[0] * priors[:, None, 2:]
    return boxes, landmarks


class FaceDetector:
    """A RetinaFace network with its prior configuration and detection defaults (from its zoo entry)."""

    def __init__(self, net: RetinaFaceNet, entry, device=None, precision: str = "fp32") -> None:
        if precision != "fp32":
            raise ValueError(f"{entry.name} runs in fp32 only, not {precision!r}")
        self.entry = entry
        self.name = entry.name
        self.device = torch.device(device or "cpu")
        self.net = net.to(self.device).eval()
        self.min_sizes, self.steps, self.variances = entry.min_sizes, entry.steps, entry.variances
        self.detect_size = entry.detect_size
        self.score_threshold = entry.score_threshold
        # multi-scale: smallest face side (px) a copy answers for, but the largest copy; None: every copy
        # answers for every face and one NMS merges them
        self.min_face = entry.min_face

    def to(self, device) -> "FaceDetector":
        self.device = torch.device(device)
        self.net.to(self.device)
        return self

    def __repr__(self) -> str:
        return f"FaceDetector({self.name!r}, detect_size={self.detect_size}, device={str(self.device)!r})"

    def detect(self, img_bgr: np.ndarray, score_threshold: float | None = None, nms_threshold: float = 0.4,
               detect_size: int | tuple[int, ...] | None = None, min_eye_distance: float = 5.0) -> Detections:
        """Faces in a BGR uint8 image, boxes and landmarks in its pixels (see detect_batch)."""
        return self.detect_batch([img_bgr], score_threshold, nms_threshold, detect_size, min_eye_distance)[0]

    @torch.inference_mode()
    def detect_batch(self, images: list[np.ndarray], score_threshold: float | None = None,
                     nms_threshold: float = 0.4, detect_size: int | tuple[int, ...] | None = None,
                     min_eye_distance: float = 5.0) -> list[Detections]:
        """Detect in several images. `detect_size` (default: the detector's) is the long side of the
        resized copy detection runs on; a tuple runs several scales and merges them (small faces are
        found at the larger sizes, large faces at the smaller ones): with one NMS over all copies, then
        dropping boxes nested in a higher-scoring one, or, when the detector has a `min_face`, by giving
        each copy one band of face sizes. Copies of the same shape share one forward."""
        threshold = self.score_threshold if score_threshold is None else score_threshold
        sizes = detect_size if detect_size is not None else self.detect_size
        sizes = sorted(sizes) if isinstance(sizes, (tuple, list)) else (sizes,)
        jobs = [(i, *self._prepare(img, size), rank) for i, img in enumerate(images) for rank, size in enumerate(sizes)]
        found: list[list[tuple[torch.Tensor, ...]]] = [[] for _ in images]
        by_shape: dict[tuple[int, int], list[int]] = {}
        for j, (_, x, _, _) in enumerate(jobs):
            by_shape.setdefault(tuple(x.shape[-2:]), []).append(j)
        for (h, w), members in by_shape.items():
            batch = torch.cat([jobs[j][1] for j in members]).to(self.device)
            deltas, scores, landmark_deltas = self.net(batch)
            priors = prior_boxes(h, w, self.min_sizes, self.steps).to(self.device)
            scale = torch.tensor([w, h], dtype=torch.float32, device=self.device)
            for k, j in enumerate(members):
                keep = scores[k] > threshold
                boxes, landmarks = decode(deltas[k][keep], landmark_deltas[k][keep], priors[keep], self.variances)
                boxes, landmarks, score = boxes * scale.repeat(2), landmarks * scale, scores[k][keep]
                resize = jobs[j][2]
                if len(sizes) > 1 and self.min_face is not None:
                    # each scale answers only for its own band of face sizes, so one face is never
                    # reported twice: copy i keeps faces of at least `min_face` px, except the largest
                    # copy, and faces smaller than what copy i-1 would have kept, except the smallest.
                    rank = jobs[j][3]
                    side = torch.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
                    low = self.min_face if rank < len(sizes) - 1 else 0.0
                    high = self.min_face * sizes[rank] / sizes[rank - 1] if rank > 0 else float("inf")
                    ok = (side >= low) & (side < high)
                    boxes, landmarks, score = boxes[ok], landmarks[ok], score[ok]
                found[jobs[j][0]].append((boxes / resize, landmarks / resize, score))
        nested = NESTED_OVERLAP if len(sizes) > 1 else None
        return [self._merge(parts, nms_threshold, min_eye_distance, nested) for parts in found]

    @staticmethod
    def _merge(parts: list[tuple[torch.Tensor, ...]], nms_threshold: float, min_eye_distance: float,
               nested_overlap: float | None = None) -> Detections:
        boxes, landmarks, scores = (torch.cat([p[i] for p in parts]).float() for i in range(3))
        order = torchvision.ops.nms(boxes, scores, nms_threshold)  # sorted by score
        boxes, landmarks, scores = (t[order].cpu().numpy().astype(np.float32) for t in (boxes, landmarks, scores))
        if nested_overlap is not None and len(boxes) > 1:
            keep = _drop_nested(boxes, nested_overlap)
            boxes, landmarks, scores = boxes[keep], landmarks[keep], scores[keep]
        eyes = np.linalg.norm(landmarks[:, 0] - landmarks[:, 1], axis=1) >= min_eye_distance
        return Detections(boxes[eyes], scores[eyes], landmarks[eyes])

    def _prepare(self, img: np.ndarray, target: int | None) -> tuple[torch.Tensor, float]:
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"detect() takes an HxWx3 BGR uint8 image, got {img.dtype} {img.shape}")
        resize = 1.0
        if target:
            resize = target / max(img.shape[:2])
            if resize != 1.0:
                img = cv2.resize(img, None, fx=resize, fy=resize,
                                 interpolation=cv2.INTER_AREA if resize < 1 else cv2.INTER_LINEAR)
        x = torch.from_numpy(img).permute(2, 0, 1).float() - torch.tensor(MEAN_BGR).view(3, 1, 1)
        return x[None], resize


def _drop_nested(boxes: np.ndarray, overlap: float) -> np.ndarray:
    """Indices of the boxes (sorted by score) to keep: each box whose intersection with a kept,
    higher-scoring box covers at least `overlap` of the smaller of the two is dropped."""
    corner_min = np.maximum(boxes[:, None, :2], boxes[None, :, :2])
    corner_max = np.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = np.clip(corner_max - corner_min, 0, None).prod(-1)
    area = (boxes[:, 2:] - boxes[:, :2]).prod(-1)
    nested = inter >= overlap * np.minimum(area[:, None], area[None, :])
    keep: list[int] = []
    for i in range(len(boxes)):
        if not nested[i, keep].any():
            keep.append(i)
    return np.array(keep, dtype=np.int64)


def load_detector(name: str = "retinaface-resnet50", weights: str | os.PathLike | None = None,
                  device=None, pretrained: bool = True, progress: bool = True) -> FaceDetector:
    """A face detector from the zoo (task "detect"), weights from `weights` (file/folder/URL) or the hub."""
    from ..api import build_model
    from ..registry import DetectorEntry, get_entry

    entry = get_entry(name)
    if not isinstance(entry, DetectorEntry):
        raise ValueError(f"{entry.name} is not a face detector (task {entry.task!r}); "
                         f"see `facerestore models --task detect`")
    net = build_model(entry, weights=weights, pretrained=pretrained, progress=progress)
    return FaceDetector(net, entry, device=device)
