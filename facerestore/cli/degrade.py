"""`facerestore degrade IMAGE --preset gfpgan -n 8 --seed 0 -o grid.png`: preview a degradation preset
(a labelled grid of one face under N seeded draws), or write single degraded copies with --each."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..data import list_presets

    p = subparsers.add_parser("degrade", help="preview synthetic degradations (training/benchmark presets)",
                              description=__doc__)
    p.add_argument("image", metavar="IMAGE", help="a face image (aligned crops show the effect best)")
    p.add_argument("--preset", default="gfpgan", help=f"one of: {', '.join(list_presets())} (default gfpgan)")
    p.add_argument("-n", type=int, default=8, help="number of draws (default 8)")
    p.add_argument("--seed", type=int, default=0, help="first seed; draw k uses seed+k (default 0)")
    p.add_argument("-o", "--output", required=True, help="grid image to write (png/jpg)")
    p.add_argument("--tile", type=int, default=256, help="tile size in the grid (default 256)")
    p.add_argument("--columns", type=int, default=3, help="tiles per row (default 3)")
    p.add_argument("--each", metavar="DIR", help="also write every degraded image at full size and its "
                                                 "parameters (JSON) into DIR")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..data import degrade, preview_degradations
    from ..imageio import read_image, write_image

    if args.n < 1:
        print("facerestore degrade: -n must be at least 1", file=sys.stderr)
        return 2
    img = read_image(args.image)
    grid = preview_degradations(img, args.preset, n=args.n, seed=args.seed, tile=args.tile, columns=args.columns)
    write_image(args.output, grid)
    last = args.seed + args.n - 1
    print(f"wrote {args.output} ({args.n} draws of preset {args.preset!r}, seeds {args.seed}..{last})")
    if args.each:
        out_dir = Path(args.each)
        stem = Path(args.image).stem
        for k in range(args.seed, args.seed + args.n):
            out, params = degrade(img, args.preset, seed=k, return_params=True)
            write_image(out_dir / f"{stem}_{args.preset}_seed{k}.png", out)
            (out_dir / f"{stem}_{args.preset}_seed{k}.json").write_text(json.dumps(params, indent=1))
        print(f"wrote {args.n} degraded images and their parameters to {out_dir}")
    return 0
