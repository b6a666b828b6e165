"""Weights of the fixed networks inside losses (VGG19, ArcFace): found locally, downloaded when
possible, and otherwise a clear message saying which file is needed and where to put it."""
from __future__ import annotations

import os
from pathlib import Path

from .. import hub


def loss_weights_path(filename: str, url: str, weights: str | os.PathLike | None = None,
                      download: bool = True) -> Path:
    """Local path of a loss network's weights file (see hub.fetch_file for the lookup order)."""
    try:
        return hub.fetch_file(filename, url, weights, allow_download=download)
    except hub.WeightsError as exc:
        raise hub.WeightsError(f"{exc}; or set `pretrained: false` for this loss network "
                               "(random weights: only for tests)") from exc
