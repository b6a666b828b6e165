"""Torch datasets of face pairs for training and evaluation.

Each item is a dict: "lq" and "hq" as float tensors (3, S, S), RGB in [-1, 1] (the range the zoo's
networks take), "name" (the file's path relative to its folder, without extension) and, for
degraded datasets, "params" (the sampled degradation as a JSON string, collatable).

- PairedFolderDataset: lq/ and hq/ folders matched by file name.
- DegradedFolderDataset: an HQ-only folder degraded on the fly with a preset; the degradation of
  item i in epoch e is fixed by (seed, i, e), whatever the worker or machine.
Both can align unaligned photos to the FFHQ template first (`align=True`, needs a face detector).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .. import convert
from ..imageio import list_images, read_image, to_bgr_uint8
from .degradations import Preset, apply, apply_target, get_preset, resize_square, sample_params, to_uint8


def image_to_tensor(img: np.ndarray) -> torch.Tensor:
    """BGR uint8 HxWx3 -> float tensor (3, H, W), RGB in [-1, 1]."""
    return convert.image_to_tensor(img)


def tensor_to_image(tensor: torch.Tensor) -> np.ndarray:
    """Float tensor (3, H, W), RGB in [-1, 1] -> BGR uint8 HxWx3 (clamped, rounded)."""
    return np.ascontiguousarray(convert.tensor_to_image(tensor.cpu()))


class FaceAligner:
    """Aligns the most confident face of a photo to a 5-point template ("ffhq", or "gpen" for GPEN: the
    template of the model being trained, so training crops are framed as restore() frames its inputs),
    with a detector built on first use."""

    def __init__(self, size: int, detector: str = "retinaface-resnet50", detector_weights: str | None = None,
                 device: str | None = None, template: str = "ffhq") -> None:
        self.size, self.template_name = size, template
        self.detector_name, self.detector_weights, self.device = detector, detector_weights, device
        self._detector = None

    def affine(self, img: np.ndarray, name: str = "image") -> np.ndarray:
        """(2, 3) affine, photo pixels -> crop pixels, of the photo's most confident face."""
        from ..face.align import estimate_affine, template
        from ..face.detect import load_detector

        if self._detector is None:
            self._detector = load_detector(self.detector_name, weights=self.detector_weights, device=self.device)
        detections = self._detector.detect(img)
        if len(detections.scores) == 0:
            raise ValueError(f"{name}: no face found to align (pass align=False for already aligned faces)")
        best = int(np.argmax(detections.scores))
        return estimate_affine(detections.landmarks[best], template(self.template_name, self.size))

    def __call__(self, img: np.ndarray, name: str = "image") -> np.ndarray:
        return self.warp(img, self.affine(img, name))

    def warp(self, img: np.ndarray, affine: np.ndarray) -> np.ndarray:
        from ..face.align import warp_faces

        return warp_faces(img, np.asarray(affine)[None], self.size)[0]

    def align_pair(self, lq: np.ndarray, hq: np.ndarray, name: str = "image") -> tuple[np.ndarray, np.ndarray]:
        """Both images of a pair cropped with the HQ photo's alignment (scaled to the LQ's size when it
        differs), so the crops stay pixel-aligned: a detection on the degraded LQ would frame it slightly
        differently."""
        affine = self.affine(hq, name)
        scale = np.diag([hq.shape[1] / lq.shape[1], hq.shape[0] / lq.shape[0], 1.0])  # LQ px -> HQ px
        # pixel centres: x_hq + 0.5 = s (x_lq + 0.5), as cv2.resize maps them
        scale[:2, 2] = [(scale[0, 0] - 1) / 2, (scale[1, 1] - 1) / 2]
        return self.warp(lq, affine @ scale), self.warp(hq, affine)


def _relative_key(path: Path, root: Path) -> str:
    return path.relative_to(root).with_suffix("").as_posix()


