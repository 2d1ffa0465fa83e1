"""REPORT.md sections other than the side-by-side tables: targets, int8 like for like, why the targets not met
stop where they do (ranges computed from the history), and the other results files (accelerators, concurrency,
safety, scale, serving), each rendered from its raw data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import history, results
from .contenders import DEFAULT, SAME
from .schema import error_text

REFERENCE = "medinfer [default]"


def _f(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _p50(rec: dict[str, Any], model: str, batch: int, name: str) -> float | None:
    m = next((m for m in rec.get("models", []) if m["model"] == model), None)
    b = next((b for b in (m or {}).get("batches", []) if b["batch"] == batch), None)
    r = next((r for r in (b or {}).get("rows", []) if r["candidate"] == name), None)
    return r["latency_us"]["p50"] if r else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def targets(rec: dict[str, Any] | None, spec: dict[str, Any], folder: Path = results.FOLDER) -> list[str]:
    """The project's speed targets (``targets.json``) checked against this run (ratios measured inside it) and
    against the results files that measure the others (``slice.json``, ``safety.json``)."""
    rows: list[str] = []
    by_model = {m["model"]: m for m in (rec or {}).get("models", [])}

    def row(what: str, value: float | None, goal: str, ok: bool | None) -> None:
        verdict = "met" if ok else ("not met" if ok is not None else "–")
        rows.append(f"| {what} | {_f(value, 3)} | {goal} | {verdict} |")

    def check(what: str, value: float | None, bound: float) -> None:
        row(what, value, f"≤ {bound:g}", None if value is None else value <= bound)

    def models(key: str) -> list[tuple[str, dict[str, Any]]]:
        return [(n, by_model[n]) for n in (spec.get(key) or {}).get("models", []) if n in by_model]

    for kind, label in (("overhead_same_options", "same options"), ("overhead_default_options", "default options")):
        for name, m in models(kind):
            value = (m.get("overhead") or {}).get(f"predict_vs_bare_{kind.removeprefix('overhead_')}_p50")
            check(f"{name}: predict + labels / bare session.run, {label} (p50, b=1)", value, spec[kind]["max"])
    v = spec.get("variant_vs_fp32") or {}
    for name, _ in models("variant_vs_fp32"):
        ratio = _ratio(_p50(rec, name, 1, f"medinfer [{v['variant']}]"), _p50(rec, name, 1, REFERENCE))
        check(f"{name}: medinfer {v['variant']} / medinfer fp32 (p50, b=1, like for like)", ratio, v["max"])
    for name, m in models("cold_start_s"):
        for label, c in {"fp32": m.get("cold_start") or {}, **(m.get("cold_start_variants") or {})}.items():
            check(f"{name} [{label}]: cold start s", c.get("wall_s_median"), spec["cold_start_s"]["max"])
            if "cold_start_rss_mb" in spec:
                check(f"{name} [{label}]: cold start peak RSS MB", c.get("peak_rss_mb"),
                      spec["cold_start_rss_mb"]["max"])
    goal = spec.get("never_lose_to_defaults") or {}
    run = rec or {}
    for name, m in models("never_lose_to_defaults"):
        for n in sorted(b["batch"] for b in m.get("batches", [])):
            same, default = _p50(run, name, n, SAME), _p50(run, name, n, DEFAULT)
            better = min((p for p in (same, default) if p is not None), default=None)
            check(f"{name}: bare session with medinfer's options / with onnxruntime's defaults (p50, b={n}: the "
                  "shipped profile)", _ratio(same, default), goal["max"])
            check(f"{name}: medinfer fp32 / the better of those two (p50, b={n})",
                  _ratio(_p50(run, name, n, REFERENCE), better), goal["max"])
    if "all_loaded_rss_mb" in spec and rec is not None:
        a = rec.get("all_loaded") or {}
        check(f"all {a.get('n', len(by_model))} bundles loaded in one process: peak RSS MB", a.get("peak_rss_mb"),
              spec["all_loaded_rss_mb"]["max"])
    _result_targets(spec, folder, row, check)
    return ["| target | this run | goal | |", "|---|---|---|---|", *rows]


def _result_targets(spec: dict[str, Any], folder: Path, row: Any, check: Any) -> None:
    """Targets measured by their own results files: one pass vs patch by patch, the audit trail's cost. A target
    whose file (or model) is missing is shown with no value, never dropped."""
    from .safety import audit_ratio
    from .slice import summary

    goal = spec.get("slice_speedup") or {}
    doc = results.load("slice", folder) or {}
    for name in goal.get("models", []):
        found = [r for r in doc.get("rows", []) if r["model"] == name and r["size"] == goal.get("size")]
        for r in found:
            speedup = summary(r)["speedup"]
            row(f"{name} [{r['one_pass_variant']}]: one pass vs patch by patch, {r['size']}x{r['size']} slice at "
                f"{r['stride']} px (speed-up ×, identical decisions)", speedup, f"≥ {goal['min']:g}, 0 flips",
                speedup >= goal["min"] and r["decision_flips"] == 0)
        if not found:
            row(f"{name}: one pass vs patch by patch, {goal.get('size')}x{goal.get('size')} slice (speed-up ×; "
                "not in results/slice.json)", None, f"≥ {goal['min']:g}, 0 flips", None)
    goal = spec.get("edge_peer") or {}
    doc = results.load("cnn_int8", folder) or {}
    for name in goal.get("models", []):
        found = [r for r in peer_ratios(doc, goal) if doc.get("model") == name]
        for r in found:
            check(f"{name}: medinfer's best shipped variant / {goal['peer']}'s best ({r['threads']} thread(s), p50, "
                  f"b=1, each within ROC-AUC {goal['auc_loss']:g} of fp32)", r["ratio"], goal["max"])
        if not found:
            row(f"{name}: medinfer's best shipped variant / {goal.get('peer')}'s best (p50, b=1; not in "
                "results/cnn_int8.json)", None, f"≤ {goal.get('max', 1.0):g}", None)
    goal = spec.get("audit_overhead") or {}
    safety = results.load("safety", folder) or {}
    for name in goal.get("models", []):
        cost = next((c for c in safety.get("costs", []) if c["model"] == name), None)
        check(f"{name}: audited predict / plain predict (p50, b=1)",
              audit_ratio(cost) if cost else None, goal["max"])


def peer_ratios(doc: dict[str, Any], goal: dict[str, Any]) -> list[dict[str, Any]]:
    """Per thread count of ``results/cnn_int8.json``: the fastest candidate medinfer ships (the bundle's fp32 graph,
    ``ort fp32``, or one of its variants, ``medinfer bundle [key]``) and the fastest option of the peer, each only
    among those within ``auc_loss`` of the fp32 graph's ROC-AUC; p50 = the median of the round medians."""
    import numpy as np

    acc = doc.get("accuracy") or {}
    loss = goal.get("auc_loss", 0.005)
    fp32 = (acc.get("ort fp32") or {}).get("value")

    def passes(name: str) -> bool:
        value = (acc.get(name) or {}).get("value")
        return fp32 is not None and value is not None and value >= fp32 - loss

    out = []
    for run in doc.get("runs") or []:
        p50 = {r["candidate"]: float(np.median(r["round_p50_us"])) for r in run["rows"]}
        ours = {n: v for n, v in p50.items() if (n == "ort fp32" or n.startswith("medinfer bundle [")) and passes(n)}
        peer = {n: v for n, v in p50.items() if n.startswith(f"{goal.get('peer', 'LiteRT')} [") and passes(n)}
        if ours and peer:
            a, b = min(ours, key=ours.__getitem__), min(peer, key=peer.__getitem__)
            out.append({"threads": run["threads"], "ours": a, "ours_us": ours[a], "peer": b, "peer_us": peer[b],
                        "ratio": ours[a] / peer[b]})
    return out


