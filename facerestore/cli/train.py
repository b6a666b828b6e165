"""`facerestore train CONFIG --hq DIR [--lq DIR] [--iters N] [--out DIR] [--resume]`: fine-tune a zoo
model (or train one from scratch) as a YAML config says; checkpoints (last.pth), logs and samples go to
--out. Multi-GPU: `torchrun --nproc_per_node=N -m facerestore train CONFIG ...`."""
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
    p.add_argument("--iters", type=int, metavar="N", help="TOTAL number of iterations (a resumed run continues up to it)")
    p.add_argument("--out", metavar="DIR", help="output folder for checkpoints and logs (default runs/<name>)")
    p.add_argument("--resume", action="store_true", help="continue from DIR/last.pth exactly where it stopped")
    p.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: CUDA when available)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..train import train

    try:
        result = train(args.config, hq=args.hq, lq=args.lq, iters=args.iters, out=args.out, resume=args.resume,
                       device=args.device, progress=args.progress)
    except FileExistsError as exc:
        print(f"facerestore train: error: {exc}", file=sys.stderr)
        return 1
    if int(os.environ.get("RANK", "0")) != 0:  # torchrun: one report, from rank 0
        return 0
    metrics = ", ".join(f"{k} {v:.3f}" for k, v in result["metrics"].items() if k != "iter")
    print(f"{'stopped' if result['stopped'] else 'done'} at iteration {result['iter']}: {result['checkpoint']}"
          + (f" ({metrics})" if metrics else ""))
    return 0
