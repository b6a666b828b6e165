"""`facerestore upscale INPUT... -m realesrgan-x4plus -o OUTDIR`: Real-ESRGAN super-resolution of whole images
(RealESRGANer.enhance: tiles, 16-bit, grey and alpha kept). Outputs mirror the inputs as `restore` does."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm.auto import tqdm


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("upscale", help="upscale images with Real-ESRGAN", description=__doc__)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files and/or folders")
    p.add_argument("-m", "--model", default="realesrgan-x4plus", help="upscale zoo entry (default realesrgan-x4plus)")
    p.add_argument("-o", "--output", required=True, help="output folder (never one of the inputs)")
    p.add_argument("--weights", help="local weights file or URL (default: cache, then download)")
    p.add_argument("--no-pretrained", action="store_true", help="random weights (for testing the pipeline)")
    p.add_argument("--outscale", type=float, help="final size factor (default: the network's scale)")
    p.add_argument("--tile", type=int, default=None,
                   help="tile side in input pixels (default 400: memory bounded on any image size); 0 = the whole "
                        "image at once (the official default: tens of GB for a 12-megapixel photo at x4)")
    p.add_argument("--tile-pad", type=int, default=10)
    p.add_argument("--pre-pad", type=int, default=10)
    p.add_argument("--alpha-upsampler", default="realesrgan", choices=["realesrgan", "cv2"])
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--max-megapixels", type=float, default=None,
                   help="refuse images whose upscaled result would exceed this (default 250)")
    p.add_argument("--ext", default="auto", help="output format: auto (as input), png, jpg, webp, tif, bmp")
    p.add_argument("--suffix", default="", help="appended to output file names")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import load
    from ..registry import get_entry, list_models
    from ..imageio import find_images, read_image, write_image
    from ..pipeline import check_ext, output_file, plan_outputs
    from .restore import report

    check_ext(args.ext)
    # everything that would fail every image is checked before any work (and before a download)
    entry = get_entry(args.model)
    if entry.task != "upscale":
        upscalers = ", ".join(list_models(task="upscale"))
        raise ValueError(f"{entry.name} is a {entry.task} model, not an upscaler; use one of: {upscalers}")
    if args.outscale is not None and not args.outscale > 0:
        raise ValueError(f"--outscale must be > 0, got {args.outscale}")
    if min(args.tile or 0, args.tile_pad, args.pre_pad) < 0:
        raise ValueError("--tile, --tile-pad and --pre-pad must be >= 0")
    out_dir = Path(args.output)
    sources = find_images(args.inputs)
    if not sources:
        print("no input images found", file=sys.stderr)
        return 1
    upscaler = load(args.model, weights=args.weights, pretrained=not args.no_pretrained, device=args.device,
                    precision=args.precision)
    if args.max_megapixels is not None:
        upscaler.max_pixels = int(args.max_megapixels * 1e6)
    inputs = {src.resolve() for src, _ in sources if src.exists()}
    failed: list[tuple[Path, str]] = []
    for (src, _), stem in zip(tqdm(sources, desc=f"upscale ({args.model})", unit="img"), plan_outputs(sources, out_dir)):
        try:
            dst = output_file(stem, src, args.ext, args.suffix)
            if dst.resolve() in inputs:
                raise ValueError(f"output {dst} would overwrite an input; choose another --output or --suffix")
            out = upscaler.upscale(read_image(src), outscale=args.outscale, tile=args.tile, tile_pad=args.tile_pad,
                                   pre_pad=args.pre_pad, alpha_upsampler=args.alpha_upsampler)
            write_image(dst, out)
        except Exception as exc:  # one bad file must not stop the batch; all failures are reported at the end
            failed.append((src, f"{type(exc).__name__}: {exc}"))
    return report("upscaled", len(sources), failed, out_dir)
