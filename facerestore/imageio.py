"""Image input/output: every supported input becomes an HxWx3 BGR uint8 array (the cv2 convention),
with what is needed to give the result back in the input's form (alpha, bit depth, grayscale).

Accepted inputs:
- numpy arrays: HxW (gray), HxWx1, HxWx3 (BGR, or RGB with `color_order="rgb"`), HxWx4 (BGRA/RGBA);
  uint8, uint16 (16-bit: scaled to 8 bit for the network, back to 16 bit on output) or float in [0, 1];
- file paths (str / Path), read with cv2 (unicode paths included) upright: the EXIF orientation is
  applied as `cv2.imread` does by default, for JPEG, PNG, WebP and TIFF alike;
- PIL images (their RGB/RGBA/L data is converted to BGR).

Anything else raises ImageTypeError (a TypeError), a missing file ImageNotFoundError (a
FileNotFoundError), and a bad file or array ImageError (a ValueError), each saying what is expected.
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
# Formats whose encoder keeps 16-bit samples (cv2 would saturate them to 8 bit elsewhere).
_SIXTEEN_BIT_EXTENSIONS = (".png", ".tif", ".tiff")
_EXIF_ORIENTATION = 0x0112


class ImageError(ValueError):
    """An input is not a usable image; the message says which and why."""


class ImageTypeError(ImageError, TypeError):
    """An input of a type that is not an image at all (None, a list, ...)."""


class ImageNotFoundError(ImageError, FileNotFoundError):
    """An image path that does not exist."""


@dataclass
class ImageInfo:
    """How the original input looked, so the output can be given back in the same form."""

    alpha: np.ndarray | None = None  # HxW uint8/uint16 alpha channel, kept aside
    gray: bool = False
    dtype: np.dtype = np.dtype(np.uint8)
    channel_axis: bool = False  # gray given as HxWx1 (given back as HxWx1, not HxW)


def _oriented(img: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to decoded pixels, so the result is upright as displayed."""
    transforms = {
        2: lambda a: a[:, ::-1],  # mirrored left-right
        3: lambda a: a[::-1, ::-1],  # rotated 180
        4: lambda a: a[::-1],  # mirrored top-bottom
        5: lambda a: a.swapaxes(0, 1),  # transposed
        6: lambda a: a.swapaxes(0, 1)[:, ::-1],  # stored rotated: turn 90 degrees clockwise
        7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],  # transversed
        8: lambda a: a.swapaxes(0, 1)[::-1],  # turn 90 degrees counter-clockwise
    }
    transform = transforms.get(orientation)
    return img if transform is None else np.ascontiguousarray(transform(img))


