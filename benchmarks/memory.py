"""Peak memory of `restore()` on huge photos (not a test): a shared photo (Blake_Lively.jpg, two faces)
resized to N megapixels, restored by a small untrained GPEN (64 px) with the real 1 MB detector, in a
fresh subprocess per size. Prints, per size and paste mode, the peak RSS above the RSS before the call
(ru_maxrss: everything, torch included) and tracemalloc's peak (numpy and Python allocations), in MB
and bytes per input pixel, as a Markdown table.

    python benchmarks/memory.py                        # 12, 25, 50, 100 MP; parse and feather pastes
    python benchmarks/memory.py --megapixels 40 --paste gpen
    python benchmarks/memory.py --megapixels 12 25 --upsampler    # upscale 2 with a Real-ESRGAN upsampler

The memory of the network, detector and parser themselves does not grow with the photo (faces are
aligned to the network size; detection runs on a resized copy), so what grows is the photo's own
arrays: the input and the output (3 bytes per pixel each) plus chunk-bounded paste buffers.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACERESTORE_SHARED", ROOT.parent / "shared"))


def measure(megapixels: float, paste: str, upsampler: bool = False, small_parser: bool = True) -> dict:
    """Run one restore of an N-megapixel photo in this process; returns the memory figures (bytes).
    upsampler: upscale 2 with a Real-ESRGAN background upsampler (a small x2 RRDBNet: the real pipeline,
    tiles of 400 px; its activations do not grow with the photo)."""
    import resource
    import tracemalloc

    import cv2
    import torch

    import facerestore

    torch.manual_seed(0)
    restorer = facerestore.load("gpen-bfr-256", pretrained=False, device="cpu", size=64, style_dim=32, n_mlp=2,
                                channel_multiplier=1, narrow=0.125, detector="retinaface-mobile0.25-1mb",
                                detector_weights=str(SHARED / "weights/retinaface/mobilenet0.25_Final.pth"))
    if small_parser:  # the real ParseNet architecture, small (the mask cost does not depend on the photo)
        from facerestore.archs.parsenet import ParseNet
        from facerestore.face.parse import FaceParser

        restorer._parser = FaceParser(ParseNet(min_feat_size=256, base_ch=4, ch_range=(4, 4), res_depth=1),
                                      "parsenet", device="cpu")
    upscale = 1.0
    if upsampler:
        from facerestore.archs.rrdbnet import RRDBNet
        from facerestore.upscale import Upscaler

        restorer._upsampler = Upscaler(RRDBNet(scale=2, num_feat=16, num_block=1, num_grow_ch=8), device="cpu")
        upscale = 2.0
    photo = cv2.imread(str(SHARED / "data/real/whole/Blake_Lively.jpg"))
    scale = (megapixels * 1e6 / (photo.shape[0] * photo.shape[1])) ** 0.5
    image = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    restorer.restore(photo, paste=paste, upscale=upscale)  # warm up (helpers built, kernels chosen) on the small photo
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tracemalloc.start()
    out = restorer.restore(image, paste=paste, upscale=upscale)
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"megapixels": image.shape[0] * image.shape[1] / 1e6, "paste": paste, "faces": len(out.faces),
            "output_megapixels": out.shape[0] * out.shape[1] / 1e6,
            "rss_growth": rss_after - rss_before, "rss_peak": rss_after, "traced_peak": traced_peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megapixels", type=float, nargs="+", default=[12, 25, 50, 100])
    parser.add_argument("--paste", nargs="+", default=["parse", "feather"])
    parser.add_argument("--upsampler", action="store_true",
                        help="upscale 2 with a (small) Real-ESRGAN background upsampler")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.megapixels[0], args.paste[0], args.upsampler)))
        return
    print("| photo (MP) | output (MP) | paste | faces | peak RSS growth (MB) | bytes / input pixel | traced peak (MB) "
          "| bytes / input pixel |")
    print("|---|---|---|---|---|---|---|---|")
    for mp in args.megapixels:
        for paste in args.paste:
            run = subprocess.run([sys.executable, __file__, "--child", "--megapixels", str(mp), "--paste", paste,
                                  *(["--upsampler"] if args.upsampler else [])], capture_output=True, text=True, cwd=ROOT)
            if run.returncode:
                print(f"| {mp:g} | {paste} | failed: {run.stderr.strip().splitlines()[-1]} |", flush=True)
                continue
            r = json.loads(run.stdout.strip().splitlines()[-1])
            pixels = r["megapixels"] * 1e6
            print(f"| {r['megapixels']:.1f} | {r['output_megapixels']:.1f} | {paste} | {r['faces']} | {r['rss_growth'] / 1e6:.0f} | "
                  f"{r['rss_growth'] / pixels:.1f} | {r['traced_peak'] / 1e6:.0f} | {r['traced_peak'] / pixels:.1f} |",
                  flush=True)


if __name__ == "__main__":
    main()
