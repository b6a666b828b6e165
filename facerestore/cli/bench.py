"""`facerestore bench --models gfpgan,gpen,dfdnet --data DIR -o RESULTS_DIR`: run models on the same
aligned faces and measure them the same way (results.csv/json/md and comparison grids).

DIR holds aligned HQ faces (degraded on the fly with --degradation and --seed) or lq/ and hq/ pairs.
A rerun with the same arguments skips the finished (model, face) pairs. Models and metrics whose
weights are not available offline are reported as skipped; any other error is reported as FAILED
with its traceback and makes the exit code 1; point at local files with FACERESTORE_LPIPS_BACKBONE,
FACERESTORE_NIQE_PARAMS, FACERESTORE_ARCFACE_WEIGHTS, FACERESTORE_FID_WEIGHTS."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..bench import DEFAULT_METRICS

    p = subparsers.add_parser("bench", help="benchmark restoration models on aligned faces", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", required=True, type=_names, help="comma-separated zoo names, e.g. gfpgan,gpen,dfdnet")
    p.add_argument("--data", required=True, help="folder of aligned HQ faces, or holding lq/ and hq/")
    p.add_argument("--degradation", help="preset for HQ-only folders (default gfpgan; see `facerestore degrade`)")
    p.add_argument("--seed", type=int, default=0, help="degradation and model-noise seed (default 0)")
    p.add_argument("--metrics", type=_names, default=list(DEFAULT_METRICS),
                   help=f"comma-separated (default {','.join(DEFAULT_METRICS)}; also deg, fid)")
    p.add_argument("--no-pretrained", action="store_true", help="untrained models (tests the pipeline only)")
    p.add_argument("-o", "--output", required=True, help="results folder (reused to resume)")
    p.add_argument("--size", type=int, default=512, help="faces are resized to SIZE x SIZE (default 512)")
    p.add_argument("--limit", type=int, help="only the first N faces")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--detector", default="retinaface-resnet50", help="face detector for LMD")
    p.add_argument("--detector-weights", help="local detector weights file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..bench import run_benchmark

    result = run_benchmark(args.models, args.data, degradation=args.degradation, seed=args.seed,
                           metrics=args.metrics, pretrained=not args.no_pretrained, out_dir=args.output,
                           device=args.device, limit=args.limit, size=args.size, detector=args.detector,
                           detector_weights=args.detector_weights)
    print((Path(args.output) / "results.md").read_text())
    print(f"results in {args.output}: results.csv, results.json, results.md, grids/")
    for what, text in result["tracebacks"].items():  # crashes are shown, never reported as skips
        print(f"FAILED {what}:\n{text}", file=sys.stderr)
    return 1 if result["failed_models"] or result["failed_metrics"] else 0
