"""The applicability-domain results of the built bundles: raw data in ``results/domain.json``, the README table.

    python -m benchmarks.domain [--bundles bundles] [--readme README.md] [--seconds 6]

Reads each bundle's ``manifest.json`` (its ``domain`` section was measured at build time on held-out in-domain
data and the spec's shifted sets), times the guard's cost (the bundle's graph against the same graph with the
guard's nodes removed, one interleaved run at batch 1, same session profile, each fetching all its outputs),
writes ``benchmarks/results/domain.json`` (the numbers, the raw medians, each bundle's ``model.onnx`` sha256
and the command) and rewrites the README table between its markers from that file.
``tests/docs/test_domain_table.py`` keeps the README equal to the file, and the file equal to ``bundles/`` when the
same bundles are present.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "domain.json"
BEGIN, END = "<!-- domain-table:begin -->", "<!-- domain-table:end -->"
COMMAND = "make demo && python -m benchmarks.domain --bundles bundles"
LATENCY_GOAL = 0.10  # the guard may add at most 10 % to a batch-1 prediction (issue 15)
def without_guard(onx: Any) -> Any:
    """A copy of the graph without the guard: only the nodes and constants the other outputs need (the guard's
    own nodes and anything computed only for it, e.g. the notes model's out-of-vocabulary share)."""
    import copy

    out = copy.deepcopy(onx)
    keep_outputs = [o for o in out.graph.output if o.name != "domain_score"]
    producer = {name: n for n in out.graph.node for name in n.output}
    needed: set[str] = set()
    stack = [o.name for o in keep_outputs]
    while stack:
        name = stack.pop()
        if name not in needed:
            needed.add(name)
            if name in producer:
                stack.extend(i for i in producer[name].input if i)
    nodes = [n for n in out.graph.node if any(o in needed for o in n.output)]
    inits = [i for i in out.graph.initializer if i.name in needed]
    for field, items in ((out.graph.node, nodes), (out.graph.initializer, inits), (out.graph.output, keep_outputs)):
        del field[:]
        field.extend(items)
    return out


def guard_latency(bundle: Path, seconds: float = 6.0, rounds: int = 12) -> dict[str, Any]:
    """Median batch-1 latency of the bundle's graph with and without the guard (one interleaved run)."""
    import medinfer
    import numpy as np
    import onnx
    from medinfer.session import create_session
    from medinfer.tools.bench import batch_input, interleaved

    model = medinfer.load(bundle, self_test=False)
    onx = onnx.load(str(bundle / "model.onnx"))
    providers = [("CPUExecutionProvider", {})]
    profile = model.manifest.profile  # the bundle's measured batch-1 profile, for both graphs
    with_guard = create_session(onx.SerializeToString(), profile, providers)
    plain = create_session(without_guard(onx).SerializeToString(), profile, providers)
    x = batch_input(model, 1)
    feed = x if isinstance(x, dict) else {model.manifest.inputs[0].name: x}
    feed = {k: np.asarray(v) for k, v in feed.items()}
    times = interleaved({"with": lambda: with_guard.run(None, feed), "without": lambda: plain.run(None, feed)},
                        seconds=seconds, rounds=rounds)
    med = {k: float(np.median(v)) / 1e3 for k, v in times.items()}
    return {"median_us_with_guard": round(med["with"], 2), "median_us_without_guard": round(med["without"], 2),
            "added": round(med["with"] / med["without"] - 1.0, 4), "batch": 1, "seconds": seconds, "rounds": rounds,
            "profile": {"intra_op_num_threads": profile.intra_op_num_threads,
                        "inter_op_num_threads": profile.inter_op_num_threads,
                        "allow_spinning": profile.allow_spinning,
                        "graph_optimization_level": profile.graph_optimization_level}}


def collect(bundles: Path, latency: dict[str, Any] | None = None,
            started: dict[str, Any] | None = None) -> dict[str, Any]:
    """domain.json from the bundles' manifests (numbers, names and codes: the shifts' descriptions and the
    calibration's words stay in the manifests and model cards) with the run's provenance and the bundles' sha256."""
    from . import provenance

    models: dict[str, Any] = {}
    for manifest in sorted(bundles.glob("*/manifest.json")):
        m = json.loads(manifest.read_text())
        d = m.get("domain")
        if not d:
            continue
        ev = d.get("evaluation", {})
        models[m["name"]] = {
            "model_sha256": m["files"]["model.onnx"]["sha256"],
            "synthetic_data": bool(m.get("data", {}).get("synthetic")),
            "threshold": d["threshold"], "coverage": d["coverage"],  # the method's words stay in the manifest
            "calibration": {k: v for k, v in (d.get("calibration") or {}).items() if k != "data"},
            "acceptance": ev.get("acceptance"), "n_in_domain": ev.get("n"),
            "shifts": {name: {k: s.get(k) for k in ("kind", "n", "auroc", "rejected", "source")}
                       for name, s in (ev.get("shifts") or {}).items()},
            "goals": ev.get("goals", {}),
        }
        if latency is not None and m["name"] in latency:
            models[m["name"]]["latency"] = latency[m["name"]]
    timed = [m.parent for m in sorted(bundles.glob("*/manifest.json"))
             if json.loads(m.read_text()).get("name") in models]
    return {"command": COMMAND, "source": "manifest.domain", "provenance": started or provenance.capture(),
            "bundles": provenance.bundles_of(timed), "models": models}


def render(results: dict[str, Any]) -> str:
    """The README table: one row per model and shifted set."""
    lines = ["| model | in-domain held-out accepted | guard's added latency (batch 1) | shifted data | kind | AUROC "
             "| flagged | goal |", "|---|---|---|---|---|---|---|---|"]
    for name, m in sorted(results["models"].items()):
        accept = "—" if m["acceptance"] is None else f"{m['acceptance']:.1%} (goal {m['coverage']:.0%})" + (
            "" if round(m["acceptance"], 3) >= m["coverage"] else ", **below the goal**")
        lat = m.get("latency")
        added = (f"{lat['added']:+.1%} ({lat['median_us_without_guard']:.0f} → {lat['median_us_with_guard']:.0f} µs)"
                 + ("" if lat["added"] <= LATENCY_GOAL else f", **over the {LATENCY_GOAL:.0%} goal**") if lat else "—")
        for i, (shift, s) in enumerate(m["shifts"].items()):
            goal = m["goals"].get(shift, {})
            met = "met" if goal.get("met") else "**not met**"
            lines.append(f"| {name if i == 0 else ''} | {accept if i == 0 else ''} | {added if i == 0 else ''} | "
                         f"{shift} | {s['kind']} | {s['auroc']:.3f} | {s['rejected']:.0%} | "
                         f"≥ {goal.get('goal', '')} {met} |")
    return "\n".join(lines)


def rewrite_readme(readme: Path, table: str) -> bool:
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{readme} has no {BEGIN} ... {END} block to fill")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{BEGIN}\n{table}\n{END}{tail}"
    changed = new != text
    readme.write_text(new)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.domain", description=__doc__.splitlines()[0])
    parser.add_argument("--bundles", default="bundles", help="folder of built bundles (default: bundles)")
    parser.add_argument("--readme", default=str(HERE.parent / "README.md"), help="README to update")
    parser.add_argument("--seconds", type=float, default=6.0,
                        help="timing per bundle, with and without the guard interleaved (default: 6)")
    args = parser.parse_args(argv)
    from . import provenance

    try:  # before anything is timed: results/domain.json comes only from a clean, committed tree
        started = provenance.require_clean(what="python -m benchmarks.domain")
    except provenance.UnpublishableRun as exc:
        print(f"python -m benchmarks.domain: {exc}", file=sys.stderr)
        return 2
    bundles = Path(args.bundles)
    latency = {}
    for manifest in sorted(bundles.glob("*/manifest.json")):
        if json.loads(manifest.read_text()).get("domain"):
            print(f"timing the guard of {manifest.parent.name} ...", file=sys.stderr)
            latency[manifest.parent.name] = guard_latency(manifest.parent, args.seconds)
    results = collect(bundles, latency, started)
    if not results["models"]:
        print(f"no bundle with a domain guard in {args.bundles}/: run 'make demo' first", file=sys.stderr)
        return 2
    from .results import problems

    try:
        provenance.still_publishable(started, what="python -m benchmarks.domain")
    except provenance.UnpublishableRun as exc:
        print(f"python -m benchmarks.domain: {exc}", file=sys.stderr)
        return 2
    found = problems(results, "domain")
    if found:
        raise ValueError(f"results/domain.json would not be raw data: {'; '.join(found[:5])}")
    RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    rewrite_readme(Path(args.readme), render(results))
    print(f"wrote {RESULTS} and the table in {args.readme} ({len(results['models'])} models)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
