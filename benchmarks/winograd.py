"""Would Winograd convolutions speed up exact mode? (not a test, and not used by the library)

Exact mode's 3x3 convolutions already run near the machine's fp32 convolution peak (benchmarks/latency.py),
so the only way to be much faster is less arithmetic. Winograd F(2x2, 3x3) computes each 2x2 output tile
with 16 instead of 36 multiplications per channel pair (2.25x fewer), at a relative error of ~1e-6
(inside the golden tolerances). PyTorch exposes no Winograd kernel on CPU, so this script writes it with
tensor ops: input transform B^T d B on strided views, 16 matrix products (tiles x C_in) @ (C_in x C_out)
in one bmm, output transform A^T m A; and times it against the oneDNN direct convolution (channels_last,
fp32, with bias) on the layer shapes of the face models, side by side, medians of interleaved rounds.

    python benchmarks/winograd.py
    python benchmarks/winograd.py --threads 2 --repeats 7

Prints a Markdown table (and the CPU model).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

# Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (2016): F(2x2, 3x3)
B_T = torch.tensor([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=torch.float64)
G = torch.tensor([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=torch.float64)
# (channels, side) of 3x3 layers in GFP-GAN / GPEN / CodeFormer: equal FLOPs from 512^2 x 64 to 64^2 x 512
SHAPES = [(512, 16), (512, 32), (512, 64), (256, 64), (256, 128), (128, 128), (128, 256), (64, 256), (64, 512)]


def transform_filter(weight: torch.Tensor) -> torch.Tensor:
    """(C_out, C_in, 3, 3) -> (16, C_in, C_out): G g G^T per channel pair, computed in float64."""
    u = torch.einsum("ai,ocij,bj->abco", G, weight.double(), G)
    return u.reshape(16, weight.shape[1], weight.shape[0]).float().contiguous()


def winograd_conv3x3(x: torch.Tensor, u: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """conv2d(x, weight, bias, padding=1) for even H, W with u = transform_filter(weight)."""
    n, c, h, w = x.shape
    padded = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, 1, 1, 1))  # NHWC view, zero border
    rows = [padded[:, k:k + h:2] for k in range(4)]
    rows = [rows[0] - rows[2], rows[1] + rows[2], rows[2] - rows[1], rows[1] - rows[3]]  # B^T d
    v = torch.empty(16, n, h // 2, w // 2, c, dtype=x.dtype)
    for a, row in enumerate(rows):  # (B^T d) B
        cols = [row[:, :, k:k + w:2] for k in range(4)]
        torch.sub(cols[0], cols[2], out=v[4 * a])
        torch.add(cols[1], cols[2], out=v[4 * a + 1])
        torch.sub(cols[2], cols[1], out=v[4 * a + 2])
        torch.sub(cols[1], cols[3], out=v[4 * a + 3])
    m = torch.bmm(v.view(16, -1, c), u).view(4, 4, n, h // 2, w // 2, -1)
    out = torch.empty(n, h // 2, 2, w // 2, 2, u.shape[2], dtype=x.dtype)
    for q, col in enumerate((m[:, 0] + m[:, 1] + m[:, 2], m[:, 1] - m[:, 2] - m[:, 3])):  # m A
        out[:, :, 0, :, q] = col[0] + col[1] + col[2]  # A^T (m A)
        out[:, :, 1, :, q] = col[1] - col[2] - col[3]
    out = out.view(n, h, w, -1) + bias
    return out.permute(0, 3, 1, 2)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{cpu_name()}, torch {torch.__version__}, {args.threads} threads, fp32, batch 1\n")
    print("| channels | side | GFLOP | direct (ms) | direct TFLOP/s | Winograd (ms) | speed-up | max rel. error |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    torch.manual_seed(0)
    with torch.inference_mode():
        for channels, side in SHAPES:
            x = torch.randn(1, channels, side, side).contiguous(memory_format=torch.channels_last)
            weight = (torch.randn(channels, channels, 3, 3) / (3 * channels ** 0.5)).contiguous(
                memory_format=torch.channels_last)
            bias = torch.randn(channels)
            u = transform_filter(weight)
            reference = F.conv2d(x, weight, bias, padding=1)
            error = ((winograd_conv3x3(x, u, bias) - reference).abs().max() / reference.abs().max()).item()
            runs = {"direct": lambda: F.conv2d(x, weight, bias, padding=1),
                    "winograd": lambda: winograd_conv3x3(x, u, bias)}
            times: dict[str, list[float]] = {name: [] for name in runs}
            for _ in range(args.repeats + 1):  # the first round warms up
                for name, run in runs.items():
                    start = time.perf_counter()
                    run()
                    times[name].append(time.perf_counter() - start)
            direct, winograd = (statistics.median(times[name][1:]) for name in ("direct", "winograd"))
            gflop = 2 * channels * channels * 9 * side * side / 1e9
            print(f"| {channels} | {side} | {gflop:.1f} | {direct * 1e3:.1f} | {gflop / direct / 1e3:.3f} | "
                  f"{winograd * 1e3:.1f} | {direct / winograd:.2f}x | {error:.1e} |", flush=True)


if __name__ == "__main__":
    main()
