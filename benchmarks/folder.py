"""Whole-folder speed (not a test): the same folder restored one photo after the other and pipelined
(`facerestore.pipeline.restore_folder`: reading, detection, network, paste-back and writing of
consecutive photos overlap), next to the network alone on the same faces (`restore_faces` on the aligned
crops, in the same batches). Prints photos/min and faces/s side by side as a Markdown table.

    python benchmarks/folder.py                              # shared data/real/whole, gpen-bfr-256 untrained
    python benchmarks/folder.py --model gfpgan-v1.4 --precision bf16
    python benchmarks/folder.py --model configs/tiny_gpen.yaml   # a 64 px GPEN: the pipeline's own overhead

Random weights (`--no-pretrained`, the default here) cost the same time as the real ones. Each measurement
runs in a fresh thread (as the pipeline's stages do): on a host busier than its cores, OpenMP's spinning
made torch in the main thread up to 10x slower in this project's VM, which would flatter the pipeline.
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import threading
import time
import warnings
from pathlib import Path

import torch

import facerestore
from facerestore.imageio import read_image, to_bgr_uint8
from facerestore.pipeline import find_inputs, restore_folder

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACERESTORE_SHARED", ROOT.parent / "shared"))


def in_thread(fn):
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("value", fn()))
    thread.start()
    thread.join()
    return result["value"]


def network_only(restorer, folder: Path, seed: int, paste: str | None) -> tuple[float, int]:
    """Seconds of restore_faces alone over the faces of every photo (detection done beforehand)."""
    jobs = []
    for src, _ in find_inputs([folder]):
        bgr = to_bgr_uint8(read_image(src))[0]
        job = restorer.prepare_photo(bgr, 1, False, None, 0, None, paste or restorer.entry.family.paste)
        if job.faces:
            jobs.append(job)
    start = time.perf_counter()
    for job in jobs:
        restorer.restore_faces(job.crops, job.crop_landmarks, None, seed)
    return time.perf_counter() - start, sum(len(job.faces) for job in jobs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", default=str(SHARED / "data/real/whole"))
    parser.add_argument("--model", default="gpen-bfr-256")
    parser.add_argument("--pretrained", action="store_true", help="real weights (default: random, same cost)")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--paste", default="box", help="box (default: no parser network), parse, gpen, feather")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    restorer = facerestore.load(args.model, pretrained=args.pretrained, device="cpu", precision=args.precision,
                                detector="retinaface-mobile0.25-1mb",
                                detector_weights=str(SHARED / "weights/retinaface/mobilenet0.25_Final.pth"))
    folder = Path(args.folder)
    photos = len(find_inputs([folder]))
    with tempfile.TemporaryDirectory() as tmp:
        in_thread(lambda: restore_folder(restorer, [folder], Path(tmp) / "warm", seed=0, paste=args.paste,
                                         progress=False))  # warm-up: first calls build oneDNN primitives
        network_s, faces = in_thread(lambda: network_only(restorer, folder, 0, args.paste))
        runs = {}
        for mode, pipelined in (("sequential", False), ("pipelined", True)):
            runs[mode] = in_thread(lambda: restore_folder(restorer, [folder], Path(tmp) / mode, seed=0,
                                                          paste=args.paste, pipelined=pipelined, progress=False))
    print(f"{photos} photos, {faces} faces from {folder}; {args.model} ({args.precision}, paste {args.paste}), "
          f"{platform.processor() or platform.machine()}, {args.threads} threads, torch {torch.__version__}, "
          f"load average {os.getloadavg()[0]:.1f} at the end")
    print()
    print("| run | seconds | photos/min | faces/s | vs network only |")
    print("|---|---:|---:|---:|---:|")
    print(f"| network only (restore_faces) | {network_s:.1f} | {60 * photos / network_s:.1f} | {faces / network_s:.2f} "
          f"| 1.00× |")
    for mode, summary in runs.items():
        print(f"| {mode} | {summary.seconds:.1f} | {summary.photos_per_minute:.1f} | {summary.faces_per_second:.2f} "
              f"| {summary.seconds / network_s:.2f}× |")
    stages = runs["pipelined"].stage_seconds
    print()
    print("pipelined stage busy seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in stages.items()))


if __name__ == "__main__":
    main()
