"""facerestore: blind face restoration (GFP-GAN, GPEN, DFDNet) and portrait relighting (DPR)
behind one small interface.

    from facerestore import load
    restored = load("gfpgan").restore(img)   # whole photo: detect, align, restore, paste back
"""
from .api import load
from .registry import ZooEntry, get_entry, list_models
from .restorer import FaceRestorer, FaceResult, NoFaceWarning, Restorer, RestoreResult

__version__ = "0.1.0"

__all__ = [
    "load", "list_models", "get_entry", "ZooEntry", "Restorer", "FaceRestorer", "RestoreResult",
    "FaceResult", "NoFaceWarning", "SHLight", "__version__",
]


def __getattr__(name: str):
    # SHLight lives with the relighting code; imported on first use to keep `import facerestore` light.
    if name == "SHLight":
        from .shlight import SHLight

        return SHLight
    raise AttributeError(f"module 'facerestore' has no attribute {name!r}")
