"""``python -m promises run [--only ID ...]`` (make promises), ``render``, ``check``, ``list``."""

from __future__ import annotations

import argparse
import json
import sys

from . import catalogue, render, runner


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m promises", description=runner.__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run every promise (or --only ID) unmutated and mutated; write results, render")
    r.add_argument("--only", action="append", default=[], help="a promise id (repeatable; comma-separated too)")
    sub.add_parser("render", help="render SECURITY.md's table from promises/results.json")
    sub.add_parser("check", help="the cheap check: results prove the current catalogue on the current tree")
    sub.add_parser("list", help="the promise ids")
    args = parser.parse_args(argv)
    promises = catalogue.load()
    if args.cmd == "list":
        for p in promises:
            print(f"{p.id:40} {p.row}")
        return 0
    results = render.load_results()
    if args.cmd == "run":
        wanted = {x for item in args.only for x in item.split(",") if x}
        unknown = wanted - {p.id for p in promises}
        if unknown:
            parser.error(f"unknown promise ids: {sorted(unknown)} (python -m promises list)")
        picked = [p for p in promises if not wanted or p.id in wanted]
        results = runner.run(picked, results if wanted else None, _log)
        order = {p.id: i for i, p in enumerate(promises)}
        results["rows"] = sorted((r for r in results["rows"] if r["id"] in order), key=lambda r: order[r["id"]])
        runner.RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    if args.cmd in ("run", "render"):
        render.rewrite(render.render(promises, results))
    problems = render.problems(promises, results)
    for p in problems:
        _log(f"[promises] {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