def int8(rec: dict[str, Any], folder: Path) -> list[str]:
    lines = ["medinfer's int8 variant against medinfer fp32 (the same path, like for like), against a bare fp32 "
             "session with default options and with medinfer's options at that batch size, same run:", "",
             "| model | batch | int8 p50 µs | fp32 p50 µs | int8 / medinfer fp32 | int8 / ORT default options | "
             "int8 / ORT same options |", "|---|---|---|---|---|---|---|"]
    found = False
    for m in rec["models"]:
        for b in m["batches"]:
            for r in b["rows"]:
                if r["kind"] != "medinfer" or r["candidate"] == REFERENCE:
                    continue
                found = True
                p = r["latency_us"]["p50"]
                fp32 = _p50(rec, m["model"], b["batch"], REFERENCE)
                default = _p50(rec, m["model"], b["batch"], DEFAULT)
                same = _p50(rec, m["model"], b["batch"], SAME)
                lines.append(f"| {m['model']} | {b['batch']} | {p:.1f} | {_f(fp32)} | {_f(_ratio(p, fp32), 3)} | "
                             f"{_f(_ratio(p, default), 3)} | {_f(_ratio(p, same), 3)} |")
    if not found:
        lines = ["No bundle in this run ships an int8 variant."]
    from .int8_ops import render

    return lines + ["", *render(results.load("int8_ops", folder))]


