"""``python -m benchmarks`` — run the comparative suite into a run folder, gate it, publish a full run on purpose.

    python -m benchmarks run [--bundles bundles] [--artifacts artifacts] [--peers litert openvino] [--check]
    python -m benchmarks publish --from build/bench/RUN      # results/suite.json, cold_start.json, slice.json, plots,
                                                             # REPORT.md, README numbers
    python -m benchmarks report                              # REPORT.md and README numbers from the committed data
    python -m benchmarks check [--require-baseline]          # gate the newest history record
    python -m benchmarks models --bundles bundles            # results/models.json (held-out metrics of the bundles)
    python -m benchmarks slice [--slice-seconds 20]          # results/slice.json: a CT slice, one pass vs patches
    python -m benchmarks concurrency | safety | serve | int8-ops

``run`` also times one pass vs patch by patch for bundles with a whole-slice variant (``--no-slice`` skips it) into
the run folder's ``slice.json``; ``publish`` writes it, and every cold start of the run, to ``results/``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from . import history, report, results

HERE = Path(__file__).parent
RUNS = HERE.parent / "build" / "bench"
NO_BASELINE = 3  # exit code of --check --require-baseline on a CPU without earlier full runs


def _command(argv: list[str] | None) -> str:
    return "python -m benchmarks " + shlex.join(sys.argv[1:] if argv is None else argv)


def _bundles(args: argparse.Namespace) -> list[Path]:
    root = Path(args.bundles)
    found = sorted(p for p in root.iterdir() if (p / "manifest.json").is_file()) if root.is_dir() else []
    return [b for b in found if b.name in args.models] if args.models else found


def _history_path(args: argparse.Namespace, env: dict | None = None) -> Path:
    if getattr(args, "history", None):
        return Path(args.history)
    from medinfer.tools.fingerprint import environment

    return history.history_file(HERE / "history", env or environment())


def gate(records: list[dict], new: dict, threshold: float, window: int, require: bool) -> int:
    """The regression gate: ``new`` against the rolling median of earlier full runs on its CPU fingerprint."""
    base, used = history.baseline(records, new, window)
    if not used:
        print(f"!! NO BASELINE FOR THIS CPU ({history.fingerprint(new.get('env', {}))}): no earlier full run on "
              "it, nothing compared. Run `make bench` here a few times to build one.", file=sys.stderr)
        return NO_BASELINE if require else 0
    problems = history.check(new, base, threshold)
    if problems:
        print(f"REGRESSION against the median of {len(used)} earlier full runs on this CPU:")
        for p in problems:
            print(f"  - {p}")
        return 1
    print(f"regression check: no ratio worse than the median of {len(used)} earlier full runs on this CPU by more "
          f"than {threshold:.0%}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from . import runs
    from .suite import run_suite

    bundles = _bundles(args)
    if not bundles:
        print(f"no bundles in {args.bundles}/ — run 'make demo' (or 'medinfer build all') first", file=sys.stderr)
        return 2
    artifacts = Path(args.artifacts) if args.artifacts else None
    command = _command(args.argv)
    record = run_suite(bundles, batches=args.batch, artifacts=artifacts, seconds=args.seconds, rounds=args.rounds,
                       cold=not args.no_cold, peers=args.peers, command=command,
                       progress=lambda m: print(m, file=sys.stderr))
    folder = runs.write(record, Path(args.out) if args.out else RUNS)
    if not args.no_slice:
        doc = _slice_doc(args, bundles, command)
        if doc is not None:
            runs.write_slice(folder, doc)
    print(f"run folder: {folder} (publish a full run with: python -m benchmarks publish --from {folder})")
    path = _history_path(args, record["env"])
    records = history.load(path)
    if record["full"]:
        history.append(path, record)
        print(f"appended to {path}")
    else:
        print(f"short run ({args.seconds:g} s x {args.rounds} rounds): not added to the history, never published")
    return gate(records, record, args.threshold, args.window, args.require_baseline) if args.check else 0


def cmd_publish(args: argparse.Namespace) -> int:
    from . import readme, runs

    record = runs.read(Path(args.from_))
    if not record.get("full"):
        print(f"{args.from_} is a short run ({record.get('seconds_per_batch')} s x {record.get('rounds')} rounds): "
              "only a full run (make bench) is published", file=sys.stderr)
        return 2
    written = runs.publish_results(Path(args.from_), results.FOLDER)
    if "slice" not in written and runs.read_slice(Path(args.from_)) is not None:
        print(f"{args.from_}: its one-pass-vs-patches section was timed short; results/slice.json left as it is "
              "(python -m benchmarks slice makes a full one)", file=sys.stderr)
    drawn = runs.plots(Path(args.from_), HERE / "plots", report.history_records())
    (HERE / "REPORT.md").write_text(report.render(record, report.history_records(), drawn))
    readme.rewrite(HERE.parent / "README.md")
    print(f"published {args.from_}: {', '.join(f'results/{n}.json' for n in written)}, plots, REPORT.md, "
          "README numbers")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from . import readme, runs

    path = HERE / "REPORT.md"
    path.write_text(report.render(report.published(), report.history_records(), runs.committed_plots(HERE / "plots")))
    print(path)
    if readme.rewrite(HERE.parent / "README.md"):  # README's numbers follow the same data (safety, concurrency, ...)
        print(HERE.parent / "README.md")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    records = history.load(_history_path(args))
    if not records:
        print("!! NO BASELINE FOR THIS CPU: no history at all", file=sys.stderr)
        return NO_BASELINE if args.require_baseline else 0
    return gate(records[:-1], records[-1], args.threshold, args.window, args.require_baseline)


def cmd_models(args: argparse.Namespace) -> int:
    from . import readme

    path = results.write("models", readme.models_doc(_bundles(args), _command(args.argv)))
    print(f"wrote {path}")
    return 0


def cmd_int8_ops(args: argparse.Namespace) -> int:
    from . import int8_ops

    entry = int8_ops.measure(Path(args.bundle), args.runs, args.threads, _command(args.argv))
    print(f"wrote {int8_ops.record(entry, results.FOLDER)}")
    print("\n".join(int8_ops.render(results.load("int8_ops"))))
    return 0


def cmd_concurrency(args: argparse.Namespace) -> int:
    from .concurrency import concurrency, markdown

    rows = [concurrency(b, threads=args.threads, seconds=args.seconds, rounds=args.rounds) for b in _bundles(args)]
    doc = {"command": _command(args.argv), "interleaved": True, "rows": rows}
    print(f"wrote {results.write('concurrency', doc)}")
    print("\n".join(markdown(doc)))
    return 0


def _slice_doc(args: argparse.Namespace, bundles: list[Path], command: str) -> dict | None:
    from .slice import document, slice_speed

    rows = []
    for bundle in bundles:
        rows += slice_speed(bundle, seconds=args.slice_seconds, rounds=args.slice_rounds,
                            sizes=tuple(args.slice_sizes))
    return document(rows, command, args.slice_seconds, args.slice_rounds) if rows else None


def cmd_slice(args: argparse.Namespace) -> int:
    from .slice import markdown

    doc = _slice_doc(args, _bundles(args), _command(args.argv))
    if doc is None:
        print(f"no bundle in {args.bundles}/ ships a whole-slice variant", file=sys.stderr)
        return 2
    print(f"wrote {results.write('slice', doc)}")
    print("\n".join(markdown(doc)))
    return 0


def cmd_safety(args: argparse.Namespace) -> int:

    from medinfer.timestamps import utc_text
    from medinfer.tools.fingerprint import environment

    from .safety import audit_cost, markdown, soak

    bundles = _bundles(args)
    doc = {"kind": "medinfer.safety", "command": _command(args.argv),
           "time": utc_text(), "env": environment(),
           "method": {"seconds_per_model": args.seconds, "rounds": args.rounds, "batch": 1,
                      "timer": "perf_counter_ns", "trimming": "none"},
           "costs": [audit_cost(b, seconds=args.seconds, rounds=args.rounds) for b in bundles],
           "soaks": [soak(b, seconds=args.soak_seconds) for b in bundles] if args.soak_seconds > 0 else []}
    print(f"wrote {results.write('safety', doc)}")
    print("\n".join(markdown(doc)))
    return 1 if any(s["growth_mb"] > args.max_growth_mb for s in doc["soaks"]) else 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .serve import markdown, run

    bundles = _bundles(args)
    if not bundles:
        print(f"no bundles in {args.bundles}/ — run 'make demo' (or 'medinfer build all') first", file=sys.stderr)
        return 2
    record = run(bundles, args.servers, args.clients, args.encodings, args.seconds, args.rounds, args.baseline_ref,
                 progress=lambda m: print(m, file=sys.stderr))
    record["command"] = _command(args.argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))
    print("\n".join(markdown(record)))
    print(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from .cli import parser

    args = parser(__doc__).parse_args(argv)
    args.argv = argv
    handlers = {"run": cmd_run, "publish": cmd_publish, "report": cmd_report, "check": cmd_check,
                "models": cmd_models, "int8-ops": cmd_int8_ops, "concurrency": cmd_concurrency,
                "slice": cmd_slice, "safety": cmd_safety, "serve": cmd_serve}
    return int(handlers[args.command](args))


if __name__ == "__main__":
    raise SystemExit(main())
