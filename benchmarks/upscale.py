"""Real-ESRGAN upsampling speed (not a test): seconds per megapixel of input, measured side by side
in one run on the same image and weights:

  plain ops   our RRDBNet run as the official op sequence: fp32, NCHW, no fused conv epilogues
              (facerestore.archs.ops.official_ops), untiled like RealESRGANer's default;
  exact       Upscaler(precision="fp32") as users get it (fused conv+LeakyReLU, channels_last on CPU);
  fast        Upscaler(precision="bf16") on CPU ("fp16" on CUDA): autocast + channels_last;

each at the requested tile sizes (0 = untiled). Modes are interleaved round by round, so machine
noise hits them alike; medians are shown. Weights: the golden recipe weights of shared/ when present,
else a random init of the released configuration (same cost).

    python benchmarks/upscale.py                                   # x2plus and x4plus, 96x96 crop
    python benchmarks/upscale.py --size 256 --tiles 0 64 128 --repeats 5
    python benchmarks/upscale.py --configs x4plus --device cuda --size 1024 --tiles 0 400

Prints Markdown tables (and the CPU model from /proc/cpuinfo).
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from facerestore.archs.ops import official_ops
from facerestore.archs.rrdbnet import RRDBNet
from facerestore.upscale import Upscaler

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACERESTORE_SHARED", ROOT.parent / "shared"))
RELEASED = {"x2plus": {"scale": 2}, "x4plus": {"scale": 4}}  # num_feat 64, num_block 23, num_grow_ch 32


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def weights(config: str) -> tuple[dict[str, torch.Tensor], str]:
    """Golden recipe weights (sha256-checked) when shared/ has them, else a random init."""
    path = SHARED / f"golden/realesrgan/realesrgan_{config}_recipe.json"
    if not path.exists():
        torch.manual_seed(0)
        return RRDBNet(**RELEASED[config]).state_dict(), "random init"
    state = {}
    for row in json.loads(path.read_text())["keys"]:
        z = np.random.RandomState(row["seed"]).standard_normal(int(np.prod(row["shape"])))
        value = np.asarray(row["scale"] * z.reshape(row["shape"]) + row["offset"], dtype=np.float32)
        if hashlib.sha256(value.tobytes()).hexdigest() != row["sha256"]:
            raise SystemExit(f"recipe weight {row['key']} does not match its sha256")
        state[row["key"]] = torch.from_numpy(value)
    return state, "golden recipe weights"


def test_image(size: int) -> np.ndarray:
    """A size x size crop of a real photo (noise when shared/ is absent), BGR uint8."""
    photo = cv2.imread(str(SHARED / "data/real/whole/Blake_Lively.jpg"))
    if photo is None:
        return np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    h, w = photo.shape[:2]
    if min(h, w) < size:
        photo = cv2.resize(photo, (max(w, size), max(h, size)), interpolation=cv2.INTER_CUBIC)
        h, w = photo.shape[:2]
    return np.ascontiguousarray(photo[(h - size) // 2:(h - size) // 2 + size, (w - size) // 2:(w - size) // 2 + size])


def fast_precision(device: str) -> str:
    return "fp16" if torch.device(device).type == "cuda" else "bf16"


class PlainUpscaler(Upscaler):
    """Upscaler whose network runs NCHW under official_ops(): the official fp32 op sequence."""

    @property
    def channels_last(self) -> bool:
        return False


def timed(upscaler: Upscaler, mode: str, img: np.ndarray, tile: int) -> float:
    with official_ops() if mode == "plain" else contextlib.nullcontext():
        start = time.perf_counter()
        upscaler.upscale(img, tile=tile, pre_pad=0)
        if upscaler.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["x2plus", "x4plus"], choices=sorted(RELEASED))
    parser.add_argument("--size", type=int, default=96, help="side of the square input crop (pixels)")
    parser.add_argument("--tiles", type=int, nargs="+", default=[0, 48])
    parser.add_argument("--modes", nargs="+", default=["plain", "exact", "fast"], choices=["plain", "exact", "fast"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    machine = cpu_model()
    if torch.device(args.device).type == "cuda":
        machine += f", {torch.cuda.get_device_name()}"
    img = test_image(args.size)
    megapixels = img.shape[0] * img.shape[1] / 1e6
    print(f"machine: {machine}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, threads {args.threads}, "
          f"device {args.device}, input {img.shape[1]}x{img.shape[0]} ({megapixels:.4f} MP), pre_pad 0, "
          f"tile_pad 10, {time.strftime('%Y-%m-%d')}\n")
    print("| model | mode | tile | s/MP of input (median) | vs plain ops untiled | max |Δ| vs plain (grey levels) |")
    print("|---|---|---:|---:|---:|---:|")
    for config in args.configs:
        state, source = weights(config)
        upscalers = {}
        for mode in args.modes:
            net = RRDBNet(**RELEASED[config])
            net.load_state_dict(state)
            if mode == "plain":
                upscalers[mode] = PlainUpscaler(net, device=args.device)
            else:
                precision = "fp32" if mode == "exact" else fast_precision(args.device)
                upscalers[mode] = Upscaler(net, device=args.device, precision=precision)
        runs = [(mode, tile) for mode in upscalers for tile in args.tiles if mode != "plain" or tile == 0]
        reference = upscalers["plain"].upscale(img, tile=0, pre_pad=0) if "plain" in upscalers else None
        times: dict[tuple[str, int], list[float]] = {run: [] for run in runs}
        for mode, tile in runs:  # warm-up: allocations, oneDNN kernel selection
            timed(upscalers[mode], mode, img, tile)
        for _ in range(args.repeats):
            for mode, tile in runs:
                times[mode, tile].append(timed(upscalers[mode], mode, img, tile))
        plain = statistics.median(times["plain", 0]) if ("plain", 0) in times else None
        for mode, tile in runs:
            seconds = statistics.median(times[mode, tile])
            versus = f"{plain / seconds:.2f}×" if plain else ""
            diff = ""
            if reference is not None:
                out = upscalers[mode].upscale(img, tile=tile, pre_pad=0)
                diff = str(int(np.abs(out.astype(int) - reference.astype(int)).max()))
            label = {"plain": "plain ops fp32", "exact": "exact fp32"}.get(mode, f"fast {upscalers[mode].precision}")
            print(f"| {config} | {label} | {tile} | {seconds / megapixels:.1f} | {versus} | {diff} |", flush=True)
        print(f"\n({config}: {source})\n" if config == args.configs[-1] else "", end="")


if __name__ == "__main__":
    main()