def exif_orientation(data: bytes | np.ndarray) -> int:
    """The EXIF orientation tag (1-8) of an encoded image, 1 when absent or unreadable.

    Only files that carry EXIF at all (JPEG/WebP "Exif", PNG "eXIf", any TIFF) are opened with
    Pillow, which reads the header without decoding the pixels."""
    raw = data.tobytes() if isinstance(data, np.ndarray) else bytes(data)
    is_tiff = raw[:4] in (b"II*\x00", b"MM\x00*")
    if not (is_tiff or b"Exif" in raw or b"eXIf" in raw or b"EXIF" in raw):
        return 1
    try:
        import io
        import warnings

        from PIL import Image

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(raw)) as pil:
                value = int(pil.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # unreadable metadata: the pixels are still usable as stored
        return 1
    return value if 1 <= value <= 8 else 1


def _looks_truncated(data: np.ndarray) -> bool:
    """A JPEG whose last scan is not followed by the end-of-image marker was cut off (libjpeg would
    decode it anyway and fill the rest with gray)."""
    raw = data.tobytes()
    if raw[:2] != b"\xff\xd8":
        return False
    last_scan = raw.rfind(b"\xff\xda")
    return last_scan < 0 or b"\xff\xd9" not in raw[last_scan:]


def read_image(path: str | os.PathLike, flags: int = cv2.IMREAD_UNCHANGED) -> np.ndarray:
    """Read an image file as cv2 does (BGR/BGRA/gray, any bit depth), upright: the EXIF orientation
    is applied, as `cv2.imread` does by default. Errors name the file and say what is wrong:
    ImageNotFoundError (missing), ImageError (a folder, unreadable, empty, truncated, not an image)."""
    if not isinstance(path, (str, os.PathLike)):
        raise ImageTypeError(f"expected an image file path (str or Path), got {type(path).__name__}")
    path = Path(path)
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image file")
    if not path.exists():
        raise ImageNotFoundError(f"{path}: no such file")
    try:
        data = np.fromfile(str(path), dtype=np.uint8)  # works for non-ASCII paths, unlike cv2.imread
    except OSError as exc:  # permissions, a vanished file, I/O errors
        raise ImageError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    if not data.size:
        raise ImageError(f"{path}: empty file, not an image")
    if _looks_truncated(data):
        raise ImageError(f"{path}: truncated JPEG (the file ends before the image does); copy it again")
    # cv2 rotates JPEG/PNG/WebP by their EXIF orientation for IMREAD_COLOR/GRAYSCALE but not for
    # IMREAD_UNCHANGED: decode as stored and apply the orientation here. Its TIFF decoder always
    # applies the orientation itself.
    is_tiff = data[:4].tobytes() in (b"II*\x00", b"MM\x00*")
    apply_orientation = not is_tiff and (flags < 0 or not flags & cv2.IMREAD_IGNORE_ORIENTATION)
    decode_flags = flags if flags < 0 else flags | cv2.IMREAD_IGNORE_ORIENTATION
    try:
        img = cv2.imdecode(data, decode_flags)
    except cv2.error as exc:
        raise ImageError(f"{path}: not a readable image ({str(exc).strip().splitlines()[-1]})") from exc
    if img is None or img.size == 0:
        raise ImageError(f"{path}: not a readable image (corrupt or unsupported format)")
    return _oriented(img, exif_orientation(data)) if apply_orientation else img


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> Path:
    """`write(file)` into a temporary file beside `path`, flush it to disk, then rename it over `path`:
    readers see the old file or the complete new one, never a partial write. The temporary file is
    removed on any failure, Ctrl-C (KeyboardInterrupt) included."""
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


def encodable(img: np.ndarray, ext: str) -> np.ndarray:
    """`img` in a form the format `ext` stores faithfully: float in [0, 1] becomes 8 bit (TIFF keeps
    float), 16 bit becomes 8 bit where the format has no 16-bit samples (JPEG, WebP, BMP), and JPEG
    drops an alpha channel. cv2 would otherwise saturate 16-bit/float values instead of scaling them."""
    ext = ext.lower()
    if np.issubdtype(img.dtype, np.floating) and ext not in (".tif", ".tiff"):
        img = (np.clip(np.nan_to_num(img), 0.0, 1.0) * 255.0).round().astype(np.uint8)
    elif img.dtype == np.uint16 and ext not in _SIXTEEN_BIT_EXTENSIONS:
        img = (img.astype(np.float32) / 257.0).round().astype(np.uint8)
    if ext in (".jpg", ".jpeg") and img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    return img


def write_image(path: str | os.PathLike, img: np.ndarray, params: list[int] | None = None) -> Path:
    """Encode by the file extension (see `encodable`) and write atomically (see write_atomic)."""
    ext = Path(path).suffix.lower() or ".png"
    try:
        ok, buf = cv2.imencode(ext, encodable(np.asarray(img), ext), params or [])
    except cv2.error as exc:
        raise ImageError(f"could not encode an image of shape {np.shape(img)} as {ext}") from exc
    if not ok:
        raise ImageError(f"could not encode an image as {ext}")
    return write_atomic(path, lambda f: f.write(buf.tobytes()))


_EXPECTED = ("an HxW (gray), HxWx1, HxWx3 (BGR) or HxWx4 (BGRA) array of uint8, uint16 or float in [0, 1], "
             "an image file path or a PIL image")


def _pil_to_array(img: Any) -> np.ndarray:
    """A PIL image as an RGB/RGBA/gray uint8 array (palette transparency becomes alpha)."""
    mode = img.mode
    if "A" in mode or (mode == "P" and "transparency" in img.info):
        target = "RGBA"
    elif mode in ("L", "1", "I;16"):
        target = "L"
    else:
        target = "RGB"
    return np.asarray(img.convert(target))


def to_bgr_uint8(img: Any, color_order: str = "bgr") -> tuple[np.ndarray, ImageInfo]:
    """Any supported input -> (HxWx3 BGR uint8 array, ImageInfo to restore the input's form).

    Raises ImageTypeError (a TypeError) for things that are not images, ImageNotFoundError for a
    missing path, and ImageError (a ValueError) for arrays of the wrong shape, pixel type or values
    (batches, 0-size, 2 or 5+ channels, NaN/inf, float far outside [0, 1]); messages say what is expected.
    """
    if color_order not in ("bgr", "rgb"):
        raise ValueError(f"color_order must be 'bgr' or 'rgb', got {color_order!r}")
    if img is None:
        raise ImageTypeError(f"expected an image, got None; pass {_EXPECTED}")
    if isinstance(img, (str, os.PathLike)):
        img = read_image(img)
        color_order = "bgr"
    elif type(img).__module__.startswith("PIL."):
        img = _pil_to_array(img)
        color_order = "rgb"
    if hasattr(img, "detach") and hasattr(img, "cpu"):  # a torch tensor: CHW or HWC, values in [0, 1]
        img = img.detach().cpu().numpy()
        if img.ndim == 3 and img.shape[0] in (1, 3, 4) and img.shape[-1] not in (1, 3, 4):
            img = img.transpose(1, 2, 0)
    if not isinstance(img, np.ndarray):
        raise ImageTypeError(f"unsupported image type {type(img).__name__}; pass {_EXPECTED}")
    if img.ndim == 4:
        raise ImageError(f"got a batch of {img.shape[0]} images (shape {img.shape}); pass one image at a time, "
                         "e.g. img[0]")
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (1, 3, 4)):
        raise ImageError(f"expected an HxW, HxWx1, HxWx3 or HxWx4 image, got shape {img.shape}")
    if img.size == 0:
        raise ImageError(f"empty image of shape {img.shape}; an image needs at least 1x1 pixels")
    info = ImageInfo(dtype=img.dtype, channel_axis=img.ndim == 3 and img.shape[2] == 1)
    if img.dtype == np.uint16:
        img = (img.astype(np.float32) / 257.0).round().astype(np.uint8)
    elif np.issubdtype(img.dtype, np.floating):
        if not np.isfinite(img).all():
            raise ImageError("the image contains NaN or infinite values; float images need finite values in [0, 1]")
        low, high = float(img.min()), float(img.max())
        if low < -1.0 or high > 2.0:  # small overshoots (resampling) are clipped; this is another scale
            raise ImageError(f"float images must hold values in [0, 1], got [{low:g}, {high:g}]; "
                             "divide 0-255 data by 255 or pass it as uint8")
        img = (np.clip(img, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ImageError(f"unsupported pixel type {img.dtype}: use uint8, uint16 or float in [0, 1] "
                         "(e.g. img.astype(np.uint8) for 0-255 integers)")
    if img.ndim == 2 or img.shape[2] == 1:
        info.gray = True
        return cv2.cvtColor(np.ascontiguousarray(img.reshape(img.shape[:2])), cv2.COLOR_GRAY2BGR), info
    if img.shape[2] == 4:
        info.alpha = img[:, :, 3].copy()
        img = img[:, :, :3]
    if color_order == "rgb":
        img = img[:, :, ::-1]
    return np.ascontiguousarray(img), info


def gray_bgr(bgr: np.ndarray) -> np.ndarray:
    """Grey image with 3 equal channels (BGR -> GRAY -> BGR): what colorization heads are fed."""
    return cv2.cvtColor(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)


def from_bgr_uint8(img: np.ndarray, info: ImageInfo, color_order: str = "bgr") -> np.ndarray:
    """Give a BGR uint8 result back in the form of the original input (gray, alpha, 16 bit, float)."""
    out = img
    if info.gray:
        out = cv2.cvtColor(out, cv2.COLOR_BGR2GRAY)
        if info.channel_axis:
            out = out[:, :, None]
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


def find_images(inputs: list[str | os.PathLike]) -> list[tuple[Path, Path]]:
    """(file, path relative to its input) for files given directly (relative: the file name) and
    every image file (by extension) inside given folders (relative to that folder), sorted per
    folder; the same path reached twice is listed once. Missing paths are kept, to be reported by the reader."""
    found: list[tuple[Path, Path]] = []
    seen: set[Path] = set()
    for item in inputs:
        root = Path(item)
        if root.is_dir():
            # dangling links are listed too, so that they are reported rather than silently missed
            files = sorted(f for f in root.rglob("*")
                           if (f.is_file() or f.is_symlink()) and f.suffix.lower() in IMAGE_EXTENSIONS)
            pairs = [(f, f.relative_to(root)) for f in files]
        else:
            pairs = [(root, Path(root.name))]
        for file, relative in pairs:
            key = Path(os.path.abspath(file))  # not resolved: two links to one file are two inputs
            if key not in seen:
                seen.add(key)
                found.append((file, relative))
    return found


def list_images(inputs: list[str | os.PathLike]) -> list[Path]:
    """Files given directly, plus every image file (by extension) inside given folders, sorted."""
    return [file for file, _ in find_images(inputs)]
