"""`facerestore restore INPUT... -m MODEL -o OUTDIR`: restore photos, videos, or folders of both."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm.auto import tqdm


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("restore", help="restore faces in photos", description=__doc__)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image/video files and/or folders")
    p.add_argument("-m", "--model", default="gfpgan", help="zoo name (default: gfpgan = gfpgan-v1.4)")
    p.add_argument("-o", "--output", required=True, help="output folder (never one of the inputs)")
    p.add_argument("--weights", help="local weights file/folder or URL (default: cache, then download)")
    p.add_argument("--no-pretrained", action="store_true", help="random weights (for testing the pipeline)")
    p.add_argument("--upscale", type=float, default=1, help="output size factor (default 1)")
    p.add_argument("--aligned", action="store_true", help="inputs are aligned face crops")
    p.add_argument("--only-center-face", action="store_true")
    p.add_argument("--max-faces", type=int)
    p.add_argument("--fidelity", type=float, default=0.0, help="0 = model output, 1 = input face (blend)")
    p.add_argument("--detector", default="retinaface-resnet50")
    p.add_argument("--detector-weights")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--seed", type=int, help="reproducible noise for models that draw it")
    p.add_argument("--ext", default="auto", help="output format: auto (as input), png, jpg, ...")
    p.add_argument("--suffix", default="", help="appended to output file names")
    p.add_argument("--save-faces", action="store_true", help="also write aligned input and restored faces")
    p.add_argument("--crf", type=int, default=18, help="video quality (H.264 CRF, lower = better; default 18)")
    p.add_argument("--video-codec", default="libx264", help="video encoder (default libx264; libx265, "
                   "libvpx-vp9, libsvtav1, ffv1, ...)")
    p.set_defaults(func=run)


def output_path(src: Path, out_dir: Path, ext: str, suffix: str) -> Path:
    extension = src.suffix if ext == "auto" else "." + ext.lstrip(".")
    return out_dir / f"{src.stem}{suffix}{extension}"


def _is_video(path: Path) -> bool:
    from ..video import is_video

    return is_video(path)


def _videos_in_folders(inputs: list[str]) -> list[Path]:
    from ..video import list_videos

    return list_videos(inputs)


def _restore_video_file(restorer, src: Path, out_dir: Path, args: argparse.Namespace) -> Path:
    """One video: out_dir/<stem><suffix>.<same container, or .mp4/.mkv where it cannot hold the codec>."""
    from ..video import output_extension

    dst = out_dir / f"{src.stem}{args.suffix}{output_extension(src, args.video_codec)}"
    if args.aligned:
        raise ValueError("--aligned is for photos of aligned faces; videos are searched for faces")
    restorer.restore_video(src, dst, crf=args.crf, codec=args.video_codec, upscale=args.upscale,
                           only_center_face=args.only_center_face, max_faces=args.max_faces,
                           fidelity=args.fidelity, seed=args.seed)
    return dst


def run(args: argparse.Namespace) -> int:
    from .. import load
    from ..imageio import list_images, read_image, write_image

    out_dir = Path(args.output)
    files = list_images(args.inputs)
    files += _videos_in_folders(args.inputs)
    if not files:
        print("no input images found", file=sys.stderr)
        return 1
    restorer = load(args.model, weights=args.weights, pretrained=not args.no_pretrained, device=args.device,
                    precision=args.precision, detector=args.detector, detector_weights=args.detector_weights)
    failed: list[tuple[Path, str]] = []
    for src in tqdm(files, desc=f"restore ({restorer.entry.name})", unit="img"):
        dst = output_path(src, out_dir, args.ext, args.suffix)
        try:
            if _is_video(src):
                _restore_video_file(restorer, src, out_dir, args)
                continue
            if dst.resolve() == src.resolve():
                raise ValueError("output would overwrite the input; choose another --output or --suffix")
            img = read_image(src)
            result = restorer.restore(img, upscale=args.upscale, aligned=args.aligned,
                                      only_center_face=args.only_center_face, max_faces=args.max_faces,
                                      fidelity=args.fidelity, seed=args.seed)
            write_image(dst, result.image)
            if args.save_faces:
                for i, face in enumerate(result.faces):
                    write_image(out_dir / "faces" / f"{src.stem}_{i:02d}_input.png", face.crop)
                    write_image(out_dir / "faces" / f"{src.stem}_{i:02d}_restored.png", face.restored)
        except Exception as exc:  # one bad file must not stop the batch; all failures are reported at the end
            failed.append((src, f"{type(exc).__name__}: {exc}"))
    print(f"restored {len(files) - len(failed)} of {len(files)} images into {out_dir}")
    for src, why in failed:
        print(f"FAILED {src}: {why}", file=sys.stderr)
    return 1 if failed else 0
