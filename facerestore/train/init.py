"""The weights a training run starts from (`facerestore train CONFIG --init SOURCE`, or `model.init`).

SOURCE is one of:
- a zoo name or alias (`gfpgan-v1.4`): built and loaded as `facerestore.api.build_model` does (the cache,
  then the official download; `model.weights` may name a local file or folder), with the config's
  `model.config` overrides, so a small config can start from a file of its own size;
- a weights file in the official layout of the family's releases (`params_ema`/`params` for GFP-GAN,
  CodeFormer and RestoreFormer, a bare state dict for GPEN and DFDNet, RestoreFormer++'s Lightning
  checkpoint with `vqvae.` keys), read with the family's WeightFile description;
- a facerestore training checkpoint (`last.pth`, `best.pth`): its EMA generator (`net_ema`).

The state dict must fit the network the config builds exactly (strict load): a mismatch is an error
that says which keys differ and that `model.config` must describe the weights' architecture.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from .. import hub
from ..registry import ZooEntry, get_entry
from .config import Config, ConfigError, base_entry

TRAINING_CHECKPOINT_FORMAT = "facerestore-train/1"


def init_state_dict(source: str | os.PathLike, config: Config, progress: bool = True
                    ) -> tuple[dict[str, torch.Tensor], str]:
    """(state dict, what it is) of an --init SOURCE for the network of `config`."""
    path = Path(source).expanduser()
    base = base_entry(config)
    if path.is_file():
        checkpoint = hub.read_checkpoint(path)
        if isinstance(checkpoint, Mapping) and checkpoint.get("format") == TRAINING_CHECKPOINT_FORMAT:
            what = f"training checkpoint {path} (EMA weights, iteration {checkpoint['iter']})"
            return dict(checkpoint["net_ema"]), what
        weight_file = next((wf for wf in base.files if wf.role == "weights"), None)
        try:
            state = hub.network_state_dict(checkpoint, weight_file)
        except hub.WeightsError:  # e.g. a bare state dict of a family whose releases wrap theirs
            state = hub.network_state_dict(checkpoint, None)
        return dict(state), f"weights file {path} ({base.family.name} layout)"
    if path.is_dir():
        raise ConfigError(f"--init {source}: is a folder; pass a weights file, a training checkpoint or a zoo name")
    try:
        entry = get_entry(os.fspath(source))
    except KeyError as exc:
        raise ConfigError(f"--init {source}: no such file, and not a zoo name ({exc.args[0]})") from None
    if not isinstance(entry, ZooEntry) or entry.family.name != base.family.name:
        raise ConfigError(f"--init {entry.name} is a {entry.family.name} model; this config trains a "
                          f"{base.family.name} network ({base.name}): pick a {base.family.name} entry")
    from ..api import build_model

    net = build_model(entry, weights=config.model.weights, progress=progress, data_files=False, **config.model.config)
    return net.state_dict(), f"zoo entry {entry.name}"


def load_init(net: nn.Module, source: str | os.PathLike, config: Config, progress: bool = True) -> str:
    """Load an --init SOURCE into `net` strictly; returns what was loaded (for the log)."""
    state, what = init_state_dict(source, config, progress)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ConfigError(
            f"--init {source}: the {what} does not fit the network of this config (model.config must describe "
            f"the architecture the weights were trained with): {str(exc)[:1500]}") from exc
    return what
