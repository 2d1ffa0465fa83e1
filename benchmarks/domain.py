"""The applicability-domain results of the built bundles: raw data in ``results/domain.json``, the README table.

    python -m benchmarks domain [--bundles bundles] [--seconds 6] [--results DIR]
    (python -m benchmarks.domain ...: the same command)

Reads each bundle's ``manifest.json`` (its ``domain`` section was measured at build time on held-out in-domain
data and the spec's shifted sets: the share of each set REFUSED at the shipped threshold against its kind's goal,
whether the set's family was used to design the guard or held out, whether it is a synthetic corruption), times the
guard's cost (bare onnxruntime: the bundle's graph against the same graph with the guard's nodes removed, interleaved
rounds at batch 1 and at batch 64, each with the session ``medinfer.load`` would run that batch on, each fetching
all its outputs), and writes ``benchmarks/results/domain.json`` through :func:`benchmarks.results.write` (the
numbers, the raw medians, the command, the run's provenance captured before anything is timed and the sha256 of
every timed bundle; names and codes only: the shifts' descriptions and the calibration's words stay in the manifests
and model cards), then rewrites the README table between its markers from that file.
``tests/docs/test_domain_table.py`` keeps the README equal to the file, and the file equal to ``bundles/`` when the
same bundles are present.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "domain.json"
BEGIN, END = "<!-- domain-table:begin -->", "<!-- domain-table:end -->"
COMMAND = "python -m benchmarks domain --bundles bundles"
LATENCY_GOAL = 0.10  # the guard may add at most 10 % to a prediction, at batch 1 and at batch 64 (issues 15, 26)
BATCHES = (1, 64)
# What domain.json keeps of each shifted set (numbers, names and codes; its description stays in the manifest)
SHIFT_FIELDS = ("kind", "family", "role", "synthetic", "n", "auroc", "refused", "source")


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


def guard_latency(bundle: Path, batch: int = 1, seconds: float = 6.0, rounds: int = 12) -> dict[str, Any]:
    """Median latency of the bundle's graph with and without the guard at ``batch`` (interleaved rounds, the session
    ``medinfer.load`` runs that batch size on); ``added`` is the median over rounds of each round's ratio."""
    import medinfer
    import numpy as np
    import onnx
    from medinfer.session import create_session, session_for_batch
    from medinfer.tools.bench import batch_input, interleaved_rounds

    model = medinfer.load(bundle, self_test=False)
    onx = onnx.load(str(bundle / "model.onnx"))
    providers = [("CPUExecutionProvider", {})]
    profile = session_for_batch(model.manifest.profile, batch).profile
    with_guard = create_session(onx.SerializeToString(), profile, providers)
    plain = create_session(without_guard(onx).SerializeToString(), profile, providers)
    x = batch_input(model, batch)
    feed = x if isinstance(x, dict) else {model.manifest.inputs[0].name: x}
    feed = {k: np.asarray(v) for k, v in feed.items()}
    blocks = interleaved_rounds({"with": lambda: with_guard.run(None, feed),
                                 "without": lambda: plain.run(None, feed)}, seconds=seconds, rounds=rounds)
    med = {k: float(np.median(np.concatenate(v))) / 1e3 for k, v in blocks.items()}
    ratio = float(np.median([np.median(w) / np.median(o) for w, o in zip(blocks["with"], blocks["without"])]))
    return {"median_us_with_guard": round(med["with"], 2), "median_us_without_guard": round(med["without"], 2),
            "added": round(ratio - 1.0, 4), "batch": batch, "seconds": seconds, "rounds": rounds,
            "guard_nodes": len(onx.graph.node) - len(without_guard(onx).graph.node),
            "met": bool(ratio - 1.0 <= LATENCY_GOAL),
            "profile": {"intra_op_num_threads": profile.intra_op_num_threads,
                        "inter_op_num_threads": profile.inter_op_num_threads,
                        "allow_spinning": profile.allow_spinning,
                        "graph_optimization_level": profile.graph_optimization_level}}


def collect(bundles: Path, latency: dict[str, Any] | None = None, started: dict[str, Any] | None = None,
            command: str = COMMAND) -> dict[str, Any]:
    """domain.json from the bundles' manifests (numbers, names and codes: the shifts' descriptions and the
    calibration's words stay in the manifests and model cards) with the run's provenance (``started``, captured
    before anything was timed; now when None) and the bundles' sha256."""
    from medinfer.train.domain_eval import GOALS

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
            "calibration": {k: v for k, v in (d.get("calibration") or {}).items() if k not in ("data", "rule")},
            "acceptance": ev.get("acceptance"), "n_in_domain": ev.get("n"),
            "acceptance_goal_met": ev.get("acceptance_goal_met"),
            "shifts": {name: {k: sh.get(k) for k in SHIFT_FIELDS} for name, sh in (ev.get("shifts") or {}).items()},
            "goals": ev.get("goals", {}),
            "design": ev.get("design", []), "evaluation": ev.get("evaluation", []),
        }
        if latency is not None and m["name"] in latency:
            models[m["name"]]["latency"] = latency[m["name"]]
    timed = [m.parent for m in sorted(bundles.glob("*/manifest.json"))
             if json.loads(m.read_text()).get("name") in models]
    return {"command": command, "source": "manifest.domain", "provenance": started or provenance.capture(),
            "bundles": provenance.bundles_of(timed),
            "goals": {"refused": GOALS, "latency_added": LATENCY_GOAL, "latency_batches": list(BATCHES)},
            "models": models}


