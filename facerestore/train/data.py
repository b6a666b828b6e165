"""Training data: the datasets a config asks for, a data order that a resumed run repeats exactly,
validation sets, and DPR's relighting pairs.

Data order: the sampler draws a stream of indices, one fresh permutation per epoch (seeded by
(seed, epoch)), and iteration t of the run takes stream positions [t*B*W, (t+1)*B*W) (B: batch per
process, W: processes), each process its own B. Every position also carries its epoch, which fixes
the on-the-fly degradation of that item (DegradedFolderDataset draws it from (seed, index, epoch)).
So the batches of iteration t depend only on (seed, t), whether the run was resumed or not and
whatever the number of DataLoader workers.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from ..data import DegradedFolderDataset, PairedFolderDataset, get_preset
from ..data.degradations import Preset
from ..imageio import list_images, read_image
from .config import Config, ConfigError


class StreamBatchSampler:
    """Infinite batches of (index, epoch) for one process, starting at iteration `start_iter`."""

    def __init__(self, num_items: int, batch_size: int, seed: int = 0, start_iter: int = 0, rank: int = 0,
                 world_size: int = 1) -> None:
        if num_items < 1:
            raise ValueError("the training set is empty")
        self.num_items, self.batch_size, self.seed = num_items, batch_size, seed
        self.start_iter, self.rank, self.world_size = start_iter, rank, world_size

    def permutation(self, epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.num_items, generator=generator).tolist()

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        per_iter = self.batch_size * self.world_size
        position = self.start_iter * per_iter + self.rank * self.batch_size
        epoch, order = -1, []
        while True:
            batch = []
            for p in range(position, position + self.batch_size):
                if p // self.num_items != epoch:
                    epoch = p // self.num_items
                    order = self.permutation(epoch)
                batch.append((order[p % self.num_items], epoch))
            yield batch
            position += per_iter


class EpochIndexed(Dataset):
    """Wraps a dataset so it is indexed by (index, epoch): the epoch is set before loading the item
    (for datasets with `set_epoch`, whose random draws depend on it)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, epoch = key
        target = self.dataset.dataset if isinstance(self.dataset, Subset) else self.dataset
        if hasattr(target, "set_epoch"):
            target.set_epoch(epoch)
        return self.dataset[index]


def degradation_preset(config: Config) -> Preset:
    """The configured preset, with `ranges` overrides applied (e.g. milder blur for tiny images)."""
    degradation = config.data.degradation
    preset = get_preset(degradation.preset)
    unknown = sorted(set(degradation.ranges) - set(preset.ranges))
    if unknown:
        raise ConfigError(f"data.degradation.ranges: {', '.join(unknown)} not in preset {preset.name!r} "
                          f"(its ranges: {', '.join(preset.ranges)})")
    if not degradation.ranges:
        return preset
    ranges = {k: tuple(v) if isinstance(v, list) else v for k, v in degradation.ranges.items()}
    return dataclasses.replace(preset, name=f"{preset.name}-custom", ranges={**preset.ranges, **ranges})


