"""The issue-30 measurements behind ``python -m benchmarks cnn-int8 | tails | trees`` (one dispatcher, so the
command table stays small): each returns (results file name, document, report lines)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def run(args: argparse.Namespace, command: str, started: dict[str, Any]) -> tuple[str, dict[str, Any], list[str]]:
    def progress(message: str) -> None:
        print(message, file=sys.stderr)

    if args.command == "cnn-int8":
        from . import cnn_int8

        doc = cnn_int8.measure(Path(args.bundle), Path(args.artifacts), threads=args.threads, seconds=args.seconds,
                               rounds=args.rounds, peer_kinds=args.peers, command=command, started=started,
                               progress=progress)
        return "cnn_int8", doc, cnn_int8.render(doc)
    if args.command == "trees":
        from . import trees

        doc = trees.measure(Path(args.bundle), Path(args.artifacts), batches=args.batches, seconds=args.seconds,
                            rounds=args.rounds, command=command, started=started, progress=progress)
        return "trees", doc, trees.render(doc)
    from . import tails

    root = Path(args.bundles)
    bundles = sorted(p for p in root.iterdir() if (p / "manifest.json").is_file()) if root.is_dir() else []
    bundles = [b for b in bundles if not args.models or b.name in args.models]
    doc = tails.measure(bundles, batches=args.batches, seconds=args.seconds, rounds=args.rounds, command=command,
                        started=started, progress=progress)
    return "tails", doc, tails.render(doc)
