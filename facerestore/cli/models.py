"""`facerestore models`: the zoo, with what is cached locally."""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("models", help="list the model zoo and what is cached", description=__doc__)
    p.add_argument("--task", help="only this task (restore, colorize, inpaint, seg2face, relight, detect)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import hub
    from ..registry import aliases, get_entry, list_models

    alias_of: dict[str, list[str]] = {}
    for alias, name in aliases().items():
        alias_of.setdefault(name, []).append(alias)
    rows = [("name", "aliases", "task", "size", "license", "commercial", "cached")]
    for name in list_models(task=args.task):
        e = get_entry(name)
        rows.append((name, ",".join(sorted(alias_of.get(name, []))) or "-", e.task, str(getattr(e, "face_size", "-")),
                     e.license.split(";")[0][:28] or "-", "yes" if e.commercial_use else "no",
                     "yes" if hub.is_cached(e) else "no"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    print(f"\ncache: {hub.weights_dir()}  (set FACERESTORE_HOME to move it)")
    return 0