def _require_folder(path: str | os.PathLike | None, what: str) -> Path:
    if not path:
        raise ConfigError(f"no {what} folder: pass --hq DIR (or set data.hq in the config)")
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} folder {folder} does not exist")
    return folder


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of an image file, from its header when Pillow can read it."""
    try:
        from PIL import Image

        with Image.open(path) as img:
            return img.size
    except Exception:  # no Pillow, or a format only OpenCV reads
        img = read_image(path, cv2.IMREAD_UNCHANGED)
        return img.shape[1], img.shape[0]


def _problem_list(problems: list[str]) -> str:
    shown = "\n  ".join(problems[:10])
    return shown + (f"\n  (+{len(problems) - 10} more)" if len(problems) > 10 else "")


_ALIGN_HINT = ("Training faces must be aligned squares (the face template the model was trained on): align the "
               "photos first (set data.align: true to align them with the face detector), or crop them yourself.")


def check_aligned_faces(paths: list[Path], size: int) -> None:
    """HQ faces must be aligned squares at least as large as the training size (they are resized to it)."""
    problems = []
    for path in paths:
        width, height = image_size(path)
        if width != height:
            problems.append(f"{path}: {width}x{height} is not square, so not an aligned face")
        elif width < size:
            problems.append(f"{path}: {width}x{height} is smaller than the training size {size} (it would be "
                            "upscaled: use larger faces or a smaller data.size)")
    if problems:
        raise ConfigError(f"{len(problems)} HQ image(s) cannot be used as they are:\n  {_problem_list(problems)}\n"
                          + _ALIGN_HINT)


def check_pairs(pairs: list[tuple[str, Path, Path]], size: int) -> None:
    """LQ/HQ pairs (matched by name) must be aligned squares; an LQ may be smaller or larger than its HQ
    (e.g. the 128 px inputs of 512 px targets): both are resized to the training size, as the network
    restores at equal size. A non-square LQ cannot be the same aligned crop and is an error."""
    check_aligned_faces([hq for _, _, hq in pairs], size)
    problems = []
    for name, lq_path, hq_path in pairs:
        (width, height), hq_size = image_size(lq_path), image_size(hq_path)
        if width != height:
            problems.append(f"{name}: {lq_path} is {width}x{height}, not square, but {hq_path} is "
                            f"{hq_size[0]}x{hq_size[1]}")
    if problems:
        raise ConfigError(f"{len(problems)} LQ image(s) are not square:\n  {_problem_list(problems)}\n"
                          "An LQ face must be the same aligned crop as its HQ face (at any size: it is resized to the "
                          "training size), or set data.align: true to crop both with the HQ's face alignment.")


def aligner_options(config: Config, template: str) -> dict:
    """The datasets' face-alignment arguments from `data.align`, `data.detector(_weights)` and the model's
    alignment template."""
    return dict(align=config.data.align, detector=config.data.detector, detector_weights=config.data.detector_weights,
                template=template)


def paired_dataset(lq: str | os.PathLike, hq: str | os.PathLike, size: int, align: bool,
                   **aligner: Any) -> PairedFolderDataset:
    """LQ/HQ pairs matched by file name (a name in one folder only is an error listing them), checked."""
    try:
        dataset = PairedFolderDataset(lq_dir=lq, hq_dir=hq, size=size, align=align, **aligner)
    except ValueError as exc:
        raise ConfigError(f"{exc}. Pairs are matched by file name without extension: rename or remove the "
                          "unmatched files") from None
    if not align:
        check_pairs(dataset.pairs, size)
    return dataset


def degraded_dataset(hq: str | os.PathLike, config: Config, size: int, seed: int,
                     template: str = "ffhq") -> DegradedFolderDataset:
    dataset = DegradedFolderDataset(hq, degradation_preset(config), size=size, seed=seed,
                                    **aligner_options(config, template))
    if not config.data.align:
        check_aligned_faces([path for _, path in dataset.files], size)
    return dataset


def restoration_datasets(config: Config, size: int, template: str = "ffhq") -> tuple[Dataset, Dataset | None]:
    """(train, validation) datasets of {"lq", "hq"} pairs, RGB in [-1, 1], per the config: real pairs
    (data.lq) or HQ faces degraded on the fly (data.degradation); checked for matching names, square
    aligned faces and square LQs, with errors that list the files. With data.align, photos are
    aligned to `template` (the model's) first."""
    data = config.data
    hq = _require_folder(data.hq, "HQ")
    aligner = {k: v for k, v in aligner_options(config, template).items() if k != "align"}
    if data.lq:
        full = paired_dataset(_require_folder(data.lq, "LQ"), hq, size, data.align, **aligner)
    else:
        full = degraded_dataset(hq, config, size, config.train.seed, template)
    if data.val_hq:
        if data.val_lq:
            val = paired_dataset(data.val_lq, data.val_hq, size, data.align, **aligner)
        else:  # fixed degradations: seed 10_000 + train seed, epoch 0
            val = degraded_dataset(data.val_hq, config, size, 10_000 + config.train.seed, template)
        return full, val
    return split_holdout(full, data.val_count, config)


def split_holdout(full: Dataset, count: int, config: Config) -> tuple[Dataset, Dataset | None]:
    """Hold the last `count` items out of training for validation."""
    if count <= 0:
        return full, None
    if count >= len(full):
        raise ConfigError(f"data.val_count = {count} leaves no training images (the folder has {len(full)})")
    train = Subset(full, range(len(full) - count))
    val = Subset(full, range(len(full) - count, len(full)))
    return train, val


def fixed_items(dataset: Dataset, limit: int | None = None) -> Iterator[dict]:
    """The first items of a dataset as loaded in epoch 0, so validation inputs never change (the
    epoch is set before each item: a held-out Subset shares its dataset with training)."""
    target = dataset.dataset if isinstance(dataset, Subset) else dataset
    count = len(dataset) if limit is None else min(limit, len(dataset))
    for i in range(count):
        if hasattr(target, "set_epoch"):
            target.set_epoch(0)
        yield dataset[i]


# ---- DPR relighting data ------------------------------------------------------------------------------
def read_l_channel(path: str | os.PathLike, size: int | None) -> torch.Tensor:
    """The L channel (OpenCV Lab on uint8) of an image as (1, S, S) float in [0, 1], as DPR's demo reads it."""
    img = read_image(path, cv2.IMREAD_COLOR)
    if size is not None and img.shape[:2] != (size, size):
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_LINEAR)
    lab = cv2.cvtColor(img, cv2.COLOR_BGR2LAB)
    return torch.from_numpy(lab[:, :, 0].astype(np.float32) / 255.0)[None]


