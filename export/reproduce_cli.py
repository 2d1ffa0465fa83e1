"""``medinfer build NAME --check-reproducible`` (the command; the comparison is reproduce.py)."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from medinfer.errors import NotReproducible
from medinfer.tools.tables import table

from .reproduce import Comparison, check_reproducible, fresh_process_builder, record


def format_comparison(name: str, result: Comparison) -> str:
    """The per-file table of a check, and the manifest fields that differed as allowed."""
    rows = [[f, "identical"] for f in result.identical] + [[f, f"DIFFERS: {why}"] for f, why in result.differ.items()]
    text = f"{name}: two builds in fresh processes, every file compared by sha256\n" + table(rows, ["file", "result"])
    if result.allowed:
        text += ("\nmanifest.json: differs only in fields a rebuild may change (not covered by the graph's contract "
                 f"digest): {', '.join(result.allowed)}")
    return text


def build_reproducibly(args: argparse.Namespace, names: Sequence[str], progress: Callable[[str], None]) -> int:
    """Check each spec; publish the first build (bundle and artifacts) of each that is reproducible.

    Raises:
        NotReproducible: a spec's two builds differ (exit 15; nothing of that spec is written).
    """
    import medinfer

    from .bundle import publish

    out, failed = Path(args.out), []
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        work = Path(tempfile.mkdtemp(prefix=f".{name}.reproducible.", dir=out))
        try:
            build = fresh_process_builder(name, sample=args.sample, seed=args.seed, options=args.set)
            try:
                result, bundles = check_reproducible(name, work, build, progress=progress)
            except subprocess.CalledProcessError as exc:
                print(f"medinfer: error: a build of {name} failed (exit {exc.returncode}); see its messages above")
                return exc.returncode
            print(format_comparison(name, result))
            if not result.ok:
                failed.append(name)
                continue
            command = " ".join(["medinfer build", name, "--check-reproducible", f"--seed {args.seed}",
                                *([f"--sample {args.sample}"] if args.sample is not None else []),
                                *(f"--set {pair}" for pair in args.set)])
            record(bundles[0], result, command)
            medinfer.load(bundles[0])  # integrity and self-test, with the check recorded
            artifacts = Path(args.artifacts) / name
            if artifacts.exists():
                shutil.rmtree(artifacts)
            artifacts.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(bundles[0].parent.parent / "artifacts" / name), str(artifacts))
            print(f"wrote {publish(bundles[0], out / name)} (reproducible: {len(result.identical)} files "
                  "byte-identical in both builds)")
        finally:
            shutil.rmtree(work, ignore_errors=True)
    if failed:
        raise NotReproducible(f"{', '.join(failed)}: two builds in fresh processes gave different files (listed "
                              "above); nothing was written for it")
    return 0
