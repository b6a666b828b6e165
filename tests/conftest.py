"""Test helpers: where shared/ is, and how a test asks for an asset from it.

shared/ (real photos, golden data, real weights) is found through one setting, FACERESTORE_SHARED,
defaulting to ../shared beside the project. Outside CI a test whose asset is missing is skipped with
the reason; with CI=true a missing asset fails the test.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACERESTORE_SHARED", ROOT.parent / "shared")).resolve()
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def shared_path(relpath: str) -> Path:
    """Path of an asset under shared/; skips (or fails in CI) when it is missing."""
    path = SHARED / relpath
    if not path.exists():
        message = f"shared asset {path} is missing (set FACERESTORE_SHARED to the shared/ folder)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def shared():
    """`shared("data/real/whole")` -> Path, skipping/failing as shared_path does."""
    return shared_path


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own empty weights cache: no test reads or writes ~/.cache."""
    monkeypatch.setenv("FACERESTORE_HOME", str(tmp_path_factory.mktemp("facerestore_home")))


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
    np.random.seed(0)
    yield
