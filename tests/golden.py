"""Rebuild golden recipe weights (shared/golden/<family>/<config>_recipe.json, see shared/golden/README.md):
value = float32(scale * z + offset), z = numpy RandomState(seed).standard_normal(numel), each tensor
checked against its sha256."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch


def recipe_state_dict(json_path: str | Path) -> dict[str, torch.Tensor]:
    """The state_dict a recipe defines, in the recipe's key order; raises ValueError on a hash mismatch."""
    recipe = json.loads(Path(json_path).read_text())
    state: dict[str, torch.Tensor] = {}
    for row in recipe["keys"]:
        if row["dtype"] != "float32":
            raise ValueError(f"{row['key']}: recipe dtype {row['dtype']} is not supported")
        shape = tuple(row["shape"])
        numel = int(np.prod(shape, dtype=np.int64))
        z = np.random.RandomState(row["seed"]).standard_normal(numel)
        value = (row["scale"] * z + row["offset"]).astype("<f4").reshape(shape)  # float64 maths, one cast
        digest = hashlib.sha256(value.tobytes()).hexdigest()
        if digest != row["sha256"]:
            raise ValueError(f"{row['key']}: rebuilt tensor's sha256 {digest} != recipe {row['sha256']}")
        state[row["key"]] = torch.from_numpy(value)
    return state
