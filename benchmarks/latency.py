"""Per-face latency of the zoo models (not a test): exact fp32 vs fast bf16/fp16, batch 1 and 4, and a
whole photo end to end, next to the official implementations' documented CPU figures.

    python benchmarks/latency.py                                  # gfpgan, gpen, dfdnet, dpr; fp32 + bf16
    python benchmarks/latency.py --models gfpgan --batch 1 4 --precision fp32 --repeats 5
    python benchmarks/latency.py --photo ../shared/data/real/whole/Solvay_conference_1927.png \
        --detector-weights ../shared/weights/retinaface/mobilenet0.25_Final.pth

Random weights (`pretrained=False`) cost the same time as real ones. Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import torch

import facerestore

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACERESTORE_SHARED", ROOT.parent / "shared"))

# Official code, fp32, 2-core CPU of this project's machines, random weights (issue "Speed").
OFFICIAL_S_PER_FACE = {("gfpgan-v1.4", 1): 4.1, ("gfpgan-v1.4", 4): 4.9, ("gpen-bfr-512", 1): 6.8}


def face_crops(size: int, n: int) -> np.ndarray:
    """n real aligned faces from shared/ (random noise when shared/ is absent), resized to size."""
    files = sorted((SHARED / "data/real/cropped").glob("*.png"))
    imgs = [cv2.imread(str(f)) for f in files[:n]] or [np.random.randint(0, 255, (512, 512, 3), np.uint8)]
    imgs = (imgs * n)[:n]
    return np.stack([cv2.resize(i, (size, size), interpolation=cv2.INTER_AREA) for i in imgs])


def prepare(restorer) -> None:
    """Models that need more than weights to run (DFDNet's dictionaries) get random ones."""
    if restorer.entry.name == "dfdnet" and not restorer.net.has_dictionaries:
        restorer.net.set_dictionaries(random_dictionaries(restorer.net, clusters=4))


def random_dictionaries(net, clusters: int) -> dict:
    from facerestore.archs.dfdnet import PARTS, SCALES, dictionary_key, dictionary_shape

    gen = torch.Generator().manual_seed(0)
    return {dictionary_key(part, scale): torch.randn((clusters, *dictionary_shape(part, scale)), generator=gen)
            for part in PARTS for scale in SCALES}


def run_once(restorer, crops: np.ndarray) -> None:
    from facerestore.face.align import template

    if restorer.entry.task == "relight":
        from facerestore.light import SHLight

        restorer.relight_crops(crops, SHLight.from_direction((1.0, 0.0, 1.0)))
    else:
        points = np.repeat(template(restorer.entry.template, restorer.entry.face_size)[None], len(crops), 0)
        restorer.forward_faces(crops, points, seed=0)


def time_call(fn, repeats: int) -> float:
    fn()  # warm-up (allocations, oneDNN kernel selection)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="gfpgan-v1.4,gpen-bfr-512,dfdnet,dpr-512")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--photo", help="also time restore() on this whole photo (first model only)")
    parser.add_argument("--detector", default="retinaface-mobile0.25-1mb")
    parser.add_argument("--detector-weights")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cpu = platform.processor() or platform.machine()
    print(f"machine: {cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, threads {args.threads}, "
          f"device {args.device}\n")
    print("| model | precision | batch | s/face (median) | official fp32 s/face | speed-up |")
    print("|---|---|---:|---:|---:|---:|")
    for name in args.models.split(","):
        entry = facerestore.get_entry(name)
        for precision in args.precision:
            if precision not in entry.precisions:
                print(f"| {entry.name} | {precision} | - | not supported | | |")
                continue
            restorer = facerestore.load(entry.name, pretrained=False, device=args.device, precision=precision)
            prepare(restorer)
            for batch in args.batch:
                crops = face_crops(entry.face_size, batch)
                seconds = time_call(lambda: run_once(restorer, crops), args.repeats) / batch
                official = OFFICIAL_S_PER_FACE.get((entry.name, batch))
                ratio = f"{official / seconds:.2f}×" if official else ""
                print(f"| {entry.name} | {precision} | {batch} | {seconds:.3f} | {official or ''} | {ratio} |",
                      flush=True)

    if args.photo:
        name = args.models.split(",")[0]
        img = cv2.imread(args.photo)
        for precision in args.precision:
            restorer = facerestore.load(name, pretrained=False, device=args.device, precision=precision,
                                        detector=args.detector, detector_weights=args.detector_weights)
            prepare(restorer)
            faces = len(restorer.restore(img, seed=0).faces)
            seconds = time_call(lambda: restorer.restore(img, seed=0), max(1, args.repeats // 2))
            one = time_call(lambda: run_once(restorer, face_crops(restorer.entry.face_size, 1)), 1)
            print(f"\nwhole photo {Path(args.photo).name} ({faces} faces), {name}, {precision}: "
                  f"{seconds:.2f} s/photo = {seconds / max(faces, 1):.3f} s/face "
                  f"(one face alone: {one:.3f} s; {faces} x one face = {faces * one:.2f} s)")


if __name__ == "__main__":
    main()