def target_notes(rec: dict[str, Any] | None, records: list[dict[str, Any]], spec: dict[str, Any],
                 folder: Path = results.FOLDER) -> list[str]:
    """The explanations, with every figure computed from the published run, the history and the results files."""
    env = rec["env"] if rec else (records[-1]["env"] if records else None)
    ranges = history.overhead_ranges(records, env, last=3)
    names = (spec.get("overhead_same_options") or {}).get("models", [])

    def span(model: str, key: str) -> str:
        lo, hi, n = ranges.get(model, {}).get(key, (None, None, 0))
        return "–" if lo is None else (f"{lo:.2f}–{hi:.2f}" if n > 1 else f"{lo:.2f}")

    runs = max((v[2] for m in ranges.values() for v in m.values()), default=0)
    same = ", ".join(f"{n} {span(n, 'predict_vs_bare_same_options_p50')}" for n in names)
    default = ", ".join(f"{n} {span(n, 'predict_vs_bare_default_options_p50')}" for n in names)
    bound = (spec.get("overhead_same_options") or {}).get("max")
    bound_default = (spec.get("overhead_default_options") or {}).get("max")
    lines = [f"- **Model.predict vs a bare session (≤ {bound:g} same options, ≤ {bound_default:g} default options)**: "
             f"over the last {runs} full runs on this CPU (history), same options: {same}; default options: "
             f"{default}.{_overhead_us(rec, names)} For the three scikit-learn graphs a session with default options "
             "is only a little slower than the measured profile (one tree ensemble or two linear ops leave little to "
             "tune), while validation cannot be cheaper than its numpy calls (dtype, shape and range checks, the "
             "Prediction object) on a model of a few microseconds: the absolute gap above is what a call's checks "
             "cost. Skipping validation would meet the ratio and break the contract, so it stays; what would close "
             "it is moving the checks into the graph or into compiled code."]
    v = spec.get("variant_vs_fp32") or {}
    for name in v.get("models", []):
        if rec is None:
            break
        b1 = _ratio(_p50(rec, name, 1, f"medinfer [{v['variant']}]"), _p50(rec, name, 1, REFERENCE))
        d1 = _ratio(_p50(rec, name, 1, f"medinfer [{v['variant']}]"), _p50(rec, name, 1, DEFAULT))
        lines.append(f"- **{name} {v['variant']} ≤ {v['max']:g}× fp32**: {_f(b1, 3)}× medinfer fp32 and "
                     f"{_f(d1, 3)}× a default-options fp32 session at batch 1 in the published run (all batch sizes "
                     "in 'int8, like for like'). What is left is the quantised convolutions and the dense layer; "
                     "the per-operator split and its comparison across CPU classes are in that section.")
    cold_models = (spec.get("cold_start_s") or {}).get("models", [])
    cnn = next((m for m in (rec or {}).get("models", []) if m["model"] in cold_models), None)
    bound = (spec.get("cold_start_rss_mb") or {}).get("max")
    peak = ((cnn or {}).get("cold_start") or {}).get("peak_rss_mb")
    if cnn is not None and bound is not None and (peak is None or peak > bound):
        lines.append(f"- **{cnn['model']} cold start ≤ {bound:g} MB (fp32)**: {_f(peak)} MB in the published run. "
                     "Every onnxruntime session holds its own copy of the weights: since issue 16 medinfer hashes the "
                     "graph while copying it into a sealed in-memory file that onnxruntime reads (closed once the "
                     "session exists) and gives a graph over 8 MB no second large-batch session, so one copy "
                     "remains; a run made before that carries two (`make bench && make bench-publish` re-measures).")
    lines += _peer_note(spec, folder)
    lines += _audit_note(spec, folder)
    return lines


