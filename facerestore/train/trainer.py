"""The training loop: fine-tune a zoo model (or train one from scratch) from a YAML config.

    from facerestore.train import train
    train("configs/gpen.yaml", hq="faces/hq", iters=20_000, out="runs/gpen")

What a run writes to its output folder:
- `last.pth` (every `log.checkpoint_every` iterations, at the end, on Ctrl-C/SIGTERM): written to a
  temporary file and renamed, so it is always complete. `iter`, `net_ema` (EMA generator, the zoo
  architecture's state-dict layout: `facerestore.load(config, weights=".../last.pth")` loads it),
  `net`, `discriminators`, `optimizers`, `scaler`, `rng` (python/numpy/torch per process), `config`.
  With `log.snapshots` also `iter_<N>.pth`.
- `best.pth`: the EMA generator (`net_ema`, `iter`, `metrics`) at the validation with the best value of
  `log.best_metric` (default: the first of `log.val_metrics`, PSNR), iteration 0 included: a run that
  never beats its start keeps its start. Loads like last.pth, and `--init runs/x/best.pth` starts from it.
- `log.csv` (losses, learning rate, seconds per iteration), `val.csv` (per metric: the EMA generator
  `psnr`, the degraded input `psnr_input` and the model at iteration 0 `psnr_init`, on the validation
  faces; iteration 0 = before training), `samples/iter_<N>.png` (input | iteration 0 | EMA output now |
  ground truth), `tensorboard/` (when tensorboard is installed), `config.yaml` (the resolved config).

Starting weights: `model.zoo` (the entry's released weights) or `model.init` / `--init` (a zoo name, an
official-layout file or a training checkpoint, see init.py); `model.frozen` (default: the family's
TrainingSpec.frozen) stays fixed and `model.lr_scale` gives parts (e.g. a pretrained decoder) a lower
learning rate. `train.precision: bf16` trains under bf16 autocast, on CPU too.

`resume=True` continues from `last.pth` exactly: networks, EMA, optimisers, loss scaler, iteration,
random states and the data order (see data.py), so the losses match an uninterrupted run.
A non-finite loss stops the run with an error (TrainingError); `last.pth` keeps the last good state.

Multi-GPU: launch with `torchrun --nproc_per_node=N -m facerestore train CONFIG ...`: one process per
GPU, DistributedDataParallel, `data.batch_size` per GPU; rank 0 writes logs and checkpoints.
"""
from __future__ import annotations

import copy
import csv
import dataclasses
import itertools
import math
import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch import nn
from torch.utils.data import DataLoader, default_collate
from tqdm.auto import tqdm

from .. import hub
from ..imageio import write_atomic
from ..registry import ZooEntry
from .config import (
    Config, ConfigError, SchedulerConfig, base_entry, config_from_dict, degradation_from_spec, entry_from_config,
    load_config,
)
from .data import EpochIndexed, StreamBatchSampler, fixed_items
from .init import TRAINING_CHECKPOINT_FORMAT, load_init
from .recipes import Recipe, build_recipe, set_requires_grad

