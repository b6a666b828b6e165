"""`facerestore train CONFIG --hq DIR [--lq DIR] [--init NAME|FILE|CHECKPOINT] [--iters N] [--out DIR]
[--resume]`: fine-tune a zoo model (or train one from scratch) as a YAML config says; checkpoints
(last.pth, best.pth), logs (log.csv, val.csv) and sample grids go to --out. Multi-GPU:
`torchrun --nproc_per_node=N -m facerestore train CONFIG ...`."""
from __future__ import annotations

import argparse
import os
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="fine-tune or train a model from a YAML config", description=__doc__)
    p.add_argument("config", metavar="CONFIG", help="training config (see configs/*.yaml)")
    p.add_argument("--hq", metavar="DIR", help="folder of aligned high-quality faces (DPR: relighting data)")
    p.add_argument("--lq", metavar="DIR", help="folder of matching low-quality faces (same file names); "
                                               "without it the HQ faces are degraded on the fly")
    p.add_argument("--init", metavar="NAME|FILE|CHECKPOINT",
                   help="start from these weights: a zoo name (e.g. gfpgan-v1.4), a weights file in the family's "
                        "official layout, or a facerestore training checkpoint (last.pth/best.pth)")
    p.add_argument("--degradation", metavar="PRESET|FILE.yaml",
                   help="with --hq alone: the on-the-fly degradation (a preset name, as `facerestore degrade --preset` "
                        "takes, or a YAML file {preset: ..., ranges: {...}})")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"),
                   help="autocast precision (bf16 also on CPU; fp16 needs CUDA); default: the config's")
    p.add_argument("--iters", type=int, metavar="N", help="TOTAL number of iterations (a resumed run continues up to it)")
    p.add_argument("--out", metavar="DIR", help="output folder for checkpoints and logs (default runs/<name>)")
    p.add_argument("--resume", action="store_true", help="continue from DIR/last.pth exactly where it stopped")
    p.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: CUDA when available)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..train import ConfigError, train

    try:
        result = train(args.config, hq=args.hq, lq=args.lq, iters=args.iters, out=args.out, resume=args.resume,
                       device=args.device, progress=args.progress, init=args.init, degradation=args.degradation,
                       precision=args.precision)
    except (FileExistsError, ConfigError) as exc:
        print(f"facerestore train: error: {exc}", file=sys.stderr)
        return 1
    if int(os.environ.get("RANK", "0")) != 0:  # torchrun: one report, from rank 0
        return 0
    metrics = ", ".join(f"{k} {v:.3f}" for k, v in result["metrics"].items() if k != "iter")
    print(f"{'stopped' if result['stopped'] else 'done'} at iteration {result['iter']}: {result['checkpoint']}"
          + (f" ({metrics})" if metrics else ""))
    return 0
