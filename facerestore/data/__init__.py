"""Training and evaluation data: seeded synthetic degradations (`degrade`, presets of GFPGAN, GPEN,
DFDNet and CodeFormer) and torch datasets of paired or on-the-fly degraded faces."""
from .degradations import (
    OPS,
    PRESETS,
    Preset,
    apply,
    apply_target,
    degrade,
    describe,
    get_preset,
    list_presets,
    register_preset,
    sample_params,
)
from .preview import labelled_grid, preview_degradations

__all__ = [
    "OPS", "PRESETS", "Preset", "apply", "apply_target", "degrade", "describe", "get_preset", "list_presets",
    "register_preset", "sample_params", "labelled_grid", "preview_degradations",
    "PairedFolderDataset", "DegradedFolderDataset",
]


def __getattr__(name: str):
    # The datasets need torch; imported on first use so the degradations stay light.
    if name in ("PairedFolderDataset", "DegradedFolderDataset"):
        from . import datasets

        return getattr(datasets, name)
    raise AttributeError(f"module 'facerestore.data' has no attribute {name!r}")
