"""`facerestore app [--host 127.0.0.1] [--port 7860]`: a local web app (Gradio) to restore photos with
any zoo model (several side by side), relight portraits (DPR), and the same as an HTTP API
(/restore, /relight; see the README). It listens on 127.0.0.1 only and makes no public link unless
--share is given. Needs the `app` extra: pip install "facerestore[app]".
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("app", help="local web app (restore, compare, relight) and HTTP API", description=__doc__)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only; "
                                                       "0.0.0.0 opens it to your network)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--share", action="store_true", help="also create a public gradio.live link (off by default)")
    p.add_argument("-m", "--model", default="gfpgan-v1.4", help="restore model selected when the page opens")
    p.add_argument("--no-pretrained", action="store_true",
                   help="untrained restore models (tests the pipeline; reads no weights file)")
    p.add_argument("--detector", default="retinaface-resnet50")
    p.add_argument("--detector-weights", help="local detector weights file")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"],
                   help="default precision (fp32 where a model supports nothing else)")
    p.add_argument("--relight-model", default="dpr-512", help="relight model of the /relight API (default dpr-512)")
    p.add_argument("--relight-weights", help="local weights file of the relight model (used even with --no-pretrained)")
    p.add_argument("--upsampler-weights", help="local weights of the background upsampler (where supported)")
    p.add_argument("--parser-weights", help="local weights of the face parser used to paste faces (where supported)")
    p.add_argument("--max-models", type=int, default=2, help="loaded models kept in memory (default 2)")
    p.add_argument("--concurrency", type=int, default=1, help="model runs at the same time, all users (default 1)")
    p.add_argument("--max-file-size", default="50mb", help="largest upload (default 50mb)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        from ..app import AppOptions, launch
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in ("gradio", "gradio_client"):
            print('facerestore app: the web app needs gradio: pip install "facerestore[app]"', file=sys.stderr)
            return 1
        raise
    from ..registry import get_entry

    for name, task in ((args.model, "restore"), (args.relight_model, "relight"), (args.detector, "detect")):
        if get_entry(name).task != task:  # an unknown name fails now, with close matches, not on the first request
            raise ValueError(f"{name} is a {get_entry(name).task} model, not a {task} model")
    for flag, path in (("--detector-weights", args.detector_weights), ("--relight-weights", args.relight_weights),
                       ("--upsampler-weights", args.upsampler_weights), ("--parser-weights", args.parser_weights)):
        if path and not Path(path).exists():
            raise FileNotFoundError(f"{flag} {path} does not exist")
    if args.max_models < 1 or args.concurrency < 1:
        raise ValueError("--max-models and --concurrency must be at least 1")
    if args.host not in LOOPBACK:
        print(f"facerestore app: listening on {args.host}: other machines on your network can use it", file=sys.stderr)
    options = AppOptions(
        model=args.model, device=args.device, precision=args.precision, pretrained=not args.no_pretrained,
        detector=args.detector, detector_weights=args.detector_weights, relight_model=args.relight_model,
        relight_weights=args.relight_weights, upsampler_weights=args.upsampler_weights,
        parser_weights=args.parser_weights, max_models=args.max_models, concurrency=args.concurrency,
    )
    launch(options, host=args.host, port=args.port, share=args.share, max_file_size=args.max_file_size)
    return 0
