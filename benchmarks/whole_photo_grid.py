"""The README's before/after grid of a whole photo, made with the CLI (not a test):

    python benchmarks/whole_photo_grid.py                        # -> docs/whole_photo_grid.jpg
    python benchmarks/whole_photo_grid.py --photo PHOTO --model gfpgan --pretrained --out grid.jpg

Runs `facerestore restore PHOTO -m MODEL --paste MODE ...` (with `--bg-upsampler`: also `--upscale 2
--bg-upsampler realesrgan-x2plus`) once per paste mode (the offline 1 MB detector from shared/, so it runs without internet) and puts the
input next to each output, labelled. Without `--pretrained` every network (restorer, face parser,
upsampler) has random weights: the grid then shows what the pipeline does (which faces, where they are
pasted, the shape and softness of each paste mode's mask), nothing about quality; a random upsampler
turns the whole background into noise, so it is left out unless asked for.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACERESTORE_SHARED", ROOT.parent / "shared"))


def labelled(img: np.ndarray, text: str, height: int) -> np.ndarray:
    """img resized to `height` rows with a caption bar on top."""
    img = cv2.resize(img, (round(img.shape[1] * height / img.shape[0]), height), interpolation=cv2.INTER_AREA)
    bar = np.full((28, img.shape[1], 3), 255, np.uint8)
    cv2.putText(bar, text, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([bar, img])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photo", default=str(SHARED / "data/real/whole/Blake_Lively.jpg"))
    parser.add_argument("--model", default="gfpgan")
    parser.add_argument("--pastes", nargs="+", default=["parse", "box"])
    parser.add_argument("--pretrained", action="store_true", help="released weights (default: random, offline)")
    parser.add_argument("--bg-upsampler", action="store_true", help="also upscale x2 with realesrgan-x2plus")
    parser.add_argument("--height", type=int, default=360, help="rows of each panel")
    parser.add_argument("--out", default=str(ROOT / "docs/whole_photo_grid.jpg"))
    args = parser.parse_args()

    photo = cv2.imread(args.photo)
    if photo is None:
        raise SystemExit(f"cannot read {args.photo}")
    panels = [labelled(photo, "input", args.height)]
    with tempfile.TemporaryDirectory() as tmp:
        for paste in args.pastes:
            out_dir = Path(tmp) / paste
            cmd = [sys.executable, "-m", "facerestore", "restore", args.photo, "-o", str(out_dir), "-m", args.model,
                   "--paste", paste, "--seed", "0",
                   "--detector", "retinaface-mobile0.25-1mb",
                   "--detector-weights", str(SHARED / "weights/retinaface/mobilenet0.25_Final.pth")]
            if args.bg_upsampler:
                cmd += ["--upscale", "2", "--bg-upsampler", "realesrgan-x2plus"]
            if not args.pretrained:
                cmd.append("--no-pretrained")
            print(" ".join(cmd), flush=True)
            subprocess.run(cmd, check=True, cwd=ROOT)
            (result,) = [p for p in out_dir.iterdir() if p.is_file()]
            panels.append(labelled(cv2.imread(str(result)), f"--paste {paste}", args.height))
    grid = np.hstack([np.pad(p, ((0, 0), (0, 6), (0, 0)), constant_values=255) for p in panels])[:, :-6]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(args.out, grid, [cv2.IMWRITE_JPEG_QUALITY, 82])
    print(f"wrote {args.out} ({Path(args.out).stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
