"""Face parsing for paste-back masks: label maps from ParseNet / BiSeNet, and the soft face masks that
facexlib (GFP-GAN, CodeFormer, RestoreFormer) and GPEN build from them.

Pre-processing per network, as the official code does it:
- parsenet (facexlib helper / demo): resize to 512 (INTER_LINEAR), float32 / 255, BGR -> RGB,
  (x - 0.5) / 0.5; labels = argmax of the first output (the parsing logits).
- bisenet (facexlib demo `inference_parsing.py`): resize to 512 (INTER_LINEAR), float32 / 255,
  BGR -> RGB, ImageNet (x - mean) / std; labels = argmax of the first (main) output.
- GPEN (face_parse/face_parsing.py, used by `gpen_masks`): resize to 512 (INTER_LINEAR), BGR -> RGB,
  x / 255. * 2 - 1 computed in float64, then float32.

Masks:
- `face_masks` (facexlib `paste_faces_to_input_image(use_parse=True)`): labels -> 0/255 with
  FACEXLIB_FACE_LABELS (ParseNet order: everything but background, hat, necklace, neck, cloth),
  float64, GaussianBlur 101x101 sigma 11 twice, a 10 px border set to 0, / 255.
- `gpen_masks` (GPEN `FaceEnhancement.process` + `mask_postprocess`): labels -> 0/255 with
  GPEN_FACE_LABELS (GPEN's colormap also keeps necklace and neck), uint8, / 255., a 26 px border set
  to 0, GaussianBlur 101x101 sigma 4 twice, float32.
For BiSeNet the same face parts are selected through its own label order (BISENET_TO_PARSENET).
"""
from __future__ import annotations

import os
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

PARSE_SIZE = 512

# ParseNet label order: 0 background, 1 skin, 2 nose, 3 eyeglasses, 4 l_eye, 5 r_eye, 6 l_brow, 7 r_brow,
# 8 l_ear, 9 r_ear, 10 mouth, 11 u_lip, 12 l_lip, 13 hair, 14 hat, 15 earring, 16 necklace, 17 neck, 18 cloth
FACEXLIB_FACE_LABELS = np.array([0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 0, 0], bool)
GPEN_FACE_LABELS = np.array([0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 0], bool)
# BiSeNet label k is ParseNet label BISENET_TO_PARSENET[k] (0 bg, 1 skin, 2 l_brow, 3 r_brow, 4 l_eye,
# 5 r_eye, 6 eyeglasses, 7 l_ear, 8 r_ear, 9 earring, 10 nose, 11 mouth, 12 u_lip, 13 l_lip, 14 neck,
# 15 necklace, 16 cloth, 17 hair, 18 hat)
BISENET_TO_PARSENET = np.array([0, 1, 6, 7, 4, 5, 3, 8, 9, 15, 2, 10, 11, 12, 17, 16, 18, 13, 14])