def _index_folder(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    index: dict[str, Path] = {}
    for path in list_images([folder]):
        key = _relative_key(path, folder)
        if key in index:
            raise ValueError(f"{folder}: {index[key].name} and {path.name} have the same name; keep one")
        index[key] = path
    if not index:
        raise FileNotFoundError(f"{folder} holds no images")
    return index


def match_pairs(lq_dir: str | os.PathLike, hq_dir: str | os.PathLike) -> list[tuple[str, Path, Path]]:
    """(name, lq path, hq path) for files of the same name (extension aside) in both folders, sorted.
    A name found in only one folder is an error that lists them."""
    lq, hq = _index_folder(Path(lq_dir)), _index_folder(Path(hq_dir))
    only_lq, only_hq = sorted(set(lq) - set(hq)), sorted(set(hq) - set(lq))
    if only_lq or only_hq:
        def show(names: list[str]) -> str:
            return ", ".join(names[:10]) + (f" (+{len(names) - 10} more)" if len(names) > 10 else "") or "-"

        raise ValueError(f"lq and hq folders do not match: only in {lq_dir}: {show(only_lq)}; "
                         f"only in {hq_dir}: {show(only_hq)}")
    return [(key, lq[key], hq[key]) for key in sorted(lq)]


class PairedFolderDataset(Dataset):
    """Real or pre-made pairs: `root/lq` and `root/hq` (or explicit `lq_dir`, `hq_dir`), matched by name.

    size: resize both to size x size (None keeps them; they must then share a size to be batched).
    align: crop both images of a pair with the HQ photo's face alignment first (its most confident
        face, on `template`; LQ photos may be smaller than their HQ: the alignment is scaled to them).
    """

    def __init__(self, root: str | os.PathLike | None = None, *, lq_dir: str | os.PathLike | None = None,
                 hq_dir: str | os.PathLike | None = None, size: int | None = None, align: bool = False,
                 detector: str = "retinaface-resnet50", detector_weights: str | None = None,
                 template: str = "ffhq") -> None:
        if root is not None:
            lq_dir = lq_dir or Path(root) / "lq"
            hq_dir = hq_dir or Path(root) / "hq"
        if lq_dir is None or hq_dir is None:
            raise ValueError("give root (holding lq/ and hq/) or both lq_dir and hq_dir")
        self.pairs = match_pairs(lq_dir, hq_dir)
        self.size = size
        self.aligner = FaceAligner(size or 512, detector, detector_weights, template=template) if align else None

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> tuple[str, np.ndarray, np.ndarray]:
        """(name, lq BGR uint8, hq BGR uint8) of one pair, resized/aligned as configured."""
        name, lq_path, hq_path = self.pairs[index]
        lq, _ = to_bgr_uint8(read_image(lq_path))
        hq, _ = to_bgr_uint8(read_image(hq_path))
        if self.aligner is not None:
            lq, hq = self.aligner.align_pair(lq, hq, str(hq_path))
        return name, resize_square(lq, self.size), resize_square(hq, self.size)

    def __getitem__(self, index: int) -> dict[str, Any]:
        name, lq, hq = self.load(index)
        return {"lq": image_to_tensor(lq), "hq": image_to_tensor(hq), "name": name}


class DegradedFolderDataset(Dataset):
    """HQ faces degraded on the fly: item i of epoch e uses `np.random.default_rng([seed, i, e])`.

    Call `set_epoch(e)` at the start of each epoch to draw new degradations (like a
    DistributedSampler); the same (seed, index, epoch) always gives the same pair.
    size: the HQ is resized (or aligned, with align=True) to size x size before degrading, so the
        degradation acts at the resolution the network is trained on.
    """

    def __init__(self, hq_dir: str | os.PathLike, preset: str | Preset = "gfpgan", size: int | None = 512,
                 seed: int = 0, *, align: bool = False, detector: str = "retinaface-resnet50",
                 detector_weights: str | None = None, template: str = "ffhq") -> None:
        root = Path(hq_dir)
        self.files = sorted(_index_folder(root).items())
        self.preset = get_preset(preset)
        self.size, self.seed, self.epoch = size, int(seed), 0
        self.aligner = FaceAligner(size or 512, detector, detector_weights, template=template) if align else None

    def __len__(self) -> int:
        return len(self.files)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def load(self, index: int) -> tuple[str, np.ndarray, np.ndarray, dict]:
        """(name, lq BGR uint8, hq BGR uint8, parameters) of one item in the current epoch."""
        name, path = self.files[index]
        hq, _ = to_bgr_uint8(read_image(path))
        hq = self.aligner(hq, str(path)) if self.aligner is not None else resize_square(hq, self.size)
        rng = np.random.default_rng([self.seed, index, self.epoch])
        params = sample_params(self.preset, rng, hq.shape[:2])
        lq = to_uint8(apply(hq, params))
        return name, lq, to_uint8(apply_target(hq, params)), params

    def __getitem__(self, index: int) -> dict[str, Any]:
        name, lq, hq, params = self.load(index)
        return {"lq": image_to_tensor(lq), "hq": image_to_tensor(hq), "name": name, "params": json.dumps(params)}