CHECKPOINT_FORMAT = TRAINING_CHECKPOINT_FORMAT
BEST_CHECKPOINT_FILE = "best.pth"


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); the message says what to try."""


# ---- small pure helpers -------------------------------------------------------------------------------
def lr_factor(it: int, schedule: SchedulerConfig, total_iters: int) -> float:
    """Learning-rate multiplier at iteration `it` (1-based): linear warm-up, then constant,
    multistep (times gamma at each milestone passed) or cosine (down to min_lr_ratio at the end)."""
    if schedule.warmup_iters > 0 and it <= schedule.warmup_iters:
        return it / schedule.warmup_iters
    if schedule.type == "multistep":
        return schedule.gamma ** sum(it > m for m in schedule.milestones)
    if schedule.type == "cosine":
        span = max(1, total_iters - schedule.warmup_iters)
        progress = min(1.0, (it - schedule.warmup_iters) / span)
        return schedule.min_lr_ratio + (1 - schedule.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return 1.0


def ema_decay(decay: float, num_updates: int, warmup: bool) -> float:
    """EMA decay after `num_updates` updates; with warm-up min(decay, (1 + n) / (10 + n)), so the EMA
    follows the network early on instead of averaging in its random initialisation."""
    return min(decay, (1 + num_updates) / (10 + num_updates)) if warmup else decay


@torch.no_grad()
def update_ema(ema: nn.Module, net: nn.Module, decay: float) -> None:
    """ema = decay * ema + (1 - decay) * net for parameters; buffers (BN statistics, spectral-norm
    vectors, ...) are copied."""
    for ema_param, param in zip(ema.parameters(), net.parameters()):
        ema_param.lerp_(param.detach(), 1.0 - decay)
    for ema_buffer, buffer in zip(ema.buffers(), net.buffers()):
        ema_buffer.copy_(buffer)


def capture_rng() -> dict:
    """Python, numpy (legacy global) and torch (CPU + CUDA) random states, storable with weights_only."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                  "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng(state: dict) -> None:
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _ignore_sigint(_worker_id: int) -> None:
    # DataLoader workers leave Ctrl-C to the main process, which saves a checkpoint and shuts them down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _unwrap(net: nn.Module) -> nn.Module:
    return net.module if isinstance(net, nn.parallel.DistributedDataParallel) else net


@dataclasses.dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str | torch.device | None = None) -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1): NCCL when this process trains
    on a GPU, gloo on CPU (`--device cpu`, no CUDA, or fewer GPUs than local processes)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        own = rank_device(device, info.local_rank)
        if own.type == "cuda":
            torch.cuda.set_device(own)
        dist.init_process_group("nccl" if own.type == "cuda" else "gloo")
    return info


def rank_device(device: str | torch.device | None, local_rank: int) -> torch.device:
    """The explicit device ("cuda" = this local rank's GPU), else the local rank's GPU when every local
    process has one (the same choice in all processes), else the CPU."""
    if device is not None:
        device = torch.device(device)
        return torch.device("cuda", local_rank) if device.type == "cuda" and device.index is None else device
    if torch.cuda.is_available() and int(os.environ.get("LOCAL_WORLD_SIZE", "1")) <= torch.cuda.device_count():
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