def read_sh(path: str | os.PathLike) -> torch.Tensor:
    """9 SH coefficients from a DPR light file (one value per line; extra values are ignored)."""
    values = np.loadtxt(path, dtype=np.float64).reshape(-1)
    if values.size < 9:
        raise ValueError(f"{path}: a light file needs 9 SH coefficients, found {values.size}")
    return torch.from_numpy(values[:9].astype(np.float32))


class RelightFolderDataset(Dataset):
    """DPR-style relighting data: one folder per face, holding the face under several lights.

    Layout (DPR's released training data): `root/<face>/<face>_<NN>.png` with the light of each in
    `root/<face>/<face>_light_<NN>.txt` (9 SH coefficients). Item i is a pair of two different
    lightings of face i, drawn from (seed, i, epoch): {"src", "tgt"} (1, S, S) L channels in [0, 1],
    {"src_sh", "tgt_sh"} (9,), "name".
    """

    def __init__(self, root: str | os.PathLike, size: int | None = 512, seed: int = 0) -> None:
        root = Path(root)
        self.faces: list[tuple[str, list[tuple[Path, Path]]]] = []
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            views = []
            for image in list_images([folder]):
                light = image.with_name(image.stem.rsplit("_", 1)[0] + "_light_" + image.stem.rsplit("_", 1)[-1] + ".txt")
                if light.is_file():
                    views.append((image, light))
            if len(views) >= 2:
                self.faces.append((folder.name, views))
        if not self.faces:
            raise FileNotFoundError(
                f"{root} holds no relighting data: expected <face>/<face>_NN.png with <face>/<face>_light_NN.txt "
                "(at least two lightings per face)")
        self.size, self.seed, self.epoch = size, int(seed), 0

    def __len__(self) -> int:
        return len(self.faces)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __getitem__(self, index: int) -> dict[str, Any]:
        name, views = self.faces[index]
        rng = np.random.default_rng([self.seed, index, self.epoch])
        a, b = rng.choice(len(views), size=2, replace=False)
        (src_img, src_light), (tgt_img, tgt_light) = views[a], views[b]
        return {"src": read_l_channel(src_img, self.size), "src_sh": read_sh(src_light),
                "tgt": read_l_channel(tgt_img, self.size), "tgt_sh": read_sh(tgt_light), "name": name}


def relight_datasets(config: Config, size: int) -> tuple[Dataset, Dataset | None]:
    data = config.data
    full = RelightFolderDataset(_require_folder(data.hq, "relighting data"), size=size, seed=config.train.seed)
    if data.val_hq:
        return full, RelightFolderDataset(data.val_hq, size=size, seed=10_000 + config.train.seed)
    return split_holdout(full, data.val_count, config)
