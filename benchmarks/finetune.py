"""Does fine-tuning help? Two measured stages on real FFHQ faces (shared/data), held-out faces only.

A. Restoration from scratch: the tiny GPEN pixel recipe (configs/tiny_gpen_pixel.yaml, 64 px) trains on
   17 faces (FFHQ 00000-00003 + the 13 aligned faces of data/real/cropped) degraded on the fly, and is
   validated on 3 held-out FFHQ faces (00004-00006) with fixed degradations: PSNR/SSIM of the degraded
   input, of the random network at iteration 0, and of the EMA network at the end.
B. Domain shift: a new degradation (the `jpeg-colorcast` preset: a warm colour cast plus strong JPEG) as
   custom LQ/HQ pairs (`--hq DIR --lq DIR`), 8 training pairs; starting from A's best.pth (`--init`),
   fine-tuning improves PSNR on the 3 held-out faces of that domain over the starting model.

    python benchmarks/finetune.py [--iters-a 800] [--iters-b 200] [--out runs/finetune-benchmark]
                                  [--grid docs/finetune_grid.jpg]

Prints the before/after table and writes a grid (per held-out face: A input | A restored | HQ |
B input | B before fine-tuning | B after | HQ) as JPEG. Seeded (seed 0, 1 thread): a rerun on the
same machine prints the same numbers; other CPUs may differ in the last digits.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facerestore.data import degrade  # noqa: E402
from facerestore.train import load_config, read_csv, train  # noqa: E402

CONFIG = ROOT / "configs" / "tiny_gpen_pixel.yaml"
SIZE = 64
HELD_OUT = ("00004", "00005", "00006")  # FFHQ faces never trained on
DOMAIN = "jpeg-colorcast"


def shared_dir() -> Path:
    return Path(os.environ.get("FACERESTORE_SHARED", ROOT.parent / "shared")).resolve()


def prepare_faces(shared: Path, out: Path, size: int = SIZE) -> tuple[Path, Path]:
    """(train folder, held-out folder) of aligned real faces resized to `size` (area)."""
    train_dir, val_dir = out / "train_hq", out / "val_hq"
    train_dir.mkdir(parents=True, exist_ok=True)
    val_dir.mkdir(parents=True, exist_ok=True)
    sources = [(p, f"ffhq_{p.stem}", p.stem in HELD_OUT) for p in sorted((shared / "data/ffhq/hq").glob("*.png"))]
    sources += [(p, f"real_{p.stem}", False) for p in sorted((shared / "data/real/cropped").glob("*.png"))]
    if len(sources) < 10:
        raise FileNotFoundError(f"{shared}/data/ffhq/hq and data/real/cropped hold too few faces: "
                                "set FACERESTORE_SHARED to the shared/ folder")
    for path, name, held_out in sources:
        img = cv2.resize(cv2.imread(str(path)), (size, size), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str((val_dir if held_out else train_dir) / f"{name}.png"), img)
    return train_dir, val_dir


def make_pairs(hq_dir: Path, out: Path, count: int | None, seed: int) -> tuple[Path, Path]:
    """(hq, lq) folders of `count` faces of hq_dir and their `jpeg-colorcast` degradations (seeded per face)."""
    hq_out, lq_out = out / "hq", out / "lq"
    hq_out.mkdir(parents=True, exist_ok=True)
    lq_out.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(sorted(hq_dir.glob("*.png"))[:count]):
        img = cv2.imread(str(path))
        cv2.imwrite(str(hq_out / path.name), img)
        cv2.imwrite(str(lq_out / path.name), degrade(img, DOMAIN, seed=seed + i))
    return hq_out, lq_out


def stage_a(train_dir: Path, val_dir: Path, out: Path, iters: int) -> dict[str, float]:
    """Train the tiny pixel recipe from scratch; the last and best rows of its val.csv."""
    config = load_config(CONFIG)
    config.data.val_hq, config.data.val_count = str(val_dir), 0
    config.log.val_every = min(config.log.val_every, iters)
    train(config, hq=train_dir, iters=iters, out=out, device="cpu", progress=False)
    return summarize(out)


def stage_b(init: Path, pairs: tuple[Path, Path], val_pairs: tuple[Path, Path], out: Path, iters: int) -> dict:
    """Fine-tune from `init` on custom jpeg-colorcast pairs, validated on held-out pairs of that domain."""
    config = load_config(CONFIG)
    config.name = "tiny-gpen-pixel-colorcast"
    config.data.val_hq, config.data.val_lq, config.data.val_count = str(val_pairs[0]), str(val_pairs[1]), 0
    config.train.optim_g.lr = 2e-3  # fine-tuning: below the from-scratch 5e-3
    config.train.ema.decay = 0.95
    config.log.val_every = max(1, iters // 4)
    config.log.sample_every = iters
    train(config, hq=pairs[0], lq=pairs[1], init=init, iters=iters, out=out, device="cpu", progress=False)
    return summarize(out)


def summarize(out: Path) -> dict[str, float]:
    rows = read_csv(out / "val.csv")
    best = max(rows, key=lambda r: r["psnr"])
    return {"input": rows[-1]["psnr_input"], "init": rows[-1]["psnr_init"], "final": rows[-1]["psnr"],
            "best": best["psnr"], "best_iter": best["iter"], "ssim_input": rows[-1]["ssim_input"],
            "ssim_init": rows[-1]["ssim_init"], "ssim_final": rows[-1]["ssim"]}


def restore_all(config: Path, weights: Path, lq: list[np.ndarray]) -> list[np.ndarray]:
    import facerestore

    restorer = facerestore.load(config, weights=weights, device="cpu", detector=None)
    return [restorer.restore(face, aligned=True, seed=0) for face in lq]


def comparison_grid(out: Path, val_dir: Path, val_pairs: tuple[Path, Path], grid_path: Path) -> None:
    """Per held-out face: A input | A restored | HQ | B input | B before fine-tuning | B after | HQ."""
    from facerestore.data import labelled_grid
    from facerestore.data.datasets import DegradedFolderDataset
    from facerestore.train.data import degradation_preset

    config = load_config(CONFIG)
    val_a = DegradedFolderDataset(val_dir, degradation_preset(config), size=SIZE, seed=10_000 + config.train.seed)
    a_pairs = [val_a.load(i) for i in range(len(val_a))]
    a_lq = [lq for _, lq, _, _ in a_pairs]
    hq = [hq for _, _, hq, _ in a_pairs]
    b_lq = [cv2.imread(str(p)) for p in sorted(val_pairs[1].glob("*.png"))]
    a_out = restore_all(CONFIG, out / "a" / "best.pth", a_lq)
    b_before = restore_all(CONFIG, out / "a" / "best.pth", b_lq)
    b_after = restore_all(CONFIG, out / "b" / "best.pth", b_lq)
    tiles, labels = [], []
    for i in range(len(hq)):
        tiles += [a_lq[i], a_out[i], hq[i], b_lq[i], b_before[i], b_after[i], hq[i]]
        labels += ["A input", "A restored", "HQ", "B input", "B before FT", "B after FT", "HQ"]
    grid = labelled_grid(tiles, labels, columns=7, tile=128)
    grid_path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(grid_path), grid, [cv2.IMWRITE_JPEG_QUALITY, 85])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters-a", type=int, default=800, help="stage A iterations (from scratch)")
    parser.add_argument("--iters-b", type=int, default=200, help="stage B iterations (fine-tuning)")
    parser.add_argument("--pairs", type=int, default=8, help="stage B training pairs")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "finetune-benchmark")
    parser.add_argument("--grid", type=Path, default=None, help="grid JPEG (default OUT/finetune_grid.jpg)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: reproducible numbers)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if (args.out / "a" / "last.pth").exists():
        raise SystemExit(f"{args.out} holds an earlier run: remove it or pass another --out")
    train_dir, val_dir = prepare_faces(shared_dir(), args.out / "faces")

    start = time.perf_counter()
    a = stage_a(train_dir, val_dir, args.out / "a", args.iters_a)
    seconds_a = time.perf_counter() - start
    pairs = make_pairs(train_dir, args.out / "colorcast_train", args.pairs, seed=0)
    val_pairs = make_pairs(val_dir, args.out / "colorcast_val", None, seed=1000)
    start = time.perf_counter()
    b = stage_b(args.out / "a" / "best.pth", pairs, val_pairs, args.out / "b", args.iters_b)
    seconds_b = time.perf_counter() - start
    grid = args.grid or args.out / "finetune_grid.jpg"
    comparison_grid(args.out, val_dir, val_pairs, grid)

    print(f"held-out faces: {len(list(val_dir.glob('*.png')))} FFHQ faces at {SIZE} px; PSNR dB (SSIM)")
    print("| stage | degradation | degraded input | starting model | after training (best) | iterations | time |")
    print("|---|---|---|---|---|---|---|")
    print(f"| A: tiny GPEN from scratch | gpen (64 px ranges) | {a['input']:.2f} ({a['ssim_input']:.3f}) | "
          f"{a['init']:.2f} ({a['ssim_init']:.3f}) random init | {a['final']:.2f} ({a['ssim_final']:.3f}); "
          f"best {a['best']:.2f} at {a['best_iter']:.0f} | {args.iters_a} | {seconds_a:.0f} s |")
    print(f"| B: fine-tune A on {args.pairs} pairs | {DOMAIN} | {b['input']:.2f} ({b['ssim_input']:.3f}) | "
          f"{b['init']:.2f} ({b['ssim_init']:.3f}) model A | {b['final']:.2f} ({b['ssim_final']:.3f}); "
          f"best {b['best']:.2f} at {b['best_iter']:.0f} | {args.iters_b} | {seconds_b:.0f} s |")
    print(f"grid: {grid}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
