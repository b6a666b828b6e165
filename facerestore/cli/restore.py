"""`facerestore restore INPUT... -m MODEL -o OUTDIR`: restore photos, videos, or folders of both.

Every input gets its own output: OUTDIR mirrors the structure of input folders; inputs whose names
differ only by extension get it added to the name (x.png, x.jpg -> x_png.*, x_jpg.*), names that still
coincide get _2, _3, ...; an output that would be an input file is refused. Files that cannot be
read or restored are listed by name at the end and make the exit code 1; the rest are written.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..pipeline import check_ext


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("restore", help="restore faces in photos and videos", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image/video files and/or folders")
    p.add_argument("-m", "--model", default="gfpgan", help="zoo name (default: gfpgan = gfpgan-v1.4)")
    p.add_argument("-o", "--output", required=True, help="output folder (never one of the inputs)")
    p.add_argument("--weights", help="local weights file/folder or URL (default: cache, then download)")
    p.add_argument("--no-pretrained", action="store_true", help="random weights (for testing the pipeline)")
    p.add_argument("--upscale", type=float, default=1, help="output size factor (default 1)")
    p.add_argument("--max-megapixels", type=float, default=None,
                   help="largest output image in megapixels (default 250; larger ones are reported as failed)")
    p.add_argument("--aligned", action="store_true", help="inputs are aligned face crops")
    p.add_argument("--only-center-face", action="store_true")
    p.add_argument("--max-faces", type=int)
    p.add_argument("--fidelity", type=float, default=None,
                   help="0..1; CodeFormer: its fidelity weight w (default 0.5); others: 0 = model output (default), "
                        "1 = input face (blend)")
    p.add_argument("--paste", choices=["parse", "box", "gpen", "feather"],
                   help="paste-back mask (default: the model's official one, see the README)")
    p.add_argument("--parser", help="face parser of the parse/gpen paste (default: parsenet)")
    p.add_argument("--parser-weights", help="local weights file of the face parser")
    p.add_argument("--bg-upsampler", help="background upsampler zoo name, e.g. realesrgan-x2plus (default: resize)")
    p.add_argument("--bg-upsampler-weights", help="local weights file of the background upsampler")
    p.add_argument("--detector", default="retinaface-resnet50")
    p.add_argument("--detector-weights")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--seed", type=int, help="reproducible noise for models that draw it")
    p.add_argument("--ext", default="auto", help="output format: auto (as input), png, jpg, webp, tif, bmp")
    p.add_argument("--suffix", default="", help="appended to output file names")
    p.add_argument("--save-faces", action="store_true", help="also write aligned input and restored faces")
    p.add_argument("--crf", type=int, default=18, help="video quality (H.264 CRF, lower = better; default 18)")
    p.add_argument("--video-codec", default="libx264", help="video encoder (default libx264; libx265, "
                   "libvpx-vp9, libsvtav1, ffv1, ...)")
    p.add_argument("--sequential", action="store_true",
                   help="one photo after the other (default: reading, detection, network, paste-back and "
                        "writing of consecutive photos overlap; the outputs are the same)")
    p.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                   help="run on a Ray cluster (pip install 'facerestore[ray]'): no ADDRESS starts a local one; "
                        "'auto' or ray://host:10001 joins an existing one (outputs must be on a shared file system)")
    p.add_argument("--ray-workers", type=int, default=2, help="Ray: model replicas (actors), one model each (default 2)")
    p.add_argument("--retries", type=int, default=2, help="Ray: extra attempts for a failed input (default 2)")
    p.set_defaults(func=run)


def report(verb: str, total: int, failed: list[tuple[Path, str]], out_dir: Path, interrupted: bool = False) -> int:
    """Print what was done and each failure by name; the exit code (0 all done, 1 some failed)."""
    done = total - len(failed)
    print(f"{verb} {done} of {total} images into {out_dir}" + (" (interrupted)" if interrupted else ""))
    for src, why in failed:
        print(f"FAILED {src}: {why}", file=sys.stderr)
    return 1 if failed else 0


def run(args: argparse.Namespace) -> int:
    from .. import load
    from ..pipeline import FolderInterrupted, find_inputs, restore_folder

    check_ext(args.ext)
    out_dir = Path(args.output)
    if not find_inputs(args.inputs):
        print("no input images found", file=sys.stderr)
        return 1
    if args.ray is not None:
        from ..distributed import restore_with_ray

        summary = restore_with_ray(args.inputs, out_dir, model=args.model, address=args.ray or None,
                                   num_workers=args.ray_workers, retries=args.retries,
                                   video_options={"crf": args.crf, "codec": args.video_codec},
                                   **_load_options(args), **_restore_options(args))
        return report("restored", summary.total, summary.failed, out_dir)
    restorer = load(args.model, **_load_options(args))
    if args.max_megapixels is not None:
        restorer.max_pixels = int(args.max_megapixels * 1e6)
    try:
        summary = restore_folder(restorer, args.inputs, out_dir, **_restore_options(args),
                                 video_options={"crf": args.crf, "codec": args.video_codec},
                                 pipelined=not args.sequential)
    except FolderInterrupted as stopped:
        report("restored", stopped.summary.done, stopped.summary.failed, out_dir, interrupted=True)
        raise
    return report("restored", summary.total, summary.failed, out_dir)


def _load_options(args: argparse.Namespace) -> dict:
    """The arguments of facerestore.load given on the command line."""
    return dict(weights=args.weights, pretrained=not args.no_pretrained, device=args.device,
                precision=args.precision, detector=args.detector, detector_weights=args.detector_weights,
                parser=args.parser, parser_weights=args.parser_weights, upsampler=args.bg_upsampler,
                upsampler_weights=args.bg_upsampler_weights)


def _restore_options(args: argparse.Namespace) -> dict:
    """The options of restore_folder (and restore_with_ray) given on the command line."""
    return dict(ext=args.ext, suffix=args.suffix, save_faces=args.save_faces, upscale=args.upscale,
                aligned=args.aligned, only_center_face=args.only_center_face, max_faces=args.max_faces,
                fidelity=args.fidelity, seed=args.seed, paste=args.paste)
