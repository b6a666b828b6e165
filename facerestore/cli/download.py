"""`facerestore download NAME...`: fetch weights into the cache now (e.g. before going offline)."""
from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("download", help="download weights into the cache", description=__doc__)
    p.add_argument("names", nargs="+", metavar="NAME", help="zoo names or aliases, or 'all'")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import hub
    from ..api import fetch
    from ..registry import get_entry, list_models

    names = list_models() if args.names == ["all"] else args.names
    failed = 0
    for name in names:
        entry = get_entry(name)
        try:
            paths = fetch(entry)
            for p in paths.values():
                print(f"{entry.name}: {p}")
        except hub.WeightsError as exc:
            failed += 1
            print(f"{entry.name}: {exc}", file=sys.stderr)
    return 1 if failed else 0