NORMALIZATION = {"parsenet": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
                 "bisenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))}


def _as_batch(faces: np.ndarray) -> np.ndarray:
    faces = np.asarray(faces)
    if faces.ndim == 3:
        faces = faces[None]
    if faces.ndim != 4 or faces.shape[-1] != 3 or faces.dtype != np.uint8:
        raise ValueError(f"faces must be BGR uint8, (N, S, S, 3) or one (S, S, 3) face; got {faces.dtype} "
                         f"{faces.shape}")
    return faces


def _resize_512(faces: np.ndarray) -> np.ndarray:
    if faces.shape[1:3] == (PARSE_SIZE, PARSE_SIZE):
        return faces
    return np.stack([cv2.resize(f, (PARSE_SIZE, PARSE_SIZE), interpolation=cv2.INTER_LINEAR) for f in faces])


def _blur_101(mask: np.ndarray, sigma: float) -> np.ndarray:
    mask = cv2.GaussianBlur(mask, (101, 101), sigma)
    return cv2.GaussianBlur(mask, (101, 101), sigma)


def _zero_border(mask: np.ndarray, width: int) -> np.ndarray:
    mask[:width, :] = 0
    mask[-width:, :] = 0
    mask[:, :width] = 0
    mask[:, -width:] = 0
    return mask


def face_parts(labels: np.ndarray, kind: str, face_labels: np.ndarray) -> np.ndarray:
    """Boolean map: which pixels of a label map (in `kind`'s label order) are in `face_labels` (ParseNet order)."""
    if kind == "bisenet":
        face_labels = face_labels[BISENET_TO_PARSENET]
    return face_labels[labels]


def facexlib_mask(labels: np.ndarray, kind: str = "parsenet") -> np.ndarray:
    """facexlib's paste mask from one (512, 512) label map: face parts 255 else 0 (float64), GaussianBlur
    101x101 sigma 11 twice, a 10 px border set to 0, / 255. float64, as facexlib computes it.

    float64 because facexlib builds and warps it in float64 (np.zeros default); pass it unchanged to
    facerestore.face.paste.paste_parse for bit-exact paste-back."""
    mask = _blur_101(np.where(face_parts(labels, kind, FACEXLIB_FACE_LABELS), 255.0, 0.0), 11)
    return _zero_border(mask, 10) / 255.0


def gpen_mask(labels: np.ndarray, kind: str = "parsenet") -> np.ndarray:
    """GPEN's paste mask from one (512, 512) label map: face parts (GPEN's set) 255 else 0 as uint8, / 255.,
    a 26 px border set to 0, GaussianBlur 101x101 sigma 4 twice, float32."""
    mask = np.where(face_parts(labels, kind, GPEN_FACE_LABELS), 255, 0).astype(np.uint8) / 255.0
    return _blur_101(_zero_border(mask, 26), 4).astype(np.float32)


class FaceParser:
    """A parsing network (`kind` "parsenet" or "bisenet") with its official pre-processing.

    `net` is a facerestore.archs ParseNet / BiSeNet (or any module with `parse_logits(x)` or whose
    first output is the logits), weights loaded. Faces are processed `batch_size` at a time under
    torch.inference_mode on `device` (default: the net's).
    """

    def __init__(self, net: nn.Module, kind: Any, device=None, batch_size: int = 4, precision: str = "fp32") -> None:
        self.entry = kind if hasattr(kind, "family") else None  # a zoo entry (when built by load())
        kind = getattr(kind, "name", kind)
        if precision != "fp32":
            raise ValueError(f"face parsers run in fp32, not {precision!r}")
        if kind not in NORMALIZATION:
            raise ValueError(f"unknown face parser kind {kind!r}; known: {', '.join(NORMALIZATION)}")
        self.kind = kind
        self.device = torch.device(device) if device is not None else next(net.parameters()).device
        self.net = net.to(self.device).eval()
        self.batch_size = batch_size

    def __repr__(self) -> str:
        return f"FaceParser({self.kind!r}, device={str(self.device)!r})"

    def to(self, device) -> "FaceParser":
        self.device = torch.device(device)
        self.net.to(self.device)
        return self

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self.net, "parse_logits"):
            return self.net.parse_logits(x)
        return self.net(x)[0]

    def preprocess(self, faces: np.ndarray) -> torch.Tensor:
        """(N, 3, 512, 512) float32 network input on the parser's device (official normalisation)."""
        faces = _resize_512(_as_batch(faces))
        x = torch.from_numpy(np.ascontiguousarray(faces[..., ::-1])).to(self.device)  # BGR -> RGB
        x = x.permute(0, 3, 1, 2).float() / 255.0
        mean, std = NORMALIZATION[self.kind]
        mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        return (x - mean) / std

    @torch.inference_mode()
    def _labels_of(self, inputs: torch.Tensor) -> np.ndarray:
        return self._logits(inputs).argmax(dim=1).cpu().numpy()

    def parse(self, faces: np.ndarray) -> np.ndarray:
        """(N, 512, 512) int64 label maps (in the network's own label order) of BGR uint8 faces."""
        faces = _as_batch(faces)
        maps = [self._labels_of(self.preprocess(faces[i:i + self.batch_size]))
                for i in range(0, len(faces), self.batch_size)]
        return np.concatenate(maps) if maps else np.zeros((0, PARSE_SIZE, PARSE_SIZE), np.int64)

    def face_masks(self, faces: np.ndarray) -> np.ndarray:
        """facexlib's paste mask of each face: (N, 512, 512) float64 in [0, 1] (see `facexlib_mask`)."""
        masks = [facexlib_mask(labels, self.kind) for labels in self.parse(faces)]
        return np.stack(masks) if masks else np.zeros((0, PARSE_SIZE, PARSE_SIZE))

    def gpen_preprocess(self, faces: np.ndarray) -> torch.Tensor:
        """GPEN's own network input: x / 255. * 2 - 1 in float64 (RGB), then float32."""
        faces = _resize_512(_as_batch(faces))
        x = faces[..., ::-1].transpose(0, 3, 1, 2) / 255.0 * 2 - 1
        return torch.from_numpy(np.ascontiguousarray(x)).float().to(self.device)

    def gpen_masks(self, faces: np.ndarray) -> np.ndarray:
        """GPEN's paste mask of each face: (N, 512, 512) float32 in [0, 1] (26 px border zeroed, then
        GaussianBlur 101x101 sigma 4 twice). Meant for the GPEN parsing net (kind "parsenet")."""
        faces = _as_batch(faces)
        labels = [self._labels_of(self.gpen_preprocess(faces[i:i + self.batch_size]))
                  for i in range(0, len(faces), self.batch_size)]
        masks = [gpen_mask(m, self.kind) for m in (np.concatenate(labels) if labels else [])]
        return np.stack(masks) if masks else np.zeros((0, PARSE_SIZE, PARSE_SIZE), np.float32)


def load_parser(name: str = "parsenet", weights: str | os.PathLike | None = None, device=None,
                pretrained: bool = True, progress: bool = True) -> FaceParser:
    """A face parser from the zoo (task "parse"), weights from `weights` (file/folder/URL) or the hub;
    `pretrained=False` builds it untrained (no file read)."""
    from ..api import build_model
    from ..registry import get_entry

    entry = get_entry(name)
    if entry.task != "parse":
        raise ValueError(f"{entry.name} is not a face parser (task {entry.task!r}); "
                         "see `facerestore models --task parse`")
    net = build_model(entry, weights=weights, pretrained=pretrained, progress=progress)
    return FaceParser(net, entry, device=device or "cpu")
