"""Weights of the fixed networks inside losses (VGG19, ArcFace): found locally, downloaded when
possible, and otherwise a clear message saying which file is needed and where to put it."""
from __future__ import annotations

import os
from pathlib import Path

from .. import hub


def torch_hub_dir() -> Path:
    """Where torchvision keeps downloaded weights (`$TORCH_HOME/hub/checkpoints`)."""
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch")
    return Path(torch_home) / "hub" / "checkpoints"


def loss_weights_path(filename: str, url: str, weights: str | os.PathLike | None = None,
                      download: bool = True) -> Path:
    """Local path of a loss network's weights file.

    Order: `weights` (an explicit file), `$FACERESTORE_HOME/weights/<filename>`, torchvision's
    cache, then a download into `$FACERESTORE_HOME/weights` (atomic). Raises hub.WeightsError
    naming the file and the folder to put it in when none of these works.
    """
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise hub.WeightsError(f"weights file {path} does not exist")
        return path
    for path in (hub.weights_dir() / filename, torch_hub_dir() / filename):
        if path.is_file():
            return path
    target = hub.weights_dir() / filename
    reason = "downloads are disabled"
    if download:
        try:
            return hub.download(url, target)
        except hub.WeightsError as exc:
            reason = str(exc)
    raise hub.WeightsError(
        f"{filename} is needed and could not be found or downloaded ({reason}). Download it from {url} "
        f"and put it at {target} (the folder is $FACERESTORE_HOME/weights), or pass its path explicitly; "
        "or set `pretrained: false` for this loss network (random weights: only for tests)."
    )
