"""Video restoration speed on CPU (not a test): a clip synthesized from a shared photo (slow pan/zoom over
Blake_Lively.jpg, two faces, a sine audio track), restored end to end with `restore_video`: decode,
detection (the real 1 MB RetinaFace), tracking, one batched forward per window of frames, paste, H.264
encode. Prints fps, seconds per face and the face-flicker figure (input vs restored, and restored without
landmark smoothing) as a Markdown table.

    python benchmarks/video.py                               # 10 s of 720p at 24 fps, gpen-bfr-256 untrained
    python benchmarks/video.py --seconds 2 --models gpen-bfr-256 gfpgan-v1.4 --no-pretrained
    python benchmarks/video.py --models tiny               # a 64 px GPEN (pipeline overhead only)

Random weights (`--no-pretrained`) cost the same time as the real ones; the flicker figures of an untrained
network are not those of the real model (its output is smooth colour), so quote them as a pipeline check.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import tempfile
import time
from pathlib import Path

import cv2
import torch

import facerestore
from facerestore.registry import get_entry
from facerestore.video import face_flicker, read_frames, write_test_clip

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACERESTORE_SHARED", ROOT.parent / "shared"))
DETECTOR = SHARED / "weights/retinaface/mobilenet0.25_Final.pth"


def load(name: str, pretrained: bool):
    kwargs = dict(device="cpu", detector="retinaface-mobile0.25-1mb", detector_weights=str(DETECTOR))
    if name == "tiny":  # a 64 px GPEN: what is left is decoding, detection, tracking, paste and encoding
        entry = dataclasses.replace(get_entry("gpen-bfr-256"), name="tiny-gpen-64", face_size=64,
                                    arch_config=dict(size=64, style_dim=32, n_mlp=2, channel_multiplier=1, narrow=0.125))
        return facerestore.load(entry, pretrained=False, **kwargs)
    return facerestore.load(name, pretrained=pretrained, **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["gpen-bfr-256"])
    parser.add_argument("--no-pretrained", action="store_true", help="random weights (same speed)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--fps", type=int, default=24)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--batch-frames", type=int, default=8)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--paste", choices=["parse", "box", "gpen", "feather"], default=None,
                        help="paste-back (default: the model's; parse/gpen run the 512 px face parser per face)")
    parser.add_argument("--no-flicker", action="store_true", help="skip the flicker figures (saves a second run)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    photo = cv2.imread(str(SHARED / "data/real/whole/Blake_Lively.jpg"))
    size = (round(args.height * 16 / 9) // 2 * 2, args.height)
    frames = round(args.seconds * args.fps)
    print(f"{platform.processor() or platform.machine()}, {args.threads} threads, clip {size[0]}x{size[1]}, "
          f"{frames} frames at {args.fps} fps ({args.seconds:g} s), paste {args.paste or 'model default'}, "
          f"load average before {os.getloadavg()[0]:.1f}\n")
    print("| model | frames | faces | s | fps | s / face | flicker input | restored | restored, no smoothing |")
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "clip.mp4"
        affines = write_test_clip(src, photo, size=size, frames=frames, fps=args.fps, fit=0.8)
        flicker_in = None
        for name in args.models:
            restorer = load(name, not args.no_pretrained)
            boxes = restorer.detector.detect(photo).boxes
            if flicker_in is None and not args.no_flicker:
                flicker_in = face_flicker(read_frames(src)[0], affines, boxes)
            started = time.perf_counter()
            summary = restorer.restore_video(src, Path(tmp) / "out.mp4", seed=0, batch_frames=args.batch_frames,
                                             progress=False, paste=args.paste)
            seconds = time.perf_counter() - started
            figures = ["-", "-", "-"]
            if not args.no_flicker:
                restored = face_flicker(read_frames(Path(tmp) / "out.mp4")[0], affines, boxes)
                restorer.restore_video(src, Path(tmp) / "raw.mp4", seed=0, smooth=False, progress=False,
                                     paste=args.paste)
                raw = face_flicker(read_frames(Path(tmp) / "raw.mp4")[0], affines, boxes)
                figures = [f"{flicker_in:.2f}", f"{restored:.2f}", f"{raw:.2f}"]
            print(f"| {restorer.entry.name} | {summary.frames} | {summary.faces} | {seconds:.1f} | "
                  f"{summary.frames / seconds:.2f} | {seconds / max(summary.faces, 1):.3f} | {' | '.join(figures)} |")
            print(f"load average after: {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
