"""`facerestore relight INPUT... (--light FILE | --direction x,y,z) -o OUTDIR`: relight portraits with DPR.

Directions are in the view frame: x to the image right, y up, z toward the camera; e.g.
`--direction 1,0,1` is a light from the front right, `--direction=-1,0,1` one from the front left.
`--sweep N` turns the light around the face in N steps and writes every frame plus a contact sheet
with the lit-sphere preview of each light.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm.auto import tqdm


def parse_direction(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected x,y,z (three numbers, e.g. 1,0,1), got {text!r}")
    return values  # type: ignore[return-value]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("relight", help="relight portraits (DPR)", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files and/or folders")
    light = p.add_mutually_exclusive_group(required=True)
    light.add_argument("--light", metavar="FILE", help="SH light file (9 numbers, one per line, as DPR's example_light/)")
    light.add_argument("--direction", type=parse_direction, metavar="X,Y,Z",
                       help="light direction: x right, y up, z toward the camera "
                            "(write --direction=-1,0,1 when x is negative)")
    p.add_argument("--intensity", type=float, help="directional strength with --direction (default 1.18)")
    p.add_argument("--ambient", type=float, help="ambient light with --direction (default 0.38)")
    p.add_argument("-m", "--model", default="dpr", help="dpr (= dpr-512) or dpr-1024")
    p.add_argument("-o", "--output", required=True, help="output folder (never one of the inputs)")
    p.add_argument("--weights", help="local weights file/folder or URL (default: cache, then download)")
    p.add_argument("--detect", action="store_true", help="whole photos: relight every detected face")
    p.add_argument("--keep-aspect", action="store_true", help="pad to a square instead of squashing the portrait")
    p.add_argument("--detector", default="retinaface-resnet50", help="face detector for --detect")
    p.add_argument("--detector-weights")
    p.add_argument("--sweep", type=int, metavar="N", help="N frames of the light turning around the face + a contact sheet")
    p.add_argument("--save-light-preview", action="store_true", help="also write the lit-sphere preview of the light")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--ext", default="auto", help="output format: auto (as input), png, jpg, ...")
    p.add_argument("--suffix", default="", help="appended to output file names")
    p.set_defaults(func=run)


def build_light(args: argparse.Namespace):
    from ..shlight import DEFAULT_AMBIENT, DEFAULT_INTENSITY, SHLight

    if args.light:
        if args.intensity is not None or args.ambient is not None:
            raise ValueError("--intensity/--ambient go with --direction; a light file already fixes them")
        return SHLight.from_file(args.light)
    intensity = DEFAULT_INTENSITY if args.intensity is None else args.intensity
    ambient = DEFAULT_AMBIENT if args.ambient is None else args.ambient
    return SHLight.from_direction(args.direction, intensity=intensity, ambient=ambient)


def run(args: argparse.Namespace) -> int:
    from .. import load
    from ..imageio import find_images, read_image, to_bgr_uint8, write_image
    from ..relighter import contact_sheet
    from ..pipeline import check_ext, output_file, plan_outputs
    from .restore import report

    check_ext(args.ext)
    if args.sweep is not None and args.sweep < 1:
        raise ValueError("--sweep needs a positive number of frames")
    light = build_light(args)
    lights = light.sweep(args.sweep) if args.sweep else [light]
    out_dir = Path(args.output)
    sources = find_images(args.inputs)
    if not sources:
        print("no input images found", file=sys.stderr)
        return 1
    relighter = load(args.model, weights=args.weights, device=args.device, detector=args.detector,
                     detector_weights=args.detector_weights)
    if relighter.entry.task != "relight":
        raise ValueError(f"{relighter.entry.name} is not a relighting model; use -m dpr or -m dpr-1024")
    inputs = {src.resolve() for src, _ in sources if src.exists()}
    if args.save_light_preview:
        if (out_dir / "light.png").resolve() in inputs:
            raise ValueError(f"{out_dir / 'light.png'} is an input; choose another --output")
        write_image(out_dir / "light.png", light.render_sphere())
    failed: list[tuple[Path, str]] = []
    finished = 0
    bar = tqdm(total=len(sources) * len(lights), desc=f"relight ({relighter.entry.name})", unit="frame")
    try:
        for (src, _), stem in zip(sources, plan_outputs(sources, out_dir)):
            done = 0
            try:
                if args.sweep:
                    targets = [output_file(stem, src, args.ext, f"{args.suffix}_sweep{k:03d}") for k in range(len(lights))]
                    targets.append(stem.with_name(f"{stem.name}{args.suffix}_sweep.png"))  # the contact sheet
                else:
                    targets = [output_file(stem, src, args.ext, args.suffix)]
                if inputs & {dst.resolve() for dst in targets}:
                    raise ValueError("output would overwrite an input; choose another --output or --suffix")
                img = read_image(src)
                frames = []
                for frame_light in lights:
                    frames.append(relighter.relight(img, frame_light, detect=args.detect, keep_aspect=args.keep_aspect))
                    done += 1
                    bar.update()
                for dst, frame in zip(targets, frames):
                    write_image(dst, frame)
                if args.sweep:
                    write_image(targets[-1], contact_sheet([to_bgr_uint8(f)[0] for f in frames], lights))
            except Exception as exc:  # one bad file must not stop the batch; all failures are reported at the end
                failed.append((src, f"{type(exc).__name__}: {exc}"))
                bar.update(len(lights) - done)
            finished += 1
    except KeyboardInterrupt:
        bar.close()
        report("relit", finished, failed, out_dir, interrupted=True)
        raise
    bar.close()
    return report("relit", len(sources), failed, out_dir)