# ---- logs ---------------------------------------------------------------------------------------------
class CSVLog:
    """A CSV file with a fixed header; rows beyond `keep_until` are dropped on resume (a killed run may
    have logged iterations after its last checkpoint)."""

    def __init__(self, path: Path, columns: list[str], keep_until: int | None = None) -> None:
        self.path, self.columns = path, columns
        rows = []
        if keep_until is not None and path.is_file():
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(float(r["iter"])) <= keep_until]
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    def write(self, row: dict) -> None:
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore").writerow(
                {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def read_csv(path: str | os.PathLike) -> list[dict[str, float]]:
    """Rows of a log.csv / val.csv as floats (empty cells are left out)."""
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


def tensorboard_writer(log_dir: Path, purge_step: int | None) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional (pip install "facerestore[train]")
        tqdm.write("tensorboard is not installed: logging to CSV only (pip install tensorboard)")
        return None
    return SummaryWriter(str(log_dir), purge_step=purge_step)


# ---- the trainer --------------------------------------------------------------------------------------
def build_generator(config: Config, entry: ZooEntry, progress: bool = True) -> nn.Module:
    """The network to train: the zoo entry's, with its weights (fine-tuning), or the weights of
    `model.init` (--init), or freshly initialised (its data files, such as DFDNet's component
    dictionaries, are loaded either way: from the cache, or from a `model.weights` folder)."""
    from ..api import build_model

    if config.model.zoo and config.model.pretrained and not config.model.init:
        return build_model(config.model.zoo, weights=config.model.weights, progress=progress, **config.model.config)
    net = entry.build()
    data_files = tuple(wf for wf in entry.files if wf.role != "weights")
    if data_files:  # DFDNet's component dictionaries are data, not trained weights
        folder = config.model.weights if config.model.weights and Path(config.model.weights).is_dir() else None
        paths = hub.resolve(dataclasses.replace(base_entry(config), files=data_files), folder, progress=progress)
        net.load_dictionaries(next(iter(paths.values())).parent)
    if config.model.init:
        what = load_init(net, config.model.init, config, progress)
        if progress:
            tqdm.write(f"starting from {what}")
    return net


def generator_param_groups(net: nn.Module, lr_scale: dict, lr: float) -> list[dict]:
    """Adam parameter groups of the trainable parameters: those under a `lr_scale` submodule (the
    longest matching path wins) train at lr * its factor, the rest at lr. Groups follow the network's
    parameter order, so a resumed run rebuilds them identically."""
    for path in lr_scale:
        try:
            net.get_submodule(path)
        except AttributeError:
            children = ", ".join(name for name, _ in net.named_children())
            raise ConfigError(f"model.lr_scale: {type(net).__name__} has no submodule {path!r} "
                              f"(its parts: {children})") from None
    groups: dict[float, list[nn.Parameter]] = {}
    for name, param in net.named_parameters():
        if not param.requires_grad:
            continue
        matches = [path for path in lr_scale if name == path or name.startswith(path + ".")]
        scale = float(lr_scale[max(matches, key=len)]) if matches else 1.0
        groups.setdefault(scale, []).append(param)
    if not groups:
        raise ConfigError("every parameter of the generator is frozen (model.frozen): nothing to train")
    return [{"params": params, "lr": lr * scale} for scale, params in groups.items()]


def autocast_dtype(train_cfg: Any, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a run: train.precision if set, else `amp` (CUDA only: bf16 where supported,
    else fp16); None = fp32."""
    precision = train_cfg.precision
    if precision is None:
        if not (train_cfg.amp and device.type == "cuda"):
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("train.precision fp16 needs a CUDA device (loss scaling); use bf16 on CPU")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


class Trainer:
    """One training run (see the module docstring). `fit()` runs it to `config.train.iters`."""

    def __init__(self, config: Config, resume: bool = False, device: str | torch.device | None = None,
                 progress: bool = True) -> None:
        self.config = config
        self.dist = init_distributed(device)
        self.progress = progress and self.dist.is_main
        self.device = rank_device(device, self.dist.local_rank)
        self.out = Path(config.out or Path("runs") / config.name)
        self.checkpoint_path = self.out / "last.pth"
        if resume and not self.checkpoint_path.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {self.checkpoint_path} (check --out)")
        if not resume and self.checkpoint_path.is_file():
            raise FileExistsError(f"{self.checkpoint_path} exists: pass --resume to continue that run, "
                                  "or choose another --out")
        train_cfg = config.train
        seed_everything(train_cfg.seed)  # the same initial weights in every process
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = not train_cfg.deterministic
            torch.backends.cudnn.deterministic = train_cfg.deterministic

        self.entry = entry_from_config(config)
        self.size = config.data.size or self.entry.face_size
        self.recipe: Recipe = build_recipe(config, self.entry, self.size)
        self.net = build_generator(config, self.entry, self.progress)
        self.recipe.configure_generator(self.net)
        self.net.to(self.device).train()
        self.net_ema = copy.deepcopy(self.net).eval().requires_grad_(False)
        self.recipe.loss_modules.to(self.device)
        for disc in self.recipe.discriminators.values():
            disc.to(self.device).train()

        def adam(params: list, opt: Any) -> torch.optim.Optimizer:
            return torch.optim.Adam(params, lr=opt.lr, betas=tuple(opt.betas), weight_decay=opt.weight_decay)

        self.optimizers = {"g": adam(generator_param_groups(self.net, config.model.lr_scale, train_cfg.optim_g.lr),
                                     train_cfg.optim_g)}
        for name, disc in self.recipe.discriminators.items():
            self.optimizers[name] = adam(list(disc.parameters()), train_cfg.optim_d)
        self.base_lrs = {name: [g["lr"] for g in opt.param_groups] for name, opt in self.optimizers.items()}

        self.amp_dtype = autocast_dtype(train_cfg, self.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)

        self.net_train: nn.Module = self.net
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            # Some layers are idle by design (the family says so, e.g. GFP-GAN's toRGBs without the pyramid loss).
            idle_layers = self.entry.family.training.idle_layers
            self.net_train = nn.parallel.DistributedDataParallel(self.net, device_ids=ids,
                                                                 find_unused_parameters=idle_layers)
            self.recipe.d_train = {name: nn.parallel.DistributedDataParallel(d, device_ids=ids)
                                   for name, d in self.recipe.discriminators.items()}

        self.train_set, self.val_set = self.recipe.datasets(config, self.size)
        # a few fixed faces for the sample grids: validation faces, else training faces (epoch 0)
        preview_source = self.val_set if self.val_set is not None else self.train_set
        self.preview_items = list(fixed_items(preview_source, config.log.sample_count))

        if self.dist.enabled:  # then each process draws its own noise and flips
            seed_everything(train_cfg.seed + 1_000_003 * self.dist.rank)
        self.iter = 0
        self.metric_fns: dict[str, Any] = {}
        self.last_metrics: dict[str, float] = {}
        self.init_metrics: dict[str, float] | None = None  # the model at iteration 0 on the validation faces
        self.init_outputs: list[np.ndarray] | None = None  # ... and its outputs on the sample faces
        self.best_metric = config.log.best_metric or (config.log.val_metrics[0] if config.log.val_metrics else None)
        self.best_value: float | None = None
        self.stop_requested = False
        self._saved_iter: int | None = None  # iteration of the last checkpoint written or resumed from
        if resume:
            self._load_checkpoint()  # restores the random states last, after everything that draws from them
            self._saved_iter = self.iter

    # -- checkpoints
    def _state(self, rng_states: list[dict]) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "iter": self.iter,
            "name": self.config.name,
            "net_ema": self.net_ema.state_dict(),
            "net": self.net.state_dict(),
            "discriminators": {name: d.state_dict() for name, d in self.recipe.discriminators.items()},
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "scaler": self.scaler.state_dict(),
            "rng": rng_states,
            "metrics": dict(self.last_metrics),
            "config": _plain(self.config.to_dict()),
            "val_init": {"metrics": dict(self.init_metrics or {}),
                         "outputs": [torch.from_numpy(o) for o in self.init_outputs or []]},
            "best": {"metric": self.best_metric, "value": self.best_value},
        }

    def save_best(self, value: float) -> None:
        """best.pth: the EMA generator at this validation (main process only)."""
        self.best_value = value
        state = {"format": CHECKPOINT_FORMAT, "iter": self.iter, "name": self.config.name,
                 "net_ema": self.net_ema.state_dict(), "metrics": dict(self.last_metrics),
                 "best": {"metric": self.best_metric, "value": value}, "config": _plain(self.config.to_dict())}
        write_atomic(self.out / BEST_CHECKPOINT_FILE, lambda f: torch.save(state, f))

    def save_checkpoint(self) -> Path | None:
        """Write last.pth (and iter_<N>.pth with log.snapshots) atomically; collective under DDP."""
        rng_states = [capture_rng()]
        if self.dist.enabled:  # every process's random state, so that each resumes exactly
            rng_states = [None] * self.dist.world_size
            dist.all_gather_object(rng_states, capture_rng())
        if not self.dist.is_main:
            return None
        state = self._state(rng_states)
        write_atomic(self.checkpoint_path, lambda f: torch.save(state, f))
        if self.config.log.snapshots:
            write_atomic(self.out / f"iter_{self.iter:07d}.pth", lambda f: torch.save(state, f))
        return self.checkpoint_path

    def _load_checkpoint(self) -> None:
        state = hub.read_checkpoint(self.checkpoint_path)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ConfigError(f"{self.checkpoint_path} is not a facerestore training checkpoint")
        try:
            self.net.load_state_dict(state["net"])
            self.net_ema.load_state_dict(state["net_ema"])
            for name, disc in self.recipe.discriminators.items():
                disc.load_state_dict(state["discriminators"][name])
            for name, opt in self.optimizers.items():
                opt.load_state_dict(state["optimizers"][name])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise ConfigError(f"{self.checkpoint_path} does not match this config (model or losses changed?): "
                              f"{str(exc)[:500]}") from exc
        self.scaler.load_state_dict(state["scaler"])
        self.iter = int(state["iter"])
        self.last_metrics = dict(state.get("metrics", {}))
        val_init = state.get("val_init", {})
        self.init_metrics = dict(val_init.get("metrics", {})) or None
        self.init_outputs = [o.numpy() for o in val_init.get("outputs", [])] or None
        self.best_value = state.get("best", {}).get("value")
        rng_states = state["rng"]
        if len(rng_states) == self.dist.world_size:
            restore_rng(rng_states[self.dist.rank])
        else:  # another number of processes: the data order still matches, the random draws cannot
            tqdm.write(f"resuming with {self.dist.world_size} processes from a run with {len(rng_states)}: "
                       "random draws (noise, flips) will differ from an uninterrupted run")
            seed_everything(self.config.train.seed + 7919 * self.iter + self.dist.rank)

    # -- one iteration
    def _autocast(self) -> Any:
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

    def _augment(self, batch: dict) -> dict:
        """Random horizontal flips of both images of each pair (from the saved torch RNG)."""
        key = "lq" if "lq" in batch else "src"
        n = batch[key].shape[0]
        flipped = (torch.rand(n) < 0.5) if self.config.data.flip else torch.zeros(n, dtype=torch.bool)
        batch = dict(batch)
        for name, value in list(batch.items()):
            if isinstance(value, torch.Tensor) and value.ndim == 4:
                batch[name] = torch.where(flipped[:, None, None, None], value.flip(-1), value)
        batch["flipped"] = flipped
        return batch

    def _check_finite(self, losses: dict[str, torch.Tensor], it: int, what: str) -> None:
        values = {k: float(v.detach()) for k, v in losses.items()}
        bad = not all(math.isfinite(v) for v in values.values())
        if self.dist.enabled:  # every process stops together
            flag = torch.tensor(float(bad), device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            bad = bool(flag.item())
        if bad:
            shown = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
            kept = (f"{self.checkpoint_path} (iteration {self._saved_iter}) is kept as the last good checkpoint"
                    if self._saved_iter is not None else "no checkpoint had been written yet")
            raise TrainingError(
                f"non-finite {what} loss at iteration {it} ({shown}); training stopped. {kept}. Try a lower "
                "learning rate (train.optim_g.lr / optim_d.lr), train.grad_clip, or train.amp: false, then "
                "--resume.")

    def train_step(self, batch: dict, it: int) -> dict[str, float]:
        recipe = self.recipe
        for name, opt in self.optimizers.items():
            factor = lr_factor(it, self.config.train.scheduler, self.config.train.iters)
            for group, base in zip(opt.param_groups, self.base_lrs[name]):
                group["lr"] = base * factor
        batch = recipe.prepare(self._augment(batch), self.device)
        discriminators = list(recipe.discriminators.values())

        set_requires_grad(discriminators, False)
        with self._autocast():
            out = recipe.forward(self.net_train, batch)
            g_losses = recipe.generator_losses(out, batch, it)
        g_total = sum(g_losses.values())
        self._check_finite({**g_losses, "total": g_total}, it, "generator")
        opt_g = self.optimizers["g"]
        opt_g.zero_grad(set_to_none=True)
        self.scaler.scale(g_total).backward()
        if self.config.train.grad_clip:
            self.scaler.unscale_(opt_g)
            torch.nn.utils.clip_grad_norm_([p for g in opt_g.param_groups for p in g["params"]],
                                           self.config.train.grad_clip)
        self.scaler.step(opt_g)
        logs = {k: float(v.detach()) for k, v in g_losses.items()}

        if discriminators:
            set_requires_grad(discriminators, True)
            for name in recipe.discriminators:
                self.optimizers[name].zero_grad(set_to_none=True)
            with self._autocast():
                d_losses = recipe.discriminator_losses(out, batch, it)
            d_terms = {k: v for k, v in d_losses.items() if not k.endswith("_score")}
            self._check_finite(d_terms, it, "discriminator")
            self.scaler.scale(sum(d_terms.values())).backward()
            regularization = recipe.regularization_losses(batch, it)
            if regularization:
                self._check_finite(regularization, it, "regularization")
                self.scaler.scale(sum(regularization.values())).backward()
            for name in recipe.discriminators:
                self.scaler.step(self.optimizers[name])
            logs.update({k: float(v.detach()) for k, v in {**d_losses, **regularization}.items()})
        self.scaler.update()
        ema_cfg = self.config.train.ema
        update_ema(self.net_ema, self.net, ema_decay(ema_cfg.decay, it - 1, ema_cfg.warmup))
        logs["lr"] = self.config.train.optim_g.lr * lr_factor(it, self.config.train.scheduler, self.config.train.iters)
        return logs

    # -- validation and samples
    @torch.no_grad()
    def _validation_triples(self, items: Iterator[dict]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(input, EMA output, reference) uint8 images of validation items. Uses its own seeded random
        stream, so training draws are unaffected and every validation sees the same noise."""
        triples = []
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), self._autocast():
            torch.manual_seed(self.config.train.seed)
            while chunk := list(itertools.islice(items, self.config.data.batch_size)):
                batch = self.recipe.prepare(default_collate(chunk), self.device)
                triples += list(zip(*self.recipe.validation_pairs(self.net_ema, batch)))
        return triples

    def evaluate(self, it: int, metrics: bool = True, samples: bool = True) -> dict[str, float]:
        """Run the EMA generator on the validation faces: metric means of its outputs (`psnr`), of the
        degraded inputs (`psnr_input`) and of the model at iteration 0 (`psnr_init`, measured at the first
        validation of the run and kept), and a grid input | iteration 0 | now | ground truth."""
        from ..data import labelled_grid
        from ..imageio import write_image
        from ..metrics import get_metric

        metrics = metrics and self.val_set is not None
        mean: dict[str, float] = {}
        if metrics:
            if not self.metric_fns:  # networks (LPIPS, ...) load once
                self.metric_fns = {name: get_metric(name) for name in self.config.log.val_metrics}
            results: dict[str, list[float]] = {}
            for inp, outp, ref in self._validation_triples(fixed_items(self.val_set)):
                for name, metric in self.metric_fns.items():
                    results.setdefault(name, []).append(metric(outp, ref))
                    results.setdefault(f"{name}_input", []).append(metric(inp, ref))
            mean = {k: float(np.mean(v)) for k, v in results.items()}
            if self.init_metrics is None:  # this is the model the run starts from
                self.init_metrics = {f"{name}_init": mean[name] for name in self.metric_fns}
            mean.update(self.init_metrics)
        if samples and self.preview_items:
            triples = self._validation_triples(iter(self.preview_items))
            if self.init_outputs is None:
                self.init_outputs = [outp for _, outp, _ in triples]
            tiles, labels = [], []
            for (inp, outp, ref), first in zip(triples, self.init_outputs):
                tiles += [inp, first, outp, ref]
                labels += ["input", "iteration 0", f"EMA, iteration {it}", "ground truth"]
            grid = labelled_grid(tiles, labels, columns=4, tile=min(self.size, 256))
            write_image(self.out / "samples" / f"iter_{it:07d}.png", grid)
        return mean

    def _open_logs(self) -> None:
        """config.yaml, log.csv, val.csv and TensorBoard in the output folder; a resumed run drops what
        a killed run logged after its last checkpoint."""
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / "config.yaml", "w") as f:
            yaml.safe_dump(_plain(self.config.to_dict()), f, sort_keys=False)
        keep = self.iter if self.iter else None
        self.train_log = CSVLog(self.out / "log.csv", ["iter", "lr", *self.recipe.log_keys(), "sec_per_iter"], keep)
        metrics = [m for name in self.config.log.val_metrics for m in (name, f"{name}_input", f"{name}_init")]
        self.val_log = CSVLog(self.out / "val.csv", ["iter", *metrics], keep)
        if self.config.log.tensorboard:
            self.tb = tensorboard_writer(self.out / "tensorboard", self.iter + 1 if self.iter else None)

    def _log_losses(self, it: int, window: dict[str, list[float]], seconds: float, bar: tqdm) -> None:
        """Means over the logging window (and over processes) to log.csv, TensorBoard and the bar."""
        row = self._mean_over_processes({k: float(np.mean(v)) for k, v in window.items()})
        row["sec_per_iter"] = seconds / len(window["lr"])
        if not self.dist.is_main:
            return
        self.train_log.write({"iter": it, **row})
        if self.tb is not None:
            for k, v in row.items():
                self.tb.add_scalar(f"train/{k}", v, it)
        bar.set_postfix({k: f"{row[k]:.3g}" for k in self.recipe.log_keys()[:3] if k in row})

    @staticmethod
    def _lower_is_better(metric: str) -> bool:
        from ..metrics import list_metrics

        info = list_metrics().get(metric)
        return bool(info.lower_is_better) if info is not None else False

    def _log_validation(self, it: int, metrics: dict[str, float]) -> None:
        if not metrics:
            return
        self.last_metrics = {"iter": it, **metrics}
        self.val_log.write({"iter": it, **metrics})
        value = metrics.get(self.best_metric) if self.best_metric else None
        if value is not None:
            lower_is_better = self._lower_is_better(self.best_metric)
            if self.best_value is None or (value < self.best_value if lower_is_better else value > self.best_value):
                self.save_best(value)
        if self.tb is not None:
            for k, v in metrics.items():
                self.tb.add_scalar(f"val/{k}", v, it)

    # -- the loop
    def _batches(self) -> Iterator[dict]:
        sampler = StreamBatchSampler(len(self.train_set), self.config.data.batch_size, self.config.train.seed,
                                     start_iter=self.iter, rank=self.dist.rank, world_size=self.dist.world_size)
        loader = DataLoader(EpochIndexed(self.train_set), batch_sampler=sampler, num_workers=self.config.data.num_workers,
                            pin_memory=self.device.type == "cuda",
                            generator=torch.Generator().manual_seed(self.config.train.seed),  # not the global RNG
                            worker_init_fn=_ignore_sigint if self.config.data.num_workers > 0 else None)
        return iter(loader)

    def _install_signal_handlers(self) -> dict:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def request_stop(signum: int, _frame: Any) -> None:
            if self.stop_requested:
                raise KeyboardInterrupt
            self.stop_requested = True
            if self.dist.is_main:
                tqdm.write(f"{signal.Signals(signum).name}: saving a checkpoint after this iteration "
                           "(press Ctrl-C again to abort without saving)")

        previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, request_stop)
        return previous

    def _mean_over_processes(self, row: dict[str, float]) -> dict[str, float]:
        """Logged values averaged over the DDP processes (each saw its own part of the batch)."""
        if not self.dist.enabled:
            return row
        keys = sorted(row)
        values = torch.tensor([row[k] for k in keys], dtype=torch.float64, device=self.device)
        dist.all_reduce(values)
        return dict(zip(keys, (values / self.dist.world_size).tolist()))

    def _stop_agreed(self) -> bool:
        if not self.dist.enabled:
            return self.stop_requested
        flag = torch.tensor(float(self.stop_requested), device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def fit(self) -> dict[str, Any]:
        """Train up to config.train.iters; returns {"iter", "checkpoint", "metrics", "stopped"}."""
        cfg, log_cfg, total = self.config, self.config.log, self.config.train.iters
        is_main = self.dist.is_main
        self.tb = None
        if is_main:
            self._open_logs()
            if self.iter == 0:
                self._log_validation(0, self.evaluate(0))  # where the run starts from
        previous_handlers = self._install_signal_handlers()
        bar = tqdm(total=total, initial=self.iter, desc=cfg.name, unit="it", dynamic_ncols=True,
                   disable=not self.progress)
        window: dict[str, list[float]] = {}
        window_start = time.perf_counter()
        stopped = False
        try:
            batches = self._batches()
            for it in range(self.iter + 1, total + 1):
                try:
                    batch = next(batches)
                except RuntimeError:
                    if not self.stop_requested:  # a DataLoader worker died on Ctrl-C: state is that of it - 1
                        raise
                    stopped = True
                    break
                logs = self.train_step(batch, it)
                self.iter = it
                bar.update(1)
                for k, v in logs.items():
                    window.setdefault(k, []).append(v)
                if it % log_cfg.every == 0 or it == total:
                    self._log_losses(it, window, time.perf_counter() - window_start, bar)
                    window, window_start = {}, time.perf_counter()
                if is_main:
                    do_val = self.val_set is not None and (
                        (log_cfg.val_every and it % log_cfg.val_every == 0) or it == total)
                    do_samples = (log_cfg.sample_every and it % log_cfg.sample_every == 0) or it == total
                    if do_val or do_samples:
                        self._log_validation(it, self.evaluate(it, metrics=do_val, samples=do_samples))
                stopped = self._stop_agreed()
                if it % log_cfg.checkpoint_every == 0 or it == total or stopped:
                    self.save_checkpoint()
                    self._saved_iter = it
                if stopped:
                    break
            if stopped and self._saved_iter != self.iter:
                self.save_checkpoint()
                self._saved_iter = self.iter
        finally:
            bar.close()
            for sig, handler in previous_handlers.items():
                signal.signal(sig, handler)
            if self.tb is not None:
                self.tb.close()
        if stopped and is_main:
            tqdm.write(f"stopped at iteration {self.iter}; resume with --resume (checkpoint {self.checkpoint_path})")
        return {"iter": self.iter, "checkpoint": self.checkpoint_path, "metrics": dict(self.last_metrics),
                "stopped": stopped}


def _plain(value: Any) -> Any:
    """Tuples -> lists, recursively (YAML- and weights_only-friendly)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def train(config: Config | str | os.PathLike, *, hq: str | os.PathLike | None = None,
          lq: str | os.PathLike | None = None, iters: int | None = None, out: str | os.PathLike | None = None,
          resume: bool = False, device: str | torch.device | None = None, progress: bool = True,
          init: str | os.PathLike | None = None, degradation: str | os.PathLike | None = None,
          precision: str | None = None) -> dict[str, Any]:
    """Train from a config (a path or a Config); keyword arguments override the config's data.hq,
    data.lq, train.iters (the TOTAL count: a resumed run continues up to it), out, model.init (a zoo
    name, an official-layout weights file or a training checkpoint), data.degradation (a preset name
    or a YAML spec file) and train.precision (fp32, bf16, fp16)."""
    config = load_config(config) if not isinstance(config, Config) else copy.deepcopy(config)
    if hq is not None:
        config.data.hq = os.fspath(hq)
    if lq is not None:
        config.data.lq = os.fspath(lq)
    if iters is not None:
        if iters < 1:
            raise ConfigError("--iters must be at least 1")
        config.train.iters = int(iters)
    if out is not None:
        config.out = os.fspath(out)
    if init is not None:
        config.model.init = os.fspath(init)
    if degradation is not None:
        config.data.degradation = degradation_from_spec(degradation)
    if precision is not None:
        config.train.precision = precision
    config_from_dict(config.to_dict())  # the overrides pass the same checks as the YAML
    trainer = Trainer(config, resume=resume, device=device, progress=progress)
    try:
        return trainer.fit()
    finally:
        if trainer.dist.enabled and dist.is_initialized():
            dist.destroy_process_group()
