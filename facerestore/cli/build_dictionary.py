"""`facerestore build-dictionary HQ_FOLDER --clusters K -o DICT_DIR`: build DFDNet component
dictionaries (16 `<part>_<scale>_center.npy` files, the official layout) from high-quality faces."""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("build-dictionary", help="build DFDNet component dictionaries from HQ faces",
                              description=__doc__)
    p.add_argument("faces", metavar="HQ_FOLDER", help="folder of high-quality face images")
    p.add_argument("--clusters", "-k", type=int, required=True, help="atoms per dictionary (K-means clusters)")
    p.add_argument("-o", "--output", required=True, help="output folder for the 16 .npy files")
    p.add_argument("--weights", help="encoder weights: a DFDNet generator checkpoint or a torchvision VGG19 "
                                     "state dict (default: the official DFDNet generator from the zoo)")
    p.add_argument("--size", type=int, default=512, help="face size fed to the encoder (default 512)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--aligned", dest="aligned", action="store_true", default=True,
                      help="images are FFHQ-aligned faces (default)")
    mode.add_argument("--detect", dest="aligned", action="store_false",
                      help="detect and align every face of the images first")
    p.add_argument("--detector", default="retinaface-resnet50", help="face detector for --detect")
    p.add_argument("--detector-weights", help="local detector weights file")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: cpu)")
    p.add_argument("--iterations", type=int, default=50, help="maximum Lloyd iterations (default 50)")
    p.add_argument("--seed", type=int, default=0, help="K-means seed (default 0)")
    p.add_argument("--batch-size", type=int, default=4, help="faces per encoder forward (default 4)")
    p.add_argument("--work-dir", help="where features are kept while clustering (default: a temp folder; "
                                      "6.2 MB per face)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..zoo.dfdnet.dictionary import build_dictionaries

    written = build_dictionaries(
        args.faces, args.output, args.clusters, args.weights, size=args.size, aligned=args.aligned,
        detector=args.detector, detector_weights=args.detector_weights, device=args.device,
        batch_size=args.batch_size, iterations=args.iterations, seed=args.seed, work_dir=args.work_dir,
    )
    print(f"wrote {len(written)} dictionaries ({args.clusters} atoms each) to {args.output}")
    return 0
