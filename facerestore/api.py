"""`load()`: from a zoo name (or a training config) to a ready `Restorer`."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from . import hub
from .registry import ZooEntry, get_entry
from .restorer import Restorer, default_device


def resolve_entry(name: str | os.PathLike | ZooEntry) -> ZooEntry:
    """A zoo name or alias, a ZooEntry, or the path of a training config (.yaml) -> ZooEntry."""
    if isinstance(name, ZooEntry):
        return name
    text = os.fspath(name)
    if text.lower().endswith((".yaml", ".yml")):
        if not Path(text).is_file():
            raise FileNotFoundError(f"config file {text} does not exist")
        from .train.config import entry_from_config

        return entry_from_config(text)
    return get_entry(text)


def fetch(entry: ZooEntry, weights: str | os.PathLike | None = None, progress: bool = True,
          **overrides: Any) -> dict[str, Path]:
    """Local paths of the entry's files (see hub.resolve); a fresh download must load strictly into
    the architecture before it enters the cache."""
    weight_files = [wf for wf in entry.files if wf.role == "weights"]

    def strict_check(path: Path) -> None:
        hub.load_weights(entry.build(**overrides), path, weight_files[0].state_dict_key)

    return hub.resolve(entry, weights, verify=strict_check if weight_files else None, progress=progress)


def load(
    name: str | os.PathLike | ZooEntry,
    *,
    weights: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    pretrained: bool = True,
    precision: str = "fp32",
    detector: str | None = "retinaface-resnet50",
    detector_weights: str | os.PathLike | None = None,
    progress: bool = True,
    **overrides: Any,
) -> Restorer:
    """Build a zoo model, load its weights and wrap it for use on images.

    name: zoo name or alias (`facerestore models` lists them), or a training config path.
    weights: a local file, a folder holding the entry's files, or a URL; default: the cache, then
        the official download (into $FACERESTORE_HOME, ~/.cache/facerestore by default).
    pretrained: False builds the untrained network (random init) and reads no file at all.
    precision: "fp32" (exact, default), or "bf16"/"fp16" (autocast, faster) where the entry allows.
    detector / detector_weights: face detector zoo name and an optional local weights file; the
        detector is only built when a whole photo has to be searched for faces.
    overrides: constructor arguments replacing the official config (e.g. a smaller size for tests).
    """
    entry = resolve_entry(name)
    device = torch.device(device) if device is not None else default_device()
    if entry.task == "detect":  # detectors are zoo entries too; they have their own small wrapper
        from .face.detect import load_detector

        return load_detector(entry.name, weights=weights, device=device)
    net = entry.build(**overrides)
    if pretrained:
        paths = fetch(entry, weights, progress=progress, **overrides)
        for wf in entry.files:
            if wf.role != "weights":
                continue
            hub.load_weights(net, paths[wf.filename], wf.state_dict_key)
        dictionaries = [paths[wf.filename] for wf in entry.files if wf.role == "dictionary"]
        if dictionaries:  # DFDNet: component dictionaries are files beside the generator, not weights
            net.load_dictionaries(dictionaries[0].parent)
    elif weights is not None:
        raise ValueError("pass either weights=... or pretrained=False, not both")
    return entry.restorer_class()(
        net, entry, device=device, precision=precision, detector=detector,
        detector_weights=os.fspath(detector_weights) if detector_weights is not None else None,
    )
