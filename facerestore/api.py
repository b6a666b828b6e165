"""`load()` and `build_model()`: from a zoo name (or a training config) to a ready Restorer, or to a
helper network's task object (FaceDetector, FaceParser, Upscaler)."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch

from . import hub
from .registry import ModelEntry, ZooEntry, get_entry, import_object
from .restorer import default_device


def resolve_entry(name: str | os.PathLike | ModelEntry) -> ModelEntry:
    """A zoo name or alias, a ZooEntry, or the path of a training config (.yaml) -> ZooEntry."""
    if isinstance(name, ModelEntry):
        return name
    text = os.fspath(name)
    if text.lower().endswith((".yaml", ".yml")):
        if not Path(text).is_file():
            raise FileNotFoundError(f"config file {text} does not exist")
        from .train.config import entry_from_config

        return entry_from_config(text)
    return get_entry(text)


def fetch(entry: ModelEntry, weights: str | os.PathLike | None = None, progress: bool = True,
          **overrides: Any) -> dict[str, Path]:
    """Local paths of the entry's files (see hub.resolve); a fresh download must load strictly into
    the architecture before it enters the cache."""
    weight_files = [wf for wf in entry.files if wf.role == "weights"]

    def strict_check(path: Path) -> None:
        config = overrides if weights is None else config_of_file(entry, path, overrides)
        hub.load_weights(entry.build(**config), path, weight_files[0])

    return hub.resolve(entry, weights, verify=strict_check if weight_files else None, progress=progress)


def config_of_file(entry: ModelEntry, path: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    """`overrides`, or, when there are none and the family can read its size from a state dict
    (Family.config_from_state_dict), the constructor arguments in which the file `path` differs from the
    entry's config. A file the reader does not understand keeps the entry's config (the strict load then
    says what does not fit)."""
    reader = entry.family.config_from_state_dict
    weight_files = [wf for wf in entry.files if wf.role == "weights"]
    if overrides or reader is None or not weight_files:
        return overrides
    try:
        config = import_object(reader)(hub.network_state_dict(hub.read_checkpoint(path), weight_files[0]))
    except (ValueError, hub.WeightsError):
        return overrides
    return {key: value for key, value in config.items() if entry.arch_config.get(key) != value}


def sized_entry(entry: ModelEntry, overrides: dict[str, Any]) -> ModelEntry:
    """The entry of a network built with `overrides`: when they change the family's size argument
    (e.g. GFP-GAN's out_size), the entry's face size follows, so the pipeline aligns faces to it."""
    size_key = entry.family.size_argument
    if isinstance(entry, ZooEntry) and size_key and size_key in overrides:
        return dataclasses.replace(entry, face_size=int(overrides[size_key]))
    return entry


def build_model(
    name: str | os.PathLike | ModelEntry,
    weights: str | os.PathLike | None = None,
    pretrained: bool = True,
    *,
    progress: bool = True,
    data_files: bool = True,
    **overrides: Any,
) -> torch.nn.Module:
    """The one way a network is built: the entry's architecture with `overrides` on its official
    config, its weights loaded strictly from `weights` (file, folder or URL) or the hub (cache, then
    the official download); with `pretrained=False`, the untrained network (reads no file at all).

    Files of role "dictionary" (DFDNet's component dictionaries) are data the network reads with
    `net.load_dictionaries(folder)`; `data_files=False` skips them."""
    entry = resolve_entry(name)
    if not pretrained:
        if weights is not None:
            raise ValueError("pass either weights=... or pretrained=False, not both")
        return entry.build(**overrides)
    files = entry.files if data_files else tuple(wf for wf in entry.files if wf.role == "weights")
    paths = fetch(dataclasses.replace(entry, files=files), weights, progress=progress, **overrides)
    weight_files = [wf for wf in files if wf.role == "weights"]
    if weights is not None and weight_files:  # a file of the user's may be of another size (see config_of_file)
        overrides = config_of_file(entry, paths[weight_files[0].filename], overrides)
    net = entry.build(**overrides)
    for wf in weight_files:
        hub.load_weights(net, paths[wf.filename], wf, model_name=entry.name)
    dictionaries = [paths[wf.filename] for wf in files if wf.role == "dictionary"]
    if dictionaries:
        net.load_dictionaries(dictionaries[0].parent)
    return net


def load(
    name: str | os.PathLike | ModelEntry,
    *,
    weights: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    pretrained: bool = True,
    precision: str = "fp32",
    detector: str | None = "retinaface-resnet50",
    detector_weights: str | os.PathLike | None = None,
    parser: str | None = None,
    parser_weights: str | os.PathLike | None = None,
    upsampler: str | None = None,
    upsampler_weights: str | os.PathLike | None = None,
    progress: bool = True,
    **overrides: Any,
) -> Any:
    """Build a zoo model, load its weights and wrap it for use on images.

    name: zoo name or alias (`facerestore models` lists them), or a training config path.
    weights: a local file, a folder holding the entry's files, or a URL; default: the cache, then
        the official download (into $FACERESTORE_HOME, ~/.cache/facerestore by default).
    pretrained: False builds the untrained network (random init) and reads no file at all.
    precision: "fp32" (exact, default), or "bf16"/"fp16" (autocast, faster) where the entry allows.
    detector / detector_weights: face detector zoo name and an optional local weights file; the
        detector is only built when a whole photo has to be searched for faces.
    parser / parser_weights: the face parser of the "parse"/"gpen" paste-back (default "parsenet").
    upsampler / upsampler_weights: a background upsampler zoo entry (e.g. "realesrgan-x2plus") used by
        `restore(..., upscale=s)`; default none (the background is resized).
    With pretrained=False the parser and upsampler are untrained too, unless their weights are given.
    overrides: constructor arguments replacing the official config (e.g. a smaller size for tests).

    Face models come back as a `Restorer` (`Relighter` for relighting); helper networks (detectors,
    and the parsers and upsamplers of the face pipeline) as their own task object, e.g. a FaceDetector.
    """
    entry = sized_entry(resolve_entry(name), overrides)
    device = torch.device(device) if device is not None else default_device()
    net = build_model(entry, weights, pretrained, progress=progress, **overrides)
    runner = entry.family.runner_class()
    if not isinstance(entry, ZooEntry):
        return runner(net, entry, device=device, precision=precision)
    def path(p: str | os.PathLike | None) -> str | None:
        return os.fspath(p) if p is not None else None

    return runner(
        net, entry, device=device, precision=precision, detector=detector, detector_weights=path(detector_weights),
        parser=parser, parser_weights=path(parser_weights), upsampler=upsampler,
        upsampler_weights=path(upsampler_weights), pretrained_helpers=pretrained,
    )