def problems(results: dict[str, Any]) -> list[str]:
    """What keeps ``results`` from being a complete domain.json (empty: complete): per model the held-out acceptance
    and its goal, every shifted set's role (design or evaluation, the lists agreeing), synthetic flag, refused share
    and goal, and the guard's latency at each of :data:`BATCHES`."""
    out: list[str] = []
    for name, m in results.get("models", {}).items():
        if not isinstance(m.get("acceptance"), float) or not isinstance(m.get("acceptance_goal_met"), bool):
            out.append(f"{name}: no held-out acceptance with its goal")
        roles = {"design": set(m.get("design", [])), "evaluation": set(m.get("evaluation", []))}
        if roles["design"] & roles["evaluation"] or roles["design"] | roles["evaluation"] != set(m["shifts"]):
            out.append(f"{name}: the design and evaluation lists do not split the shifted sets")
        if not roles["evaluation"]:
            out.append(f"{name}: no held-out (evaluation) shift family")
        for shift, sh in m["shifts"].items():
            goal = m.get("goals", {}).get(shift, {})
            if sh.get("role") not in roles or shift not in roles[sh["role"]]:
                out.append(f"{name}/{shift}: role {sh.get('role')!r} is not design or evaluation, or disagrees")
            if not isinstance(sh.get("synthetic"), bool) or not sh.get("family"):
                out.append(f"{name}/{shift}: no synthetic flag or family")
            if not isinstance(sh.get("refused"), float) or not 0.0 <= sh["refused"] <= 1.0:
                out.append(f"{name}/{shift}: no refused share")
            if not isinstance(goal.get("refused_goal"), float) or not isinstance(goal.get("met"), bool):
                out.append(f"{name}/{shift}: no refused goal and verdict")
        lat = m.get("latency") or {}
        for batch in BATCHES:
            if not isinstance((lat.get(str(batch)) or {}).get("added"), float):
                out.append(f"{name}: no guard latency at batch {batch}")
    return out


def _latency(lat: dict[str, Any] | None) -> str:
    if not lat:
        return "—"
    return (f"{lat['added']:+.1%} ({lat['median_us_without_guard']:.0f} → {lat['median_us_with_guard']:.0f} µs)"
            + ("" if lat["added"] <= LATENCY_GOAL else f", **over the {LATENCY_GOAL:.0%} goal**"))


def render(results: dict[str, Any]) -> str:
    """The README table: one row per model and shifted set (refused share at the shipped threshold first)."""
    lines = ["| model | in-domain held-out accepted | guard's added latency, batch 1 / batch 64 | shifted data | role "
             "| kind | refused at the threshold | AUROC | goal |", "|---|---|---|---|---|---|---|---|---|"]
    for name, m in sorted(results["models"].items()):
        accept = "—" if m["acceptance"] is None else f"{m['acceptance']:.1%} (goal {m['coverage']:.0%})" + (
            "" if m["acceptance"] >= m["coverage"] else ", **below the goal**")
        lat = m.get("latency") or {}
        added = f"{_latency(lat.get('1'))} / {_latency(lat.get('64'))}" if lat else "—"
        for i, (shift, s) in enumerate(m["shifts"].items()):
            goal = m["goals"].get(shift, {})
            want = f"≥ {goal.get('refused_goal', 0):.0%} refused" + (
                f", AUROC ≥ {goal['auroc_goal']:g}" if goal.get("auroc_goal") is not None else "")
            met = "met" if goal.get("met") else "**not met**"
            label = f"{shift} (synthetic)" if s.get("synthetic") else shift
            lines.append(f"| {name if i == 0 else ''} | {accept if i == 0 else ''} | {added if i == 0 else ''} | "
                         f"{label} | {s.get('role', '')} | {s['kind']} | {s['refused']:.0%} | {s['auroc']:.3f} | "
                         f"{want} {met} |")
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


def measure(bundles: Path, seconds: float, progress: Any = None) -> dict[str, Any]:
    """The guard's latency at each of :data:`BATCHES` for every bundle in ``bundles`` with a domain guard."""
    latency: dict[str, Any] = {}
    for manifest in sorted(bundles.glob("*/manifest.json")):
        if json.loads(manifest.read_text()).get("domain"):
            if progress is not None:
                progress(f"timing the guard of {manifest.parent.name} at batch {', '.join(map(str, BATCHES))} ...")
            latency[manifest.parent.name] = {str(b): guard_latency(manifest.parent, b, seconds) for b in BATCHES}
    return latency


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.domain ARGS`` is ``python -m benchmarks domain ARGS``."""
    from .__main__ import main as benchmarks_main

    return benchmarks_main(["domain", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