def _overhead_us(rec: dict[str, Any] | None, names: list[str]) -> str:
    """' In the published run, predict − bare session.run (same options, p50): a µs, …' (empty without a run)."""
    from .report import overhead_us

    by_model = {m["model"]: m for m in (rec or {}).get("models", [])}
    parts = [f"{n} {us:+.1f} µs" for n in names if n in by_model and (us := overhead_us(by_model[n])) is not None]
    return f" In the published run, predict − bare session.run (same options, p50): {', '.join(parts)}." if parts \
        else ""


def _peer_note(spec: dict[str, Any], folder: Path) -> list[str]:
    """Why medinfer's best shipped CNN variant stays behind the peer where it does, from results/cnn_int8.json and
    the per-operator split of results/int8_ops.json."""
    goal = spec.get("edge_peer") or {}
    doc = results.load("cnn_int8", folder) or {}
    missed = [r for r in peer_ratios(doc, goal) if r["ratio"] > goal.get("max", 1.0)]
    if not missed:
        return []
    runs = "; ".join(f"{r['threads']} thread(s): {r['ours']} {r['ours_us']:.0f} µs vs {r['peer']} "
                     f"{r['peer_us']:.0f} µs ({r['ratio']:.2f}×)" for r in missed)
    ops = results.load("int8_ops", folder) or {}
    top = _top_ops(ops)
    return [f"- **{doc.get('model')}: medinfer's best shipped variant ≤ {goal.get('max', 1.0):g}× {goal.get('peer')}'s "
            f"best**: {runs} (`results/cnn_int8.json`, every onnxruntime option in one interleaved run with the "
            f"ROC-AUC of each). {top}What would close it is a faster int8 convolution kernel in onnxruntime for this "
            "CPU class (or an execution provider that has one), not a graph rewrite: every rewrite onnxruntime "
            "accepts is among the candidates measured."]


def _top_ops(doc: dict[str, Any]) -> str:
    """'Op by op, the int8 graph's time goes to A (x µs, y %), B …; ' from the newest run of results/int8_ops.json
    (its fastest non-fp32 variant), or ''."""
    runs = doc.get("runs") or []
    variants = runs[-1].get("variants") or {} if runs else {}
    quantized = {k: v for k, v in variants.items() if v.get("precision") != "fp32" and v.get("ops_us")}
    if not quantized:
        return ""
    key = min(quantized, key=lambda k: quantized[k]["total_us"])
    total = quantized[key]["total_us"] or 1.0
    ops = sorted(quantized[key]["ops_us"].items(), key=lambda t: -t[1])[:3]
    top = ", ".join(f"{op} {us:.0f} µs ({us / total:.0%})" for op, us in ops)
    return (f"Op by op (`results/int8_ops.json`, onnxruntime's profiler, the {key} variant: {total:.0f} µs per run), "
            f"the time goes to {top}. ")


AUDIT_FLOOR = ("What a record must do per call to keep SECURITY.md's promises is fixed: one exclusive flock pair, one "
               "lseek and one write on the O_APPEND descriptor before the result is returned (crash-safe, "
               "process-safe), a sha256 of the input and one of the record (the chain); the rest is Python building "
               "the record and its output summary. Against a predict of a few microseconds that stays above the "
               "bound; reaching it would take dropping the per-append lock (two processes on one log) or writing "
               "after the result is returned (the crash guarantee), neither of which is offered.")


