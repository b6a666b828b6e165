"""Golden data of shared/golden (see its README): manifests, cases, and recipe weights
(shared/golden/<family>/<config>_recipe.json): value = float32(scale * z + offset), z = numpy
RandomState(seed).standard_normal(numel), each tensor checked against its sha256."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from conftest import shared_path


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


def manifest(config: str) -> dict:
    """golden/manifests/<config>.json: the state-dict layout and constructor arguments of a released config."""
    return json.loads(shared_path(f"golden/manifests/{config}.json").read_text())


def state_dict_layout(net: torch.nn.Module) -> list[dict]:
    """The net's state dict as manifests list it: key, shape and dtype, in order."""
    return [{"key": k, "shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")}
            for k, v in net.state_dict().items()]


def psnr01(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR (dB) of two [-1, 1] images mapped to [0, 1] (clamped, as the restorers save them)."""
    a, b = ((t.float().clamp(-1, 1) + 1) / 2 for t in (a, b))
    return float(10 * torch.log10(1 / (a - b).square().mean()))


def load_case(family: str, name: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """(golden/<family>/<name>.json, the arrays of golden/<family>/<name>.npz as tensors)."""
    meta = json.loads(shared_path(f"golden/{family}/{name}.json").read_text())
    arrays = np.load(shared_path(f"golden/{family}/{name}.npz"))
    return meta, {key: torch.from_numpy(arrays[key]) for key in arrays.files}
