"""The model zoo: one entry per released model, looked up by name or alias, and one `Family` record
per model family.

An entry is plain data, in the spirit of timm's pretrained configs and torchvision's weights API:
it knows how to build the architecture, where the official weights live, what the network expects
as input and under which license it was released. Entries and their family record are declared
together in `facerestore/zoo/<family>.py` and registered with `register()`.

Everything that differs between families lives in the `Family` record (the class that wraps a
loaded network for users, the training recipe, the export wrapper, which constructor argument is the
output size, the official paste-back and fidelity defaults), so the trainer, the exporter, the
benchmark and the CLI ask an entry's family instead of naming families or classes.

Entry types, by what a model is for:
- `ZooEntry`: networks that run on faces (restoration and its heads, relighting): face size, alignment
  template, colour convention, value range. `load()` wraps them in a `Restorer`.
- `DetectorEntry`: face detectors (prior boxes, decoding variances, detection defaults).
- `HelperEntry`: other helper networks (face parsers, background upsamplers), with their own runner.
"""
from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch


def import_object(path: str) -> Any:
    """`"package.module:Name"` -> the object (imported on first use, so zoo files stay light)."""
    module_name, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


@dataclass(frozen=True)
class WeightFile:
    """One downloadable file of an entry, and how to find the network's weights inside it."""

    filename: str
    urls: tuple[str, ...]  # the official location first, mirrors after it
    sha256: str | None = None  # checked when known
    size: int | None = None  # bytes, checked when known
    state_dict_key: str | None = None  # key holding the weights inside the file (None: bare state dict)
    role: str = "weights"  # what the file is for, for multi-file entries ("weights", "dictionary", ...)
    # Prefixes the official loader strips from every key (e.g. "module." of DataParallel files).
    strip_prefixes: tuple[str, ...] = ()
    # Only keys under this prefix belong to the network (e.g. "vqvae." in a Lightning training checkpoint
    # that also holds loss and discriminator weights); the prefix is stripped and other keys are ignored.
    network_prefix: str | None = None

    @property
    def url(self) -> str:
        return self.urls[0] if self.urls else ""


@dataclass(frozen=True, kw_only=True)
class TrainingSpec:
    """How a family trains (see facerestore.train.recipes)."""

    recipe: str = "facerestore.train.recipes:RestorationRecipe"  # "module:Class"
    # `model: {arch: NAME}` names a config may use to train from scratch -> the zoo entry whose conventions
    # (template, colour, value range, forward call) the new network shares.
    config_archs: Mapping[str, str] = field(default_factory=dict)
    # (net, batch, want_rgbs) -> {"image": ..., optionally "rgbs": [...]}: the training forward
    forward: Callable[..., dict] | None = None
    discriminator: str = "stylegan2"  # the default main discriminator type
    part_boxes: bool = False  # the forward needs the facial component boxes of each face (DFDNet)
    frozen: tuple[str, ...] = ()  # submodules (attribute paths) kept fixed while training
    pyramid: bool = False  # the forward returns intermediate RGB images (GFP-GAN's pyramid loss)
    idle_layers: bool = False  # some layers get no gradient by design (DDP must look for unused parameters)


@dataclass(frozen=True, kw_only=True)
class Family:
    """What all entries of one model family share (declared once, next to its zoo entries)."""

    name: str
    archs: tuple[type, ...]  # the architecture classes of the family
    runner: str  # "module:Class" wrapping a loaded network for users (Restorer, Relighter, FaceDetector, ...)
    size_argument: str | None = None  # constructor argument that sets the network's face/image size
    training: TrainingSpec | None = None  # None: not trainable with `facerestore train`
    # "module:function" (net, entry, size, batch, **kw) -> ExportSpec; None: not exportable
    export: str | None = "facerestore.export:face_net_spec"
    paste: str = "feather"  # official paste-back of the whole-photo pipeline ("parse", "box", "gpen", "feather")
    fidelity: float = 0.0  # what restore(fidelity=None) means for this family
    # The network argument that takes the fidelity (CodeFormer's `w`); None: fidelity is a pixel blend with the input.
    fidelity_argument: str | None = None
    # Small constructor overrides for a fast instance (the per-entry smoke test builds every entry with them).
    tiny: Mapping[str, Any] = field(default_factory=dict)
    # "module:function" state dict -> constructor arguments, for families whose files come in several
    # sizes (e.g. Real-ESRGAN's 6-block anime model): a weights file given explicitly is built at its own
    # size. None: files must fit the entry's config (or the caller's overrides).
    config_from_state_dict: str | None = None

    def runner_class(self) -> type:
        return import_object(self.runner)


# The family of an entry declared without one (e.g. a test's small config): the plain face pipeline.
FACE_RESTORER = Family(name="face-restorer", archs=(), runner="facerestore.restorer:FaceRestorer")


@dataclass(frozen=True, kw_only=True)
class ModelEntry:
    """What every zoo entry has: how to build the network, its files, and where it comes from."""

    name: str
    arch: Callable[..., torch.nn.Module]  # constructor of the network
    arch_config: Mapping[str, Any]  # keyword arguments of the official constructor
    files: tuple[WeightFile, ...]
    task: str  # "restore", "colorize", "inpaint", "seg2face", "relight", "detect", "parse", "upscale"
    family: Family = FACE_RESTORER
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

    @property
    def restorer(self) -> str:
        """"module:Class" of the object `load()` returns for this entry (its family's runner)."""
        return self.family.runner

    def restorer_class(self) -> type:
        """The class that wraps this entry's loaded network for users (its family's runner)."""
        return self.family.runner_class()


@dataclass(frozen=True, kw_only=True)
class ZooEntry(ModelEntry):
    """A network that runs on aligned faces (restoration and its heads, relighting)."""

    face_size: int = 512  # side of the square input the network was trained on
    template: str = "ffhq"  # 5-point alignment template (see facerestore.face.align.TEMPLATES)
    color: str = "rgb"  # channel order the network takes
    input_range: tuple[float, float] = (-1.0, 1.0)  # value range of the network input and output
    output_rounding: str = "round"  # float -> uint8 as the official code does: "round" or "truncate"
    forward_kwargs: Mapping[str, Any] = field(default_factory=dict)  # how the official inference calls net


@dataclass(frozen=True, kw_only=True)
class DetectorEntry(ModelEntry):
    """A face detector: the prior boxes and decoding it was trained with, and detection defaults."""

    min_sizes: tuple[tuple[int, ...], ...]
    steps: tuple[int, ...] = (8, 16, 32)
    variances: tuple[float, float] = (0.1, 0.2)
    detect_size: int | tuple[int, ...] | None = None  # long side(s) of the resized copy detection runs on
    score_threshold: float = 0.9
    # multi-scale: smallest face side (px) a copy answers for, but the largest copy; None: one NMS over all copies
    min_face: float | None = 40.0


@dataclass(frozen=True, kw_only=True)
class HelperEntry(ModelEntry):
    """A helper network of the face pipeline (face parser, background upsampler)."""

    scale: int = 1  # output size / input size (upsamplers)


_ENTRIES: dict[str, ModelEntry] = {}
_ALIASES: dict[str, str] = {}
_ZOO_LOADED = False


def register(entry: ModelEntry) -> ModelEntry:
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


def get_entry(name: str) -> ModelEntry:
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


def families() -> list[Family]:
    """The family records of all zoo entries, in registration order."""
    _ensure_zoo()
    seen: dict[str, Family] = {}
    for entry in _ENTRIES.values():
        seen.setdefault(entry.family.name, entry.family)
    return list(seen.values())
