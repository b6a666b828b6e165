"""Image input/output: every supported input becomes an HxWx3 BGR uint8 array (the cv2 convention),
with what is needed to give the result back in the input's form (alpha, bit depth, grayscale).

Accepted inputs:
- numpy arrays: HxW (gray), HxWx1, HxWx3 (BGR, or RGB with `color_order="rgb"`), HxWx4 (BGRA/RGBA);
  uint8, uint16 (16-bit: scaled to 8 bit for the network, back to 16 bit on output) or float in [0, 1];
- file paths (str / Path), read with cv2 (unicode paths included);
- PIL images (their RGB/RGBA/L data is converted to BGR).
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable

import cv2
import numpy as np

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


class ImageError(ValueError):
    """An input is not a usable image; the message says which and why."""


@dataclass
class ImageInfo:
    """How the original input looked, so the output can be given back in the same form."""

    alpha: np.ndarray | None = None  # HxW uint8/uint16 alpha channel, kept aside
    gray: bool = False
    dtype: np.dtype = np.dtype(np.uint8)


def read_image(path: str | os.PathLike, flags: int = cv2.IMREAD_UNCHANGED) -> np.ndarray:
    """Read an image file as cv2 does (BGR/BGRA/gray, any bit depth); clear error if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    data = np.fromfile(str(path), dtype=np.uint8)  # works for non-ASCII paths, unlike cv2.imread
    img = cv2.imdecode(data, flags) if data.size else None
    if img is None:
        raise ImageError(f"{path}: not a readable image (corrupt or unsupported format)")
    return img


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> Path:
    """`write(file)` into a temporary file beside `path`, flush it to disk, then rename it over `path`:
    readers see the old file or the complete new one, never a partial write."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_image(path: str | os.PathLike, img: np.ndarray, params: list[int] | None = None) -> Path:
    """Encode by the file extension and write atomically (see write_atomic)."""
    ext = Path(path).suffix.lower() or ".png"
    ok, buf = cv2.imencode(ext, img, params or [])
    if not ok:
        raise ImageError(f"could not encode an image as {ext}")
    return write_atomic(path, lambda f: f.write(buf.tobytes()))


def to_bgr_uint8(img: Any, color_order: str = "bgr") -> tuple[np.ndarray, ImageInfo]:
    """Any supported input -> (HxWx3 BGR uint8 array, ImageInfo to restore the input's form)."""
    if isinstance(img, (str, os.PathLike)):
        img = read_image(img)
        color_order = "bgr"
    elif type(img).__module__.startswith("PIL."):
        mode = img.mode
        img = np.asarray(img.convert("RGBA" if "A" in mode else ("L" if mode in ("L", "1", "I;16") else "RGB")))
        color_order = "rgb"
    if hasattr(img, "detach"):  # a torch tensor: CHW or HWC, values in [0, 1]
        img = img.detach().cpu().numpy()
        if img.ndim == 3 and img.shape[0] in (1, 3, 4) and img.shape[-1] not in (1, 3, 4):
            img = img.transpose(1, 2, 0)
    if not isinstance(img, np.ndarray):
        raise ImageError(f"unsupported image type {type(img).__name__}: pass a numpy array, a path or a PIL image")
    if img.ndim not in (2, 3) or img.size == 0 or (img.ndim == 3 and img.shape[2] not in (1, 3, 4)):
        raise ImageError(f"expected an HxW, HxWx3 or HxWx4 image, got shape {img.shape}")
    info = ImageInfo(dtype=img.dtype)
    if img.dtype == np.uint16:
        img = (img.astype(np.float32) / 257.0).round().astype(np.uint8)
    elif np.issubdtype(img.dtype, np.floating):
        img = (np.clip(img, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ImageError(f"unsupported pixel type {img.dtype}: use uint8, uint16 or float in [0, 1]")
    if img.ndim == 2 or img.shape[2] == 1:
        info.gray = True
        return cv2.cvtColor(img.reshape(img.shape[:2]), cv2.COLOR_GRAY2BGR), info
    if img.shape[2] == 4:
        info.alpha = img[:, :, 3].copy()
        img = img[:, :, :3]
    if color_order == "rgb":
        img = img[:, :, ::-1]
    elif color_order != "bgr":
        raise ValueError(f"color_order must be 'bgr' or 'rgb', got {color_order!r}")
    return np.ascontiguousarray(img), info


def from_bgr_uint8(img: np.ndarray, info: ImageInfo, color_order: str = "bgr") -> np.ndarray:
    """Give a BGR uint8 result back in the form of the original input (gray, alpha, 16 bit, float)."""
    out = img
    if info.gray:
        out = cv2.cvtColor(out, cv2.COLOR_BGR2GRAY)
    elif color_order == "rgb":
        out = out[:, :, ::-1]
    if info.alpha is not None and not info.gray:
        alpha = info.alpha
        if alpha.shape[:2] != out.shape[:2]:
            alpha = cv2.resize(alpha, (out.shape[1], out.shape[0]), interpolation=cv2.INTER_LINEAR)
        if alpha.dtype == np.uint16:
            alpha = (alpha.astype(np.float32) / 257.0).round().astype(np.uint8)
        elif np.issubdtype(alpha.dtype, np.floating):
            alpha = (np.clip(alpha, 0, 1) * 255).round().astype(np.uint8)
        out = np.concatenate([out, alpha[:, :, None]], axis=2)
    if info.dtype == np.uint16:
        out = out.astype(np.uint16) * 257
    elif np.issubdtype(info.dtype, np.floating):
        out = out.astype(np.float32) / 255.0
    return np.ascontiguousarray(out)


def list_images(inputs: list[str | os.PathLike]) -> list[Path]:
    """Files given directly, plus every image file (by extension) inside given folders, sorted."""
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
        else:
            files.append(p)
    return files
