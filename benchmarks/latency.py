"""Per-face latency of the zoo models (not a test), measured side by side in one run:

  plain ops  our network run as the official op sequence: fp32, NCHW, no BatchNorm folding, no fused
             convolution epilogues, PyTorch's own max-pool and instance norm (facerestore.archs.ops.official_ops);
  exact      load(name) as users get it (fp32, the golden-tested outputs);
  fast       load(name, precision="bf16") on CPU ("fp16" on CUDA): autocast + channels_last;

next to the official implementations' documented fp32 CPU figures (issue "Speed", shared/golden/README.md).
The modes are interleaved round by round, so machine noise hits them alike; medians are shown.

Speed is stated against the machine: the script first measures the peak of large convolutions and
matrix products (fp32 and bf16/fp16, the same threads and layout), then prints every model's
effective TFLOP/s (multiply-adds x 2 of one forward, counted by torch.utils.flop_counter, over the
measured time) and its share of the peak of its precision.

    python benchmarks/latency.py                                  # all restorers; batch 1 and 4
    python benchmarks/latency.py --models codeformer,restoreformer++,realesrgan-x4plus --batch 1
    python benchmarks/latency.py --models dpr-512 --batch 1 --repeats 9
    python benchmarks/latency.py --models gfpgan-v1.4 --batch 1 --repeats 3 \
        --photo ../shared/data/real/whole/Solvay_conference_1927.png \
        --detector-weights ../shared/weights/retinaface/mobilenet0.25_Final.pth

Random weights (`pretrained=False`) cost the same time as real ones (DFDNet: random dictionaries of
K=4 atoms, the size of the golden instance). Prints Markdown tables.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch

import facerestore
from facerestore.archs.ops import official_ops

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACERESTORE_SHARED", ROOT.parent / "shared"))

# Official code, fp32 CPU, 2 threads: issue "Speed" (idle machine) and the timings of
# shared/golden/README.md (DPR, DFDNet: "shared noisy machine", about 2.5x the idle figures for GFP-GAN).
OFFICIAL_S_PER_FACE = {("gfpgan-v1.4", 1): 4.1, ("gfpgan-v1.4", 4): 4.9, ("gpen-bfr-512", 1): 6.8,
                       ("dpr-512", 1): 0.22, ("dfdnet", 1): 14.0}
MODE_LABELS = {"plain": "plain ops fp32", "exact": "exact fp32"}
UPSCALE_INPUT = 128  # Real-ESRGAN entries: one 128x128 input tile per "face" (x4plus: 512x512 out)
DEFAULT_MODELS = "gfpgan-v1.4,gpen-bfr-512,codeformer,restoreformer-plusplus,dfdnet,dpr-512,realesrgan-x4plus"


def _best_seconds(fn: Callable[[], object], repeats: int, device: str) -> float:
    fn()  # warm-up: oneDNN primitive creation, weight reordering
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def machine_peak(device: str, repeats: int = 5) -> dict[str, float]:
    """TFLOP/s of large operations on this machine with the current threads: a 3x3 convolution
    256 -> 256 channels on a 128 x 128 map (channels_last, how the models run on CPU) and a 2048^3
    matrix product, in fp32 and in the fast precision (best of `repeats`: the peak, not the median)."""
    fast_dtype = torch.float16 if torch.device(device).type == "cuda" else torch.bfloat16
    peak = {}
    conv_flops = 2 * 256 * 256 * 9 * 128 * 128
    mm_flops = 2 * 2048 ** 3
    for label, dtype in (("fp32", torch.float32), (fast_precision(device), fast_dtype)):
        x = torch.randn(1, 256, 128, 128, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
        w = torch.randn(256, 256, 3, 3, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
        a = torch.randn(2048, 2048, device=device, dtype=dtype)
        with torch.inference_mode():
            peak[f"conv {label}"] = conv_flops / _best_seconds(lambda: torch.nn.functional.conv2d(x, w, padding=1),
                                                              repeats, device) / 1e12
            peak[f"matmul {label}"] = mm_flops / _best_seconds(lambda: a @ a, repeats, device) / 1e12
    return peak


def forward_flops(restorer, crops: np.ndarray) -> float:
    """Floating-point operations (2 x multiply-adds of convolutions and matrix products) of one forward
    over `crops`, counted by torch.utils.flop_counter on the plain op sequence (official_ops(): the
    counter does not know oneDNN's fused convolutions; the arithmetic is the same)."""
    from torch.utils.flop_counter import FlopCounterMode

    trainable = [p for p in restorer.net.parameters() if p.requires_grad]
    for p in trainable:  # the counter's module tracker fails on parameters that require grad in inference mode
        p.requires_grad_(False)
    try:
        with official_ops(), FlopCounterMode(display=False) as counter:
            run_once(restorer, crops)
    finally:
        for p in trainable:
            p.requires_grad_(True)
    return float(counter.get_total_flops())


def face_crops(size: int, n: int) -> np.ndarray:
    """n real aligned faces from shared/ (random noise when shared/ is absent), resized to size."""
    files = sorted((SHARED / "data/real/cropped").glob("*.png"))
    imgs = [cv2.imread(str(f)) for f in files[:n]] or [np.random.randint(0, 255, (512, 512, 3), np.uint8)]
    imgs = (imgs * n)[:n]
    return np.stack([cv2.resize(i, (size, size), interpolation=cv2.INTER_AREA) for i in imgs])


def prepare(restorer) -> None:
    """Models that need more than weights to run (DFDNet's dictionaries) get random ones."""
    if restorer.entry.name == "dfdnet" and not restorer.net.has_dictionaries:
        from facerestore.archs.dfdnet import PARTS, SCALES, dictionary_key, dictionary_shape

        gen = torch.Generator().manual_seed(0)
        restorer.net.set_dictionaries({
            dictionary_key(part, scale): torch.randn((4, *dictionary_shape(part, scale)), generator=gen)
            for part in PARTS for scale in SCALES
        })


def run_once(restorer, crops: np.ndarray) -> None:
    from facerestore.face.align import template

    if restorer.entry.task == "upscale":  # the network on one input tile, as Upscaler.upscale runs it
        x = torch.from_numpy(crops[..., ::-1].copy()).permute(0, 3, 1, 2).float().div(255).to(restorer.device)
        if getattr(restorer, "benchmark_channels_last", restorer.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)
        with restorer._precision():
            restorer.net(x)
    elif restorer.entry.task == "relight":
        from facerestore.shlight import SHLight

        restorer.relight_crops(crops, SHLight.from_direction((1.0, 0.0, 1.0)))
    else:
        points = np.repeat(template(restorer.entry.template, restorer.entry.face_size)[None], len(crops), 0)
        restorer.forward_faces(crops, points, seed=0)


def fast_precision(device: str) -> str:
    return "fp16" if torch.device(device).type == "cuda" else "bf16"


def load_modes(name: str, device: str, modes: list[str]) -> dict:
    """{mode: restorer} for the requested modes the entry supports, all with the same random weights."""
    entry = facerestore.get_entry(name)
    loaded = {}
    for mode in modes:
        if mode == "fast" and fast_precision(device) not in entry.precisions:
            continue
        if mode == "plain" and entry.task == "upscale":  # NCHW weights and input, as the official code runs
            restorer = facerestore.load(entry, pretrained=False, device=device)
            for tensor in restorer.net.parameters():
                if tensor.dim() == 4:
                    tensor.data = tensor.data.contiguous()
            restorer.benchmark_channels_last = False
        elif mode == "plain":  # NCHW as the official code runs, whatever the entry's exact-mode layout
            restorer = facerestore.load(dataclasses.replace(entry, channels_last=False), pretrained=False,
                                        device=device)
        else:
            precision = "fp32" if mode == "exact" else fast_precision(device)
            restorer = facerestore.load(entry, pretrained=False, device=device, precision=precision)
        prepare(restorer)
        if loaded:
            restorer.net.load_state_dict(next(iter(loaded.values())).net.state_dict())
        loaded[mode] = restorer
    return loaded


def timed(restorer, mode: str, fn: Callable[[], object]) -> float:
    with official_ops() if mode == "plain" else contextlib.nullcontext():
        start = time.perf_counter()
        fn()
        if restorer.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start


def label(mode: str, restorer) -> str:
    return MODE_LABELS.get(mode, f"fast {restorer.precision}")


def per_face_table(args, peak: dict[str, float]) -> None:
    print("| model | mode | batch | s/face (median) | vs plain ops | TFLOP/s | % of peak | official fp32 s/face "
          "| vs official |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in args.models.split(","):
        name = facerestore.get_entry(name).name
        loaded = load_modes(name, args.device, args.modes)
        first = next(iter(loaded.values()))
        size = UPSCALE_INPUT if first.entry.task == "upscale" else first.entry.face_size
        for batch in args.batch:
            crops = face_crops(size, batch)
            flops = forward_flops(first, crops) / batch
            times: dict[str, list[float]] = {mode: [] for mode in loaded}
            for mode, restorer in loaded.items():  # warm-up (allocations, oneDNN kernel selection)
                timed(restorer, mode, lambda: run_once(restorer, crops))
            for _ in range(args.repeats):
                for mode, restorer in loaded.items():
                    times[mode].append(timed(restorer, mode, lambda: run_once(restorer, crops)) / batch)
            official = OFFICIAL_S_PER_FACE.get((name, batch))
            plain = statistics.median(times["plain"]) if "plain" in times else None
            for mode, samples in times.items():
                seconds = statistics.median(samples)
                versus_plain = f"{plain / seconds:.2f}×" if plain else ""
                versus_official = f"{official / seconds:.2f}×" if official else ""
                tflops = flops / seconds / 1e12
                precision = "fp32" if mode in ("plain", "exact") else loaded[mode].precision
                share = tflops / peak[f"conv {precision}"] if f"conv {precision}" in peak else float("nan")
                print(f"| {name} | {label(mode, loaded[mode])} | {batch} | {seconds:.3f} | {versus_plain} | "
                      f"{tflops:.3f} | {share:.0%} | {official or ''} | {versus_official} |", flush=True)


def photo_table(args) -> None:
    """restore() on a whole photo: s/photo against faces x one face, and the detector's share."""
    name = facerestore.get_entry(args.models.split(",")[0]).name
    img = cv2.imread(args.photo)
    if img is None:
        raise SystemExit(f"cannot read {args.photo}")
    print(f"\nwhole photo {Path(args.photo).name} ({img.shape[1]}x{img.shape[0]}), {name}, "
          f"detector {args.detector}:\n")
    print("| mode | faces | s/photo | s/face | one face alone (s) | faces x one face (s) | detection (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    entry = facerestore.get_entry(name)
    for mode in ("exact", "fast"):
        precision = "fp32" if mode == "exact" else fast_precision(args.device)
        if mode not in args.modes or precision not in entry.precisions:
            continue
        restorer = facerestore.load(name, pretrained=False, device=args.device, precision=precision,
                                    detector=args.detector, detector_weights=args.detector_weights)
        prepare(restorer)
        faces = len(restorer.restore(img, seed=0).faces)  # also the warm-up
        whole = statistics.median(timed(restorer, mode, lambda: restorer.restore(img, seed=0))
                                  for _ in range(max(1, args.repeats // 2)))
        detection = statistics.median(timed(restorer, mode, lambda: restorer.detector.detect(img)) for _ in range(3))
        one_crop = face_crops(entry.face_size, 1)
        one = statistics.median(timed(restorer, mode, lambda: run_once(restorer, one_crop)) for _ in range(3))
        print(f"| {label(mode, restorer)} | {faces} | {whole:.2f} | {whole / max(faces, 1):.3f} | {one:.3f} | "
              f"{faces * one:.2f} | {detection:.3f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=DEFAULT_MODELS)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--modes", nargs="+", default=["plain", "exact", "fast"], choices=["plain", "exact", "fast"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--photo", help="also time restore() on this whole photo (first model only)")
    parser.add_argument("--detector", default="retinaface-mobile0.25")
    parser.add_argument("--detector-weights")
    parser.add_argument("--no-faces", action="store_true", help="only the whole-photo table")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    machine = platform.processor() or platform.machine()
    if torch.device(args.device).type == "cuda":
        machine += f", {torch.cuda.get_device_name()}"
    print(f"machine: {machine}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, threads {args.threads}, "
          f"device {args.device}, {time.strftime('%Y-%m-%d')}\n")
    peak = machine_peak(args.device)
    print("machine peak (TFLOP/s): " + ", ".join(f"{k} {v:.3f}" for k, v in peak.items()) + "\n")
    if not args.no_faces:
        per_face_table(args, peak)
    if args.photo:
        photo_table(args)


if __name__ == "__main__":
    main()
