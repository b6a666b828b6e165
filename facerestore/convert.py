"""Images <-> network tensors, in one place (pure functions, kornia style).

Images are numpy arrays in OpenCV's convention: BGR uint8, HxWx3 (one image) or NxHxWx3 (a batch).
Tensors are float32 (C,H,W) or (N,C,H,W) in a value range (lo, hi) and a channel order ("rgb" or
"bgr"). uint8 -> float is `x / 255 * (hi - lo) + lo`, which is bit-identical to the official
`(x / 255 - 0.5) / 0.5` and to `x / 127.5 - 1` for (-1, 1). float -> uint8 clamps to the range, then
rounds to nearest (BasicSR's `tensor2img`) or truncates (GPEN's `astype(np.uint8)`): which one is an
argument, because the official code of each model decides it.
"""
from __future__ import annotations

import numpy as np
import torch

ROUNDINGS = ("round", "truncate")


def image_to_tensor(images: np.ndarray, *, color: str = "rgb", value_range: tuple[float, float] = (-1.0, 1.0),
                    device: str | torch.device | None = None, channels_last: bool = False) -> torch.Tensor:
    """BGR uint8 (H,W,3) or (N,H,W,3) -> float32 (3,H,W) or (N,3,H,W) in `color` order and `value_range`,
    on `device` (converted there, so a GPU does the arithmetic)."""
    array = np.asarray(images)
    if array.dtype != np.uint8 or array.ndim not in (3, 4) or array.shape[-1] != 3:
        raise ValueError(f"expected BGR uint8 images of shape (H,W,3) or (N,H,W,3), got {array.dtype} {array.shape}")
    x = torch.from_numpy(np.ascontiguousarray(array))
    if device is not None:
        x = x.to(device)
    if color == "rgb":
        x = x.flip(-1)
    elif color != "bgr":
        raise ValueError(f"color must be 'rgb' or 'bgr', got {color!r}")
    x = x.movedim(-1, -3).float() / 255.0
    lo, hi = value_range
    if (lo, hi) != (0.0, 1.0):
        x = x * (hi - lo) + lo
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def tensor_to_image(tensor: torch.Tensor, *, color: str = "rgb", value_range: tuple[float, float] = (-1.0, 1.0),
                    rounding: str = "round") -> np.ndarray:
    """float (3,H,W) or (N,3,H,W) in `color` order and `value_range` -> BGR uint8 (H,W,3) or (N,H,W,3):
    clamped to the range, then rounded to nearest or truncated (`rounding`)."""
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")
    lo, hi = value_range
    x = ((tensor.detach().float() - lo) / (hi - lo)).clamp_(0, 1)
    if color == "rgb":
        x = x.flip(-3)
    elif color != "bgr":
        raise ValueError(f"color must be 'rgb' or 'bgr', got {color!r}")
    x = x.movedim(-3, -1) * 255.0
    if rounding == "round":
        x = x.round_()
    return x.to(torch.uint8).cpu().numpy()
