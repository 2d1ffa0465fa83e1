"""REPORT.md sections other than the side-by-side tables: targets, int8 like for like, why the targets not met
stop where they do (ranges computed from the history), and the other results files (accelerators, concurrency,
safety, scale, serving), each rendered from its raw data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import history, results
from .contenders import DEFAULT, SAME

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


def targets(rec: dict[str, Any], spec: dict[str, Any]) -> list[str]:
    """The project's speed targets (``targets.json``) checked against this run (ratios measured inside it)."""
    rows = []
    by_model = {m["model"]: m for m in rec["models"]}

    def check(what: str, value: float | None, bound: float) -> None:
        ok = None if value is None else value <= bound
        verdict = "met" if ok else ("not met" if ok is not None else "–")
        rows.append(f"| {what} | {_f(value, 3)} | ≤ {bound:g} | {verdict} |")

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
    if "all_loaded_rss_mb" in spec:
        a = rec.get("all_loaded") or {}
        check(f"all {a.get('n', len(by_model))} bundles loaded in one process: peak RSS MB", a.get("peak_rss_mb"),
              spec["all_loaded_rss_mb"]["max"])
    return ["| target | this run | goal | |", "|---|---|---|---|", *rows]


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


def target_notes(rec: dict[str, Any] | None, records: list[dict[str, Any]], spec: dict[str, Any]) -> list[str]:
    """The explanations, with every figure computed from the published run and the history."""
    env = rec["env"] if rec else (records[-1]["env"] if records else None)
    ranges = history.overhead_ranges(records, env, last=3)
    names = (spec.get("overhead_same_options") or {}).get("models", [])

    def span(model: str, key: str) -> str:
        lo, hi, n = ranges.get(model, {}).get(key, (None, None, 0))
        return "–" if lo is None else (f"{lo:.2f}–{hi:.2f}" if n > 1 else f"{lo:.2f}")

    runs = max((v[2] for m in ranges.values() for v in m.values()), default=0)
    same = ", ".join(f"{n} {span(n, 'predict_vs_bare_same_options_p50')}" for n in names)
    default = ", ".join(f"{n} {span(n, 'predict_vs_bare_default_options_p50')}" for n in names)
    lines = [f"- **Model.predict vs a bare session (≤ 1.15 same options, ≤ 1.0 default options)**: over the last "
             f"{runs} full runs on this CPU (history), same options: {same}; default options: {default}. For the "
             "three scikit-learn graphs a session with default options is only a little slower than the measured "
             "profile (one tree ensemble or two linear ops leave little to tune), while validation cannot be "
             "cheaper than its numpy calls (dtype, shape and range checks, the Prediction object) on a model of a "
             "few microseconds. Skipping validation would meet the ratio and break the contract, so it stays."]
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
    if cnn is not None:
        c = cnn.get("cold_start") or {}
        lines.append(f"- **{cnn['model']} cold start ≤ {spec.get('cold_start_rss_mb', {}).get('max')} MB (fp32)**: "
                     f"{_f(c.get('peak_rss_mb'))} MB. onnxruntime keeps its own parsed copy of the weights plus "
                     "prepacked kernels while medinfer still holds the verified bytes it passed in; loading from the "
                     "file path instead would reopen the window between the sha256 check and the load.")
    return lines


def extras(folder: Path) -> Iterator[tuple[str, list[str]]]:
    """(title, lines) of every other results file, each rendered by the module that writes it."""
    from . import accelerator, concurrency, safety, scale, serve

    renderers = (("accelerator", "Accelerators against the CPU", accelerator.markdown),
                 ("concurrency", "Concurrent clients: direct calls vs micro-batching", concurrency.markdown),
                 ("safety", "Safety costs: audit trail, deadlines, soak", safety.render),
                 ("scale", "Batch scoring at scale: local, Dask, Spark", scale.markdown),
                 ("serve", "Serving side by side: medinfer serve, MLServer, tritonserver", serve.markdown))
    for name, title, render in renderers:
        doc = results.load(name, folder)
        if doc is not None:
            yield title, [*render(doc), "", f"Data: `benchmarks/results/{name}.json`, made by `{_command(doc)}`."]


def _command(doc: dict[str, Any]) -> str:
    if doc.get("command"):
        return str(doc["command"])
    rows = next((v for v in doc.values() if isinstance(v, list) and v and isinstance(v[0], dict)), [])
    return "; ".join(sorted({str(r.get("command")) for r in rows}))
