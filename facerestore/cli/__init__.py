"""The `facerestore` command line: a thin argparse front end over the Python API.

Each command lives in its own module of this package and exposes `register(subparsers)`, which adds
its sub-parser and sets `func` (a callable taking the parsed args and returning an exit code).
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="facerestore", description="Blind face restoration and portrait relighting.")
    parser.add_argument("--version", action="version", version=f"facerestore {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "register"):
            module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (KeyError, OSError, ValueError, TypeError, RuntimeError) as exc:
        # Errors users can cause carry a message that says what to do; no traceback for those.
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"facerestore {args.command}: error: {message}", file=sys.stderr)
        return 1