def _audit_note(spec: dict[str, Any], folder: Path) -> list[str]:
    from .safety import audit_added_us, audit_ratio

    goal = spec.get("audit_overhead") or {}
    doc = results.load("safety", folder) or {}
    costs = {c["model"]: c for c in doc.get("costs", [])}
    old = "" if "method" in doc else ("; measured before issue 16's audit append, `python -m benchmarks safety` "
                                      "re-measures")
    out = []
    for name in goal.get("models", []):
        if name not in costs or audit_ratio(costs[name]) <= goal["max"]:
            continue
        out.append(f"- **{name}: audited predict ≤ {goal['max']:g}× plain predict (b=1)**: "
                   f"{audit_ratio(costs[name]):.2f}× ({audit_added_us(costs[name]):+.1f} µs per record, "
                   f"`results/safety.json`{old}). " + AUDIT_FLOOR)
    return out


def extras(folder: Path) -> Iterator[tuple[str, list[str]]]:
    """(title, lines) of every other results file, each rendered by the module that writes it."""
    from . import accelerator, cnn_int8, concurrency, safety, scale, serve, tails, trees
    from .slice import markdown as slice_markdown

    renderers = (("accelerator", "Accelerators against the CPU", accelerator.markdown),
                 ("concurrency", "Concurrent clients: direct calls vs micro-batching", concurrency.markdown),
                 ("slice", "A whole CT slice: one pass vs patch by patch", slice_markdown),
                 ("cold_start", "Cold start, every run", cold_start_markdown),
                 ("safety", "Safety costs: audit trail, deadlines, soak", safety.markdown),
                 ("scale", "Batch scoring at scale: local, Dask, Spark", scale.markdown),
                 ("serve", "Serving side by side: medinfer serve, MLServer, tritonserver", serve.markdown),
                 ("cnn_int8", "The CNN's int8 options against LiteRT and OpenVINO, with the AUC of each",
                  cnn_int8.render),
                 ("tails", "Tails: p99 and p99.9 per thread and spinning setting", tails.render),
                 ("trees", "RandomForest: onnxruntime vs a compiled tree ensemble", trees.render))
    for name, title, render in renderers:
        doc = results.load(name, folder)
        if doc is not None:
            yield title, [*render(doc), "", f"Data: `benchmarks/results/{name}.json`, made by `{_command(doc)}`."]


def _command(doc: dict[str, Any]) -> str:
    if doc.get("command"):
        return str(doc["command"])
    rows = next((v for v in doc.values() if isinstance(v, list) and v and isinstance(v[0], dict)), [])
    return "; ".join(sorted({str(r.get("command")) for r in rows}))


def cold_start_markdown(doc: dict[str, Any]) -> list[str]:
    """Every cold-start run of ``results/cold_start.json`` (the suite's table shows their median)."""
    from .provenance import stated

    lines = [f"Measured {stated(doc)}: each a fresh process (interpreter + import medinfer + load with integrity check "
             "and golden self-test + first result); peak RSS = the process's VmHWM.", "",
             "| model | variant | run | wall s | import s | load s | first predict s | peak RSS MB |",
             "|---|---|---|---|---|---|---|---|"]
    for model, variants in doc["models"].items():
        for variant, c in variants.items():
            if (c or {}).get("error"):
                lines.append(f"| {model} | {variant} | – | failed: {error_text(c['error'])} | | | | |")
            for i, run in enumerate((c or {}).get("raw", [])):
                rss = run.get("peak_rss_bytes")
                lines.append(f"| {model} | {variant} | {i + 1} | {run['wall_s']:.3f} | {run['import_s']:.3f} | "
                             f"{run['load_s']:.3f} | {run['first_predict_s']:.4f} | "
                             f"{_f(rss / 2**20 if rss else None)} |")
    a = doc.get("all_loaded") or {}
    if a.get("peak_rss_mb") is not None:
        lines += ["", f"All {a.get('n')} bundles loaded and run once in one process: peak RSS "
                      f"{_f(a['peak_rss_mb'])} MB."]
    return lines
