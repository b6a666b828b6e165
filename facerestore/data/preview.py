"""Labelled image grids: the degradation preview and the benchmark's comparison sheets."""
from __future__ import annotations

from typing import Any, Sequence

import cv2
import numpy as np

from .degradations import Preset, degrade, describe, resize_square

FONT = cv2.FONT_HERSHEY_SIMPLEX
FONT_SCALE = 0.42
LINE_HEIGHT = 15


def labelled_grid(images: Sequence[np.ndarray], labels: Sequence[str | Sequence[str]], columns: int,
                  tile: int = 256) -> np.ndarray:
    """Tiles of `tile` px in rows of `columns`, each under a dark band with its label lines."""
    if not images:
        raise ValueError("no images to put in a grid")
    label_lines = [[label] if isinstance(label, str) else list(label) for label in labels]
    band = 6 + LINE_HEIGHT * max(1, max(len(lines) for lines in label_lines))
    rows = -(-len(images) // columns)
    sheet = np.full((rows * (tile + band), columns * tile, 3), 255, np.uint8)
    for i, (img, lines) in enumerate(zip(images, label_lines)):
        y, x = (i // columns) * (tile + band), (i % columns) * tile
        sheet[y:y + band, x:x + tile] = 32
        for k, line in enumerate(lines):
            cv2.putText(sheet, line, (x + 4, y + 4 + LINE_HEIGHT * (k + 1) - 4), FONT, FONT_SCALE, (255, 255, 255), 1,
                        cv2.LINE_AA)
        if img.ndim == 2:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        sheet[y + band:y + band + tile, x:x + tile] = resize_square(img, tile)
    return sheet


def preview_degradations(img: Any, preset: str | Preset = "gfpgan", n: int = 8, seed: int = 0, tile: int = 256,
                         columns: int = 3) -> np.ndarray:
    """One face under `n` draws of a preset (seeds seed..seed+n-1), each labelled with its seed and
    key parameters; the original comes first. `degrade(img, preset, seed=k)` reproduces tile k."""
    from ..imageio import to_bgr_uint8

    bgr, _ = to_bgr_uint8(img)
    images, labels = [bgr], [["original", f"{bgr.shape[1]}x{bgr.shape[0]}"]]
    for k in range(seed, seed + n):
        out, params = degrade(bgr, preset, seed=k, return_params=True)
        images.append(out)
        labels.append([f"seed {k}", *describe(params)])
    return labelled_grid(images, labels, columns=min(columns, len(images)), tile=tile)
