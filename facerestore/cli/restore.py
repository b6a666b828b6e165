"""`facerestore restore INPUT... -m MODEL -o OUTDIR`: restore photos, videos, or folders of both.

Every input gets its own output: OUTDIR mirrors the structure of input folders; inputs whose names
differ only by extension get it added to the name (x.png, x.jpg -> x_png.*, x_jpg.*), names that still
coincide get _2, _3, ...; an output that would be an input file is refused. Files that cannot be
read or restored are listed by name at the end and make the exit code 1; the rest are written.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tqdm.auto import tqdm


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
    p.set_defaults(func=run)


def plan_outputs(sources: list[tuple[Path, Path]], out_dir: Path) -> list[Path]:
    """One distinct output stem (a path without extension) per input, deterministic.

    sources: (file, path relative to its input) as imageio.find_images gives them. The output of
    `in/sub/x.png` found in folder `in/` is `OUT/sub/x`: the folder structure is mirrored. Inputs
    that would share a stem (same folder, same name apart from extension and letter case, e.g.
    `x.png` and `x.jpg`) get their own extension added (`x_png`, `x_jpg`); names that still coincide
    (the same name from two input folders) get `_2`, `_3`, ... in input order, the first keeps its name.
    """
    def key(stem: Path) -> str:
        return os.path.normcase(str(stem)).casefold()  # one file on case-insensitive file systems

    plain = [out_dir / rel.parent / rel.stem for _, rel in sources]
    groups: dict[str, set[str]] = {}
    for stem, (_, rel) in zip(plain, sources):
        groups.setdefault(key(stem), set()).add(rel.suffix.lower())
    stems, taken = [], set()
    for stem, (_, rel) in zip(plain, sources):
        if len(groups[key(stem)]) > 1:
            stem = stem.with_name(f"{stem.name}_{rel.suffix.lstrip('.').lower() or 'noext'}")
        unique, n = stem, 2
        while key(unique) in taken:
            unique, n = stem.with_name(f"{stem.name}_{n}"), n + 1
        taken.add(key(unique))
        stems.append(unique)
    return stems


def output_file(stem: Path, src: Path, ext: str, suffix: str = "") -> Path:
    """`stem` + suffix + extension (the input's with --ext auto, else --ext)."""
    extension = src.suffix if ext == "auto" else "." + ext.lstrip(".").lower()
    return stem.with_name(f"{stem.name}{suffix}{extension}")


def faces_stem(stem: Path, out_dir: Path) -> Path:
    """Where --save-faces puts the face crops of the input whose output stem is `stem`."""
    return out_dir / "faces" / stem.relative_to(out_dir)


def check_ext(ext: str) -> None:
    from ..imageio import IMAGE_EXTENSIONS

    if ext != "auto" and "." + ext.lstrip(".").lower() not in IMAGE_EXTENSIONS:
        raise ValueError(f"--ext {ext}: not an image format; use auto or one of "
                         f"{', '.join(e.lstrip('.') for e in IMAGE_EXTENSIONS)}")


def report(verb: str, total: int, failed: list[tuple[Path, str]], out_dir: Path, interrupted: bool = False) -> int:
    """Print what was done and each failure by name; the exit code (0 all done, 1 some failed)."""
    done = total - len(failed)
    print(f"{verb} {done} of {total} images into {out_dir}" + (" (interrupted)" if interrupted else ""))
    for src, why in failed:
        print(f"FAILED {src}: {why}", file=sys.stderr)
    return 1 if failed else 0


def _is_video(path: Path) -> bool:
    from ..video import is_video

    return is_video(path)


def _videos_in_folders(inputs: list[str]) -> list[tuple[Path, Path]]:
    """(video, path relative to its folder) for the videos inside input folders (files given directly are
    listed by find_images already)."""
    from ..video import is_video

    found = []
    for item in inputs:
        root = Path(item)
        if root.is_dir():
            found += [(f, f.relative_to(root)) for f in sorted(root.rglob("*")) if f.is_file() and is_video(f)]
    return found


def _restore_video_file(restorer, src: Path, stem: Path, args: argparse.Namespace) -> Path:
    """One video: <stem><suffix>.<same container, or .mp4/.mkv where it cannot hold the codec>."""
    from ..video import output_extension

    dst = stem.with_name(f"{stem.name}{args.suffix}{output_extension(src, args.video_codec)}")
    if dst.resolve() == src.resolve():
        raise ValueError(f"output {dst} would overwrite the input; choose another --output or --suffix")
    if args.aligned:
        raise ValueError("--aligned is for photos of aligned faces; videos are searched for faces")
    restorer.restore_video(src, dst, crf=args.crf, codec=args.video_codec, upscale=args.upscale,
                           only_center_face=args.only_center_face, max_faces=args.max_faces,
                           fidelity=args.fidelity, seed=args.seed, paste=args.paste)
    return dst


def run(args: argparse.Namespace) -> int:
    from .. import load
    from ..imageio import find_images, read_image, write_image

    check_ext(args.ext)
    out_dir = Path(args.output)
    sources = find_images(args.inputs) + _videos_in_folders(args.inputs)
    if not sources:
        print("no input images found", file=sys.stderr)
        return 1
    restorer = load(args.model, weights=args.weights, pretrained=not args.no_pretrained, device=args.device,
                    precision=args.precision, detector=args.detector, detector_weights=args.detector_weights,
                    parser=args.parser, parser_weights=args.parser_weights, upsampler=args.bg_upsampler,
                    upsampler_weights=args.bg_upsampler_weights)
    if args.max_megapixels is not None:
        restorer.max_pixels = int(args.max_megapixels * 1e6)
    inputs = {src.resolve() for src, _ in sources if src.exists()}
    stems = plan_outputs(sources, out_dir)
    failed: list[tuple[Path, str]] = []
    done = 0
    try:
        for (src, _), stem in zip(tqdm(sources, desc=f"restore ({restorer.entry.name})", unit="img"), stems):
            try:
                if _is_video(src):
                    _restore_video_file(restorer, src, stem, args)
                    done += 1
                    continue
                dst = output_file(stem, src, args.ext, args.suffix)
                face_stem = faces_stem(stem, out_dir)
                if dst.resolve() in inputs:
                    raise ValueError(f"output {dst} would overwrite an input; choose another --output or --suffix")
                img = read_image(src)
                result = restorer.restore(img, upscale=args.upscale, aligned=args.aligned,
                                          only_center_face=args.only_center_face, max_faces=args.max_faces,
                                          fidelity=args.fidelity, seed=args.seed, paste=args.paste)
                write_image(dst, result.image)
                if args.save_faces:
                    for i, face in enumerate(result.faces):
                        for kind, pixels in (("input", face.crop), ("restored", face.restored)):
                            target = face_stem.with_name(f"{face_stem.name}_{i:02d}_{kind}.png")
                            if target.resolve() in inputs:
                                raise ValueError(f"face crop {target} would overwrite an input; choose another --output")
                            write_image(target, pixels)
            except Exception as exc:  # one bad file must not stop the batch; all failures are reported at the end
                failed.append((src, f"{type(exc).__name__}: {exc}"))
            done += 1
    except KeyboardInterrupt:
        # Outputs written so far are complete (atomic writes); say what was done, then stop.
        report("restored", done, failed, out_dir, interrupted=True)
        raise
    return report("restored", len(sources), failed, out_dir)
