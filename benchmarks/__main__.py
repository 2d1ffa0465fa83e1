"""``python -m benchmarks`` — run the comparative suite, check for regressions, redraw the report.

    python -m benchmarks run [--bundles bundles] [--artifacts artifacts] [--batch 1 64] [--seconds 4]
    python -m benchmarks slice [--bundles bundles] [--slice-seconds 20]
    python -m benchmarks safety [--bundles bundles] [--seconds 3] [--soak-seconds 60]
    python -m benchmarks check [--threshold 0.15] [--history FILE]
    python -m benchmarks serve [--bundles bundles] [--models ...] [--clients 1 4 16] [--seconds 3] [--rounds 3]
    python -m benchmarks report

``run`` also writes ``results/cold_start.json`` and (for bundles with a whole-slice variant) ``results/slice.json``;
``safety`` writes ``results/safety.json``: raw measurements with the command that made them, rendered by ``report``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import history, plots, report
from .suite import run_suite

HERE = Path(__file__).parent


def _history_path(args: argparse.Namespace) -> Path:
    if args.history:
        return Path(args.history)
    from medinfer.tools.fingerprint import environment

    return history.history_file(HERE / "history", environment())


def _bundles(args: argparse.Namespace) -> list[Path]:
    root = Path(args.bundles)
    bundles = sorted(p for p in root.iterdir() if (p / "manifest.json").is_file()) if root.is_dir() else []
    return [b for b in bundles if b.name in args.models] if args.models else bundles


def _render(latest: dict | None, records: list[dict], raw_record: dict | None) -> Path:
    out = HERE / "plots"
    out.mkdir(exist_ok=True)
    drawn: list[Path] = []
    if raw_record is not None:
        drawn += plots.distributions(raw_record, out)
        drawn.append(plots.native_vs_runtime(raw_record, out))
    else:
        drawn += sorted(out.glob("latency_*.png")) + [p for p in [out / "native_vs_runtime.png"] if p.exists()]
    if len(records) >= 1:
        drawn.append(plots.history(records, out))
    path = HERE / "REPORT.md"
    path.write_text(report.render(latest, drawn, report.extras_from_results(HERE / "results")))
    return path


def _write_result(name: str, doc: dict) -> Path:
    import json

    out = HERE / "results" / name
    out.parent.mkdir(exist_ok=True)
    tmp = out.with_suffix(".part")
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.replace(out)
    return out


def _slice(args: argparse.Namespace, bundles: list[Path]) -> Path | None:
    from .slice import document, slice_speed

    rows = []
    for bundle in bundles:
        rows += slice_speed(bundle, seconds=args.slice_seconds, rounds=args.slice_rounds,
                            sizes=tuple(args.slice_sizes))
    if not rows:
        return None
    return _write_result("slice.json", document(rows, args.command_line, args.slice_seconds, args.slice_rounds))


def _cold_start_doc(record: dict, command: str) -> dict:
    models = {m["model"]: {"default": m.get("cold_start"), **(m.get("cold_start_variants") or {})}
              for m in record["models"] if m.get("cold_start")}
    return {"kind": "medinfer.cold_start", "title": "Cold start, every run", "command": command,
            "time": record["time"], "env": record["env"],
            "method": "fresh process: interpreter + import medinfer + load (integrity, golden self-test) + first "
                      "result; peak RSS = VmHWM", "models": models, "all_loaded": record.get("all_loaded")}


def cmd_run(args: argparse.Namespace) -> int:
    bundles = _bundles(args)
    if not bundles:
        print(f"no bundles in {args.bundles}/ — run 'make demo' (or 'medinfer build all') first", file=sys.stderr)
        return 2
    artifacts = Path(args.artifacts) if args.artifacts else None
    record = run_suite(bundles, batches=args.batch, artifacts=artifacts, seconds=args.seconds, rounds=args.rounds,
                       cold=not args.no_cold, progress=lambda m: print(m, file=sys.stderr))
    if not args.no_cold:
        print(f"cold start: {_write_result('cold_start.json', _cold_start_doc(record, args.command_line))}",
              file=sys.stderr)
    if not args.no_slice:
        written = _slice(args, bundles)
        if written is not None:
            print(f"one pass vs patch by patch: {written}", file=sys.stderr)
    if args.baseline:
        record["baseline"] = True
    path = _history_path(args)
    history.append(path, record)
    records = history.load(path)
    if not args.no_report:
        print(f"report: {_render(records[-1], records, record)}", file=sys.stderr)
    print(report.render(records[-1], [], {}).split("## Side by side", 1)[-1])
    print(f"appended to {path}")
    return _check(records, args.threshold) if args.check else 0


def _check(records: list[dict], threshold: float) -> int:
    base = history.baseline_of(records)
    if base is None:
        print("regression check: no baseline yet (first run in this history) — nothing to compare")
        return 0
    problems = history.check(records[-1], base, threshold)
    if problems:
        print(f"REGRESSION against baseline {base.get('time')} ({base['env'].get('git_commit')}):")
        for p in problems:
            print(f"  - {p}")
        return 1
    print(f"regression check: no ratio worse than baseline {base.get('time')} by more than {threshold:.0%}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    return _check(history.load(_history_path(args)), args.threshold)


def cmd_slice(args: argparse.Namespace) -> int:
    from .slice import markdown

    written = _slice(args, _bundles(args))
    if written is None:
        print(f"no bundle in {args.bundles}/ ships a whole-slice variant", file=sys.stderr)
        return 2
    import json

    print("\n".join(markdown(json.loads(written.read_text()))))
    records = history.load(_history_path(args))
    _render(records[-1] if records else None, records, None)
    return 0


def cmd_safety(args: argparse.Namespace) -> int:
    import time

    from medinfer.tools.fingerprint import environment

    from .safety import audit_cost, markdown, soak

    bundles = _bundles(args)
    costs = [audit_cost(b, seconds=args.seconds, rounds=args.rounds) for b in bundles]
    soaks = [soak(b, seconds=args.soak_seconds) for b in bundles] if args.soak_seconds > 0 else []
    doc = {"kind": "medinfer.safety", "title": "Safety costs: audit trail, deadlines, soak",
           "command": args.command_line, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "env": environment(),
           "method": {"seconds_per_model": args.seconds, "rounds": args.rounds, "batch": 1, "timer": "perf_counter_ns",
                      "trimming": "none"}, "costs": costs, "soaks": soaks}
    _write_result("safety.json", doc)
    print("\n".join(markdown(doc)))
    records = history.load(_history_path(args))
    _render(records[-1] if records else None, records, None)
    leaks = [s for s in soaks if s["growth_mb"] > args.max_growth_mb]
    return 1 if leaks else 0


def cmd_concurrency(args: argparse.Namespace) -> int:
    import json

    from .concurrency import concurrency, markdown

    bundles = _bundles(args)
    rows = [concurrency(b, threads=args.threads, seconds=args.seconds) for b in bundles]
    text = markdown(rows)
    out = HERE / "results" / "concurrency.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"title": "Concurrent clients: direct calls vs micro-batching", "markdown": text,
                               "rows": rows}, indent=1))
    print("\n".join(text))
    records = history.load(_history_path(args))
    _render(records[-1] if records else None, records, None)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import json

    from .serve import markdown, run

    bundles = _bundles(args)
    if not bundles:
        print(f"no bundles in {args.bundles}/ — run 'make demo' (or 'medinfer build all') first", file=sys.stderr)
        return 2
    record = run(bundles, args.servers, args.clients, args.encodings, args.seconds, args.rounds, args.baseline_ref,
                 progress=lambda m: print(m, file=sys.stderr))
    record["command"] = "python -m benchmarks " + " ".join(sys.argv[1:] if args.argv is None else args.argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))
    print("\n".join(markdown(record)))
    print(f"wrote {out}")
    if out.resolve().parent == (HERE / "results").resolve():
        records = history.load(_history_path(args))
        _render(records[-1] if records else None, records, None)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    records = history.load(_history_path(args))
    print(_render(records[-1] if records else None, records, None))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="measure every bundle side by side, append to history, redraw the report")
    p.add_argument("--bundles", default="bundles")
    p.add_argument("--artifacts", default="artifacts", help="native artifacts for the native side ('' to skip)")
    p.add_argument("--models", nargs="*", default=None, help="only these bundles")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 64])
    p.add_argument("--seconds", type=float, default=4.0, help="wall time per model and batch size (all candidates)")
    p.add_argument("--rounds", type=int, default=10, help="interleaving rounds")
    p.add_argument("--no-cold", action="store_true")
    p.add_argument("--no-slice", action="store_true", help="skip one pass vs patch by patch (whole-slice variants)")
    _slice_options(p)
    p.add_argument("--no-report", action="store_true")
    p.add_argument("--baseline", action="store_true", help="mark this run as the baseline for later checks")
    p.add_argument("--check", action="store_true", help="exit 1 when a ratio regressed against the baseline")
    p.add_argument("--threshold", type=float, default=history.DEFAULT_THRESHOLD)
    p.add_argument("--history", default=None, help="history file (default: benchmarks/history/<machine>.jsonl)")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("check", help="compare the newest history record with its baseline by ratio")
    p.add_argument("--threshold", type=float, default=history.DEFAULT_THRESHOLD)
    p.add_argument("--history", default=None)
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("slice", help="a whole CT slice: one pass vs patch by patch -> results/slice.json")
    p.add_argument("--bundles", default="bundles")
    p.add_argument("--models", nargs="*", default=None)
    p.add_argument("--history", default=None)
    _slice_options(p)
    p.set_defaults(func=cmd_slice)
    p = sub.add_parser("safety", help="audit-trail/deadline cost and an RSS soak test -> results/safety.json")
    p.add_argument("--bundles", default="bundles")
    p.add_argument("--models", nargs="*", default=None)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--soak-seconds", type=float, default=60.0)
    p.add_argument("--max-growth-mb", type=float, default=5.0, help="exit 1 when RSS grows more than this")
    p.add_argument("--history", default=None)
    p.set_defaults(func=cmd_safety)
    p = sub.add_parser("concurrency", help="8 single-sample clients: direct vs MicroBatcher -> results/")
    p.add_argument("--bundles", default="bundles")
    p.add_argument("--models", nargs="*", default=None)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--history", default=None)
    p.set_defaults(func=cmd_concurrency)
    p = sub.add_parser("serve", help="medinfer serve (before/after issue 17, audit on/off), MLServer and "
                                     "tritonserver side by side -> results/serve.json")
    p.add_argument("--bundles", default="bundles")
    p.add_argument("--models", nargs="*", default=None)
    p.add_argument("--servers", nargs="+", default=["medinfer-baseline", "medinfer", "mlserver", "tritonserver"])
    p.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--encodings", nargs="+", choices=("json", "binary"), default=["json", "binary"])
    p.add_argument("--seconds", type=float, default=3.0, help="per cell (server x encoding x clients) and round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--baseline-ref", default="5e459c4", help="git ref of the 'before' medinfer serve")
    p.add_argument("--out", default=str(HERE / "results" / "serve.json"))
    p.add_argument("--history", default=None)
    p.set_defaults(func=cmd_serve, argv=None)
    p = sub.add_parser("report", help="redraw REPORT.md from the history and result files")
    p.add_argument("--history", default=None)
    p.set_defaults(func=cmd_report)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.command_line = " ".join(["python -m benchmarks", *argv])  # recorded with every results file
    return int(args.func(args))


def _slice_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--slice-seconds", type=float, default=20.0, help="wall time per slice size, both paths")
    p.add_argument("--slice-rounds", type=int, default=3)
    p.add_argument("--slice-sizes", type=int, nargs="+", default=[256, 512])


if __name__ == "__main__":
    raise SystemExit(main())
