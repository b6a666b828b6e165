"""Files the metrics need (network weights, NIQE's pristine model): an explicit path, an environment
variable, the cache ($FACERESTORE_HOME/weights), torchvision's cache, then a download into our cache
(never into site-packages). When none works, a `WeightsError` says which file to fetch from where
and where to put it."""
from __future__ import annotations

import os
from pathlib import Path

from .. import hub


def metric_weights_path(metric: str, filename: str, url: str, weights: str | os.PathLike | None = None,
                        env: str | None = None, download: bool = True) -> Path:
    """Local path of a file `metric` needs; `weights` (or the `env` variable) names it explicitly."""
    if weights is None and env and os.environ.get(env):
        weights = os.environ[env]
    try:
        return hub.fetch_file(filename, url, weights, allow_download=download)
    except hub.WeightsError as exc:
        where = f"pass weights='/path/to/{filename}'" + (f" or set {env}=/path/to/{filename}" if env else "")
        if weights is not None:
            raise hub.WeightsError(f"{metric}: {exc}; {where}") from exc
        raise hub.WeightsError(
            f"{metric} needs {filename}, which is not available offline"
            f"{'' if download else ' (downloads disabled)'}. Download it from {url} and put it at "
            f"{hub.weights_dir() / filename}, or {where}."
        ) from exc
