"""``python -m benchmarks`` — run the comparative suite into a run folder, gate it, publish a full run on purpose.

    python -m benchmarks run [--bundles bundles] [--artifacts artifacts] [--peers litert openvino] [--check]
    python -m benchmarks publish --from build/bench/RUN      # results/suite.json, cold_start.json, slice.json, plots,
                                                             # REPORT.md, README numbers
    python -m benchmarks report                              # REPORT.md and README numbers from the committed data
    python -m benchmarks check [--require-baseline]          # gate the newest history record
    python -m benchmarks models --bundles bundles            # results/models.json (held-out metrics of the bundles)
    python -m benchmarks slice [--slice-seconds 20]          # results/slice.json: a CT slice, one pass vs patches
    python -m benchmarks concurrency | safety | serve | int8-ops | cnn-int8 | tails | trees
    python -m benchmarks explain [--examples]                # results/explain.json + plot: explanations' cost,
                                                             # fidelity; --examples: README's one per model
    python -m benchmarks domain [--seconds 6]                # results/domain.json + README table: the domain
                                                             # guards' refused shares (manifests) and cost

``run`` also times one pass vs patch by patch for bundles with a whole-slice variant (``--no-slice`` skips it) into
the run folder's ``slice.json``; ``publish`` writes it, and every cold start of the run, to ``results/``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from medinfer.errors import MedinferError, exit_code

from . import history, provenance, report, results

HERE = Path(__file__).parent
RUNS = HERE.parent / "build" / "bench"
NO_BASELINE = 3  # exit code of --check --require-baseline on a CPU without earlier full runs


def _command(argv: list[str] | None) -> str:
    return "python -m benchmarks " + shlex.join(sys.argv[1:] if argv is None else argv)


def _bundles(args: argparse.Namespace) -> list[Path]:
    root = Path(args.bundles)
    found = sorted(p for p in root.iterdir() if (p / "manifest.json").is_file()) if root.is_dir() else []
    models = getattr(args, "models", None)  # publish has no --models: every bundle of the run
    return [b for b in found if b.name in models] if models else found


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


def _begin(args: argparse.Namespace, what: str) -> dict:
    """The run's provenance, captured before it measures; a clean tree is required when it writes the report's
    own results folder (refused at once, not after the measurement)."""
    if _folder(args).resolve() == results.FOLDER.resolve():
        return provenance.require_clean(what=what)
    return provenance.capture()


def _folder(args: argparse.Namespace) -> Path:
    return Path(getattr(args, "results", None) or results.FOLDER)


def _write(args: argparse.Namespace, name: str, doc: dict, started: dict) -> Path:
    """Write a measuring command's results file: into the report's folder only if the tree was clean at the start
    and still is (a change made while it measured would make the record name the wrong code)."""
    folder = _folder(args)
    if folder.resolve() == results.FOLDER.resolve():
        provenance.still_publishable(started, what=f"python -m benchmarks {args.command}")
    return results.write(name, doc, folder)


def cmd_run(args: argparse.Namespace) -> int:
    from . import runs
    from .suite import run_suite

    started = provenance.capture()  # before anything is measured: the run folder says what ran
    bundles = _bundles(args)
    if not bundles:
        print(f"no bundles in {args.bundles}/ — run 'make demo' (or 'medinfer build all') first", file=sys.stderr)
        return 2
    if started["dirty"] is not False:
        print(f"!! the tree has uncommitted changes ({started['changed']} path(s)) or is not a git checkout: this "
              "run can be gated and read, never published (commit first)", file=sys.stderr)
    artifacts = Path(args.artifacts) if args.artifacts else None
    command = _command(args.argv)
    record = run_suite(bundles, batches=args.batch, artifacts=artifacts, seconds=args.seconds, rounds=args.rounds,
                       cold=not args.no_cold, peers=args.peers, command=command,
                       progress=lambda m: print(m, file=sys.stderr), threads=args.threads, started=started)
    folder = runs.write(record, Path(args.out) if args.out else RUNS)
    if not args.no_slice:
        doc = _slice_doc(args, bundles, command, started)
        if doc is not None:
            runs.write_slice(folder, doc)
    print(f"run folder: {folder} (publish a full run with: python -m benchmarks publish --from {folder})")
    path = _history_path(args, record["env"])
    records = history.load(path)
    if record["full"] and history.clean(record):
        history.append(path, record)
        print(f"appended to {path}")
    elif record["full"]:
        print("a full run of uncommitted code: not added to the history (commit, then run again)")
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
    provenance.check_recorded(record.get("provenance"), what=f"the run {args.from_}")
    now = provenance.require_clean(what="bench-publish")  # before the first file is written
    if args.bundles:
        results.write("models", _models_doc(args, record, now))
    written = runs.publish_results(Path(args.from_), results.FOLDER)
    if "slice" not in written and runs.read_slice(Path(args.from_)) is not None:
        print(f"{args.from_}: its one-pass-vs-patches section was timed short; results/slice.json left as it is "
              "(python -m benchmarks slice makes a full one)", file=sys.stderr)
    drawn = runs.plots(Path(args.from_), HERE / "plots", report.history_records())
    (HERE / "REPORT.md").write_text(report.render(record, report.history_records(), drawn))
    readme.rewrite_documents()
    print(f"published {args.from_}: {', '.join(f'results/{n}.json' for n in written)}, plots, REPORT.md, "
          "README numbers")
    return 0


def _models_doc(args: argparse.Namespace, record: dict, now: dict) -> dict:
    """results/models.json from the bundles the run timed: refused when bundles/ no longer holds those bytes."""
    from . import readme

    bundles = _bundles(args)
    doc = readme.models_doc(bundles, _command(args.argv), now)
    timed = record.get("bundles") or {}
    changed = sorted(n for n, d in doc["bundles"].items() if n in timed and timed[n] != d)
    if changed:
        raise provenance.UnpublishableRun(f"{args.bundles}/ no longer holds the bundles the run timed "
                                          f"({', '.join(changed)}): their metrics would sit beside other bundles' "
                                          "timings; run again")
    return doc


def cmd_report(args: argparse.Namespace) -> int:
    from . import readme, runs

    path = HERE / "REPORT.md"
    path.write_text(report.render(report.published(), report.history_records(), runs.committed_plots(HERE / "plots")))
    print(path)
    for doc in readme.rewrite_documents():  # README's numbers follow the same data (safety, concurrency, ...)
        print(doc)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    records = history.load(_history_path(args))
    if not records:
        print("!! NO BASELINE FOR THIS CPU: no history at all", file=sys.stderr)
        return NO_BASELINE if args.require_baseline else 0
    return gate(records[:-1], records[-1], args.threshold, args.window, args.require_baseline)


def cmd_models(args: argparse.Namespace) -> int:
    from . import readme

    started = _begin(args, "python -m benchmarks models")
    bundles = _bundles(args)
    path = _write(args, "models", readme.models_doc(bundles, _command(args.argv), started), started)
    print(f"wrote {path}")
    return 0


def cmd_int8_ops(args: argparse.Namespace) -> int:
    from . import int8_ops

    started = _begin(args, "python -m benchmarks int8-ops")
    entry = int8_ops.measure(Path(args.bundle), args.runs, args.threads, _command(args.argv), started)
    if _folder(args).resolve() == results.FOLDER.resolve():
        provenance.still_publishable(started, what="python -m benchmarks int8-ops")
    print(f"wrote {int8_ops.record(entry, _folder(args))}")
    print("\n".join(int8_ops.render(results.load("int8_ops", _folder(args)))))
    return 0


def cmd_edge(args: argparse.Namespace) -> int:
    """cnn-int8, tails, trees (issue 30): each module measures, renders and names its results file."""
    from . import edge

    started = _begin(args, f"python -m benchmarks {args.command}")
    name, doc, lines = edge.run(args, _command(args.argv), started)
    print("\n".join(lines))
    print(f"wrote {_write(args, name, doc, started)}")
    return 0


def cmd_concurrency(args: argparse.Namespace) -> int:
    from medinfer.tools.fingerprint import environment

    from .concurrency import concurrency, markdown

    started = _begin(args, "python -m benchmarks concurrency")
    bundles = _bundles(args)
    doc = {"command": _command(args.argv), "time": started["started"], "provenance": started,
           "bundles": provenance.bundles_of(bundles), "env": environment(), "interleaved": True}
    doc["rows"] = [concurrency(b, threads=args.threads, seconds=args.seconds, rounds=args.rounds) for b in bundles]
    print(f"wrote {_write(args, 'concurrency', doc, started)}")
    print("\n".join(markdown(doc)))
    return 0


def _slice_doc(args: argparse.Namespace, bundles: list[Path], command: str, started: dict) -> dict | None:
    from .slice import document, slice_speed

    rows, timed = [], []
    for bundle in bundles:
        found = slice_speed(bundle, seconds=args.slice_seconds, rounds=args.slice_rounds,
                            sizes=tuple(args.slice_sizes))
        rows += found
        timed += [bundle] if found else []
    return document(rows, command, args.slice_seconds, args.slice_rounds, started,
                    provenance.bundles_of(timed)) if rows else None


def cmd_slice(args: argparse.Namespace) -> int:
    from .slice import markdown

    started = _begin(args, "python -m benchmarks slice")
    doc = _slice_doc(args, _bundles(args), _command(args.argv), started)
    if doc is None:
        print(f"no bundle in {args.bundles}/ ships a whole-slice variant", file=sys.stderr)
        return 2
    print(f"wrote {_write(args, 'slice', doc, started)}")
    print("\n".join(markdown(doc)))
    return 0


def cmd_safety(args: argparse.Namespace) -> int:
    from medinfer.tools.fingerprint import environment

    from .safety import audit_cost, markdown, soak

    started = _begin(args, "python -m benchmarks safety")
    bundles = _bundles(args)
    doc = {"kind": "medinfer.safety", "command": _command(args.argv), "time": started["started"],
           "provenance": started, "bundles": provenance.bundles_of(bundles), "env": environment(),
           "method": {"seconds_per_model": args.seconds, "rounds": args.rounds, "batch": 1,
                      "timer": "perf_counter_ns", "trimming": "none"}}
    doc["costs"] = [audit_cost(b, seconds=args.seconds, rounds=args.rounds) for b in bundles]
    doc["soaks"] = [soak(b, seconds=args.soak_seconds) for b in bundles] if args.soak_seconds > 0 else []
    print(f"wrote {_write(args, 'safety', doc, started)}")
    print("\n".join(markdown(doc)))
    return 1 if any(s["growth_mb"] > args.max_growth_mb for s in doc["soaks"]) else 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .serve import markdown, run

    out = Path(args.out)
    args.results = str(out.parent)
    started = _begin(args, "python -m benchmarks serve")
    bundles = _bundles(args)
    if not bundles:
        print(f"no bundles in {args.bundles}/ — run 'make demo' (or 'medinfer build all') first", file=sys.stderr)
        return 2
    record = run(bundles, args.servers, args.clients, args.encodings, args.seconds, args.rounds, args.baseline_ref,
                 progress=lambda m: print(m, file=sys.stderr), threads=args.threads, started=started)
    record["command"] = _command(args.argv)
    print("\n".join(markdown(record)))
    print(f"wrote {_write(args, out.stem, record, started)}")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from . import explain

    started = None if args.examples else _begin(args, "python -m benchmarks explain")
    bundles = _bundles(args)
    if not bundles:
        print(f"no bundles in {args.bundles}/ — run 'make demo' (or 'medinfer build all') first", file=sys.stderr)
        return 2
    if args.examples:
        lines = explain.examples_markdown(bundles)
        print("\n".join(lines))
        if args.write_readme:
            explain.rewrite_readme(HERE.parent / "README.md", lines)
            print(f"wrote the examples into {HERE.parent / 'README.md'}", file=sys.stderr)
        return 0
    doc = explain.collect(bundles, args.seconds, args.rounds, _command(args.argv),
                          progress=lambda m: print(m, file=sys.stderr))
    doc = {"kind": "medinfer.explain", "time": started["started"], "provenance": started,  # type: ignore[index]
           "bundles": provenance.bundles_of(bundles), **doc}
    print(f"wrote {_write(args, 'explain', doc, started)} and {explain.plot(doc)}")
    print("\n".join(explain.markdown(doc)))
    return 0


def cmd_domain(args: argparse.Namespace) -> int:
    from . import domain

    started = _begin(args, "python -m benchmarks domain")  # before anything is timed
    bundles = Path(args.bundles)
    latency = domain.measure(bundles, args.seconds, progress=lambda m: print(m, file=sys.stderr))
    doc = domain.collect(bundles, latency, started, _command(args.argv))
    if not doc["models"]:
        print(f"no bundle with a domain guard in {args.bundles}/: run 'make demo' first", file=sys.stderr)
        return 2
    missing = domain.problems(doc)
    if missing:
        print("bundles built before the refused-share evaluation (rebuild them with 'make demo'):\n  "
              + "\n  ".join(missing[:10]), file=sys.stderr)
        return 2
    path = _write(args, "domain", doc, started)
    if path.parent.resolve() == results.FOLDER.resolve():  # the README's table renders the committed file
        readme = Path(args.readme) if args.readme else HERE.parent / "README.md"
        domain.rewrite_readme(readme, domain.render(doc))
        print(f"wrote the table in {readme}", file=sys.stderr)
    print(f"wrote {path} ({len(doc['models'])} models)")
    return 0


def main(argv: list[str] | None = None) -> int:
    from .cli import parser

    args = parser(__doc__).parse_args(argv)
    args.argv = argv
    handlers = {"run": cmd_run, "publish": cmd_publish, "report": cmd_report, "check": cmd_check,
                "models": cmd_models, "int8-ops": cmd_int8_ops, "concurrency": cmd_concurrency,
                "slice": cmd_slice, "safety": cmd_safety, "serve": cmd_serve, "explain": cmd_explain,
                "domain": cmd_domain, "cnn-int8": cmd_edge, "tails": cmd_edge, "trees": cmd_edge}
    try:
        return int(handlers[args.command](args))
    except MedinferError as exc:  # a refusal (a dirty tree, a run that cannot be published): its words, its code
        print(f"python -m benchmarks {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return exit_code(exc)


if __name__ == "__main__":
    raise SystemExit(main())
