"""The model zoo: one `ZooEntry` per released model, looked up by name or alias.

An entry is plain data, in the spirit of timm's pretrained configs and torchvision's weights API:
it knows how to build the architecture, where the official weights live, what the network expects
as input and under which license it was released. Entries are declared in `facerestore/zoo/*.py`
(one file per model family) and registered with `register()`.
"""
from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch


@dataclass(frozen=True)
class WeightFile:
    """One downloadable file of an entry."""

    filename: str
    urls: tuple[str, ...]  # the official location first, mirrors after it
    sha256: str | None = None  # checked when known
    size: int | None = None  # bytes, checked when known
    state_dict_key: str | None = None  # key holding the weights inside the file (None: bare state dict)
    role: str = "weights"  # what the file is for, for multi-file entries ("weights", "dictionary", ...)

    @property
    def url(self) -> str:
        return self.urls[0] if self.urls else ""


@dataclass(frozen=True)
class ZooEntry:
    """Everything needed to build, load and run one released model."""

    name: str
    arch: Callable[..., torch.nn.Module]  # constructor of the network
    arch_config: Mapping[str, Any]  # keyword arguments of the official constructor
    files: tuple[WeightFile, ...]
    task: str  # "restore", "colorize", "inpaint", "seg2face", "relight", "detect"
    restorer: str = "facerestore.restorer:FaceRestorer"  # "module:Class" wrapping the net for users
    face_size: int = 512  # side of the square input the network was trained on
    template: str = "ffhq"  # 5-point alignment template (see facerestore.face.align.TEMPLATES)
    color: str = "rgb"  # channel order the network takes
    input_range: tuple[float, float] = (-1.0, 1.0)  # value range of the network input and output
    forward_kwargs: Mapping[str, Any] = field(default_factory=dict)  # how the official inference calls net
    precisions: tuple[str, ...] = ("fp32",)  # what load(..., precision=) accepts
    # Exact mode (fp32) on CPU also runs with channels_last weights: set where measured faster (fast
    # modes always use channels_last). The outputs stay within the golden tolerances either way.
    channels_last: bool = False
    aliases: tuple[str, ...] = ()
    license: str = ""
    commercial_use: bool = False
    paper: str = ""
    source: str = ""  # official repository
    description: str = ""
    notes: str = ""  # anything a user must know (where the weights really come from, caveats)

    def build(self, **overrides: Any) -> torch.nn.Module:
        """The untrained network, with `overrides` applied on top of the official config."""
        return self.arch(**{**dict(self.arch_config), **overrides})

    def restorer_class(self) -> type:
        module_name, class_name = self.restorer.split(":")
        return getattr(importlib.import_module(module_name), class_name)


_ENTRIES: dict[str, ZooEntry] = {}
_ALIASES: dict[str, str] = {}
_ZOO_LOADED = False


def register(entry: ZooEntry) -> ZooEntry:
    """Add an entry to the zoo; names and aliases must be unique."""
    for key in (entry.name, *entry.aliases):
        if key in _ENTRIES or key in _ALIASES:
            raise ValueError(f"zoo name {key!r} is registered twice")
    _ENTRIES[entry.name] = entry
    for alias in entry.aliases:
        _ALIASES[alias] = entry.name
    return entry


def _ensure_zoo() -> None:
    global _ZOO_LOADED
    if not _ZOO_LOADED:
        _ZOO_LOADED = True
        importlib.import_module("facerestore.zoo")


def get_entry(name: str) -> ZooEntry:
    """The entry for a name or alias; an unknown name raises a KeyError listing close matches."""
    _ensure_zoo()
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key in _ENTRIES:
        return _ENTRIES[key]
    known = sorted([*_ENTRIES, *_ALIASES])
    close = difflib.get_close_matches(key, known, n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise KeyError(f"Unknown model {name!r}.{hint} Run `facerestore models` to see all {len(_ENTRIES)} models.")


def list_models(task: str | None = None, include_aliases: bool = False) -> list[str]:
    """Names of all zoo entries (optionally of one task), sorted."""
    _ensure_zoo()
    names = [n for n, e in _ENTRIES.items() if task is None or e.task == task]
    if include_aliases:
        names += [a for a, n in _ALIASES.items() if task is None or _ENTRIES[n].task == task]
    return sorted(names)


def aliases() -> dict[str, str]:
    """alias -> entry name."""
    _ensure_zoo()
    return dict(_ALIASES)
