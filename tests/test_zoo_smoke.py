"""Every zoo entry builds at a small size (its family's `tiny` overrides) and runs one forward through
the object `load()` returns, so an entry that cannot build is found here, not by a user."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import facerestore
from facerestore.registry import DetectorEntry, ZooEntry, get_entry, list_models
from test_arch_dfdnet import random_dictionaries


def smooth_image(size: int, seed: int = 0) -> np.ndarray:
    """A smooth random BGR uint8 image (an aligned-face stand-in)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (8, 8, 3)).astype(np.float32)
    import cv2

    return cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC).clip(0, 255).astype(np.uint8)


@pytest.mark.parametrize("name", list_models())
def test_entry_builds_small_and_runs(name):
    entry = get_entry(name)
    tiny = dict(entry.family.tiny)
    torch.manual_seed(0)
    if isinstance(entry, DetectorEntry):
        detector = facerestore.load(name, pretrained=False, device="cpu")
        found = detector.detect(smooth_image(96), detect_size=96)
        assert found.boxes.shape[1:] == (4,) and found.landmarks.shape[1:] == (5, 2)
        return
    model = facerestore.load(name, pretrained=False, device="cpu", detector=None, **tiny)
    if isinstance(entry, ZooEntry) and entry.task == "relight":
        from facerestore.shlight import SHLight

        relit = model.relight(smooth_image(64), SHLight.from_direction((0.0, 0.0, 1.0)))
        assert relit.shape == (64, 64, 3) and relit.dtype == np.uint8
        return
    if isinstance(entry, ZooEntry):
        if hasattr(model.net, "set_dictionaries"):  # DFDNet reads its component dictionaries as data
            model.net.set_dictionaries(random_dictionaries(k=2))
        size = model.entry.face_size
        assert size == tiny.get(entry.family.size_argument, entry.face_size)
        face = smooth_image(size)
        out = model.restore(face, aligned=True, seed=0)
        assert out.shape == face.shape and out.dtype == np.uint8
        assert len(out.faces) == 1
        return
    if entry.task == "upscale":
        image = smooth_image(24)
        out = model.upscale(image, tile=16, tile_pad=4)
        assert out.shape == (24 * entry.scale, 24 * entry.scale, 3) and out.dtype == np.uint8
        assert model(image, 1.5).shape == (36, 36, 3)  # as a background upsampler: (bgr, scale) -> bgr
        return
    if entry.task == "parse":
        labels = model.parse(smooth_image(64))
        masks = model.face_masks(smooth_image(64))
        assert labels.shape == (1, 512, 512) and labels.max() < 19 and masks.shape == (1, 512, 512)
        return
    pytest.fail(f"{name}: no smoke check for entries of type {type(entry).__name__}")
