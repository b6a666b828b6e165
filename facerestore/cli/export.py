"""`facerestore export NAME (--onnx PATH | --torchscript PATH)`: write a zoo model as an ONNX or
TorchScript file with a fixed signature (see facerestore.export), checked against PyTorch."""
from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export", help="export a model to ONNX or TorchScript", description=__doc__)
    p.add_argument("name", metavar="NAME", help="zoo name or alias (`facerestore models`)")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--onnx", metavar="PATH", help="write an ONNX model (checked with onnxruntime on the CPU)")
    target.add_argument("--torchscript", metavar="PATH", help="write a traced TorchScript module")
    p.add_argument("--weights", help="local weights file/folder or URL (default: cache, then download)")
    p.add_argument("--no-pretrained", action="store_true", help="random weights (to try the export)")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset, >= 18 (default 18)")
    p.add_argument("--size", type=int, help="input side: detectors (default 640) and DPR (multiple of 16); "
                                            "for GFP-GAN/GPEN it builds the network at that size")
    p.add_argument("--fidelity", type=float, metavar="W",
                   help="CodeFormer only: fix its fidelity weight w in the graph (default: w is a second input, "
                        "a float32 scalar, set at inference)")
    p.add_argument("--batch", type=int, default=1, help="batch of the example input and the check (default 1)")
    p.add_argument("--static-batch", action="store_true", help="fix the batch size instead of a dynamic axis")
    p.add_argument("--check", action=argparse.BooleanOptionalAction, default=True,
                   help="compare the exported model with PyTorch on a random input (default: on)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..export import export_onnx, export_torchscript, read_metadata, read_torchscript_metadata

    common = dict(weights=args.weights, pretrained=not args.no_pretrained, batch=args.batch, size=args.size,
                  fidelity=args.fidelity, check=args.check)
    if args.onnx:
        path = export_onnx(args.name, args.onnx, opset=args.opset, dynamic_batch=not args.static_batch, **common)
        metadata, what = read_metadata(path), f"ONNX, opset {args.opset}"
    else:
        path = export_torchscript(args.name, args.torchscript, **common)
        metadata, what = read_torchscript_metadata(path), "TorchScript"
    print(f"wrote {path} ({what}, batch {metadata['batch']})")
    print(f"  inputs:  {metadata['inputs']}")
    print(f"  outputs: {metadata['outputs']}")
    if metadata.get("notes"):
        print(f"  notes:   {metadata['notes']}")
    if "check_max_abs_diff" in metadata:
        runtime = "onnxruntime CPU" if args.onnx else "TorchScript"
        diffs = json.loads(metadata["check_max_abs_diff"])
        print(f"  check:   max |{runtime} - PyTorch| " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    return 0
