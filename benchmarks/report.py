"""Render ``benchmarks/REPORT.md`` from the latest suite run, the history and any extra result files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent


def _f(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _suite_section(rec: dict[str, Any]) -> list[str]:
    env = rec["env"]
    cpu = env["cpu"]
    lines = [
        f"Run {rec['time']} at commit `{env.get('git_commit')}` on {cpu['model']} ({cpu['usable_cores']} usable "
        f"cores; {', '.join(cpu['flags'])}), {env['os']}, Python {env['python']}, numpy {env['numpy']}, "
        f"onnxruntime {env['onnxruntime']}. Interleaved: {rec['rounds']} rounds, {rec['seconds_per_batch']:g} s "
        "per model and batch; every query timed; nothing trimmed.",
        "",
        "| model | batch | candidate | p50 µs | p90 | p99 | p99.9 | max | mean ± std | samples/s | × bare ORT (p50) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in rec["models"]:
        for b in m["batches"]:
            for r in b["rows"]:
                s = r["latency_us"]
                lines.append(
                    f"| {m['model']} | {b['batch']} | {r['candidate']} | {_f(s['p50'])} | {_f(s['p90'])} | "
                    f"{_f(s['p99'])} | {_f(s['p99.9'])} | {_f(s['max'])} | {_f(s['mean'])} ± {_f(s['std'])} | "
                    f"{r['throughput_samples_per_s']:.0f} | {r['ratio_p50_vs_ort']:.3f} |")
    lines += ["", "### Runtime overhead at batch 1 (targets: ≤ 1.15 vs same options, ≤ 1.0 vs default options)", "",
              "| model | predict / bare (same options, p50) | predict / bare (default options, p50) | "
              "same options, mean |", "|---|---|---|---|"]
    for m in rec["models"]:
        o = m.get("overhead") or {}
        lines.append(f"| {m['model']} | {_f(o.get('predict_vs_bare_same_options_p50'), 3)} | "
                     f"{_f(o.get('predict_vs_bare_default_options_p50'), 3)} | "
                     f"{_f(o.get('predict_vs_bare_same_options_mean'), 3)} |")
    lines += ["", "### Cold start (fresh process: interpreter + import medinfer + load with integrity check and "
              "golden self-test + first result)", "",
              "| model | wall s (median of 3) | import s | load s | first predict s | peak RSS MB |",
              "|---|---|---|---|---|---|"]
    for m in rec["models"]:
        variants = m.get("cold_start_variants") or {}
        colds = {"": m.get("cold_start") or {}, **{f" [{k}]": v for k, v in variants.items()}}
        for suffix, c in colds.items():
            lines.append(f"| {m['model']}{suffix} | {_f(c.get('wall_s_median'), 3)} | {_f(c.get('import_s'), 3)} | "
                         f"{_f(c.get('load_s'), 3)} | {_f(c.get('first_predict_s'), 4)} | {_f(c.get('peak_rss_mb'))} |")
    if rec.get("all_loaded"):
        a = rec["all_loaded"]
        lines += ["", f"All {a.get('n')} bundles loaded and run once in one process: peak RSS "
                      f"{_f(a.get('peak_rss_mb'))} MB."]
    return lines


def targets_section(rec: dict[str, Any] | None, targets: dict[str, Any] | None = None,
                    results: dict[str, Any] | None = None) -> list[str]:
    """The project's speed targets (``benchmarks/targets.json``: which models, which bound), checked against this
    run (ratios measured inside it) and the raw result files (``results``: by kind, see :func:`results_by_kind`)."""
    targets = targets if targets is not None else json.loads((HERE / "targets.json").read_text())
    results = results if results is not None else results_by_kind(HERE / "results")
    rows: list[str] = []

    def row(what: str, value: float | None, target: str, ok: bool | None) -> None:
        shown = "–" if value is None else f"{value:.3f}"
        rows.append(f"| {what} | {shown} | {target} | {'met' if ok else ('not met' if ok is not None else '–')} |")

    def check(what: str, value: float | None, bound: float) -> None:
        row(what, value, f"≤ {bound:g}", None if value is None else value <= bound)

    _result_targets(targets, results, row, check)
    if rec is None:
        return ["| target | this run | goal | |", "|---|---|---|---|", *rows]

    by_model = {m["model"]: m for m in rec["models"]}

    def models(key: str) -> list[tuple[str, dict[str, Any]]]:
        names = (targets.get(key) or {}).get("models", [])
        return [(n, by_model[n]) for n in names if n in by_model]

    for kind, label in (("overhead_same_options", "same options"), ("overhead_default_options", "default options")):
        for name, m in models(kind):
            o = m.get("overhead") or {}
            value = o.get(f"predict_vs_bare_{kind.removeprefix('overhead_')}_p50")
            check(f"{name}: Model.predict / bare session.run, {label} (p50, b=1)", value, targets[kind]["max"])
    spec = targets.get("variant_vs_fp32_default") or {}
    for name, m in models("variant_vs_fp32_default"):
        b1 = next((b for b in m["batches"] if b["batch"] == 1), None)
        p50 = {r["candidate"]: r["latency_us"]["p50"] for r in b1["rows"]} if b1 else {}
        variant = spec["variant"]
        ratio = p50[f"medinfer [{variant}]"] / p50["ort (default options)"] \
            if f"medinfer [{variant}]" in p50 and "ort (default options)" in p50 else None
        check(f"{name}: best variant ({variant}) / fp32 on default options (p50, b=1)", ratio, spec["max"])
    for name, m in models("cold_start_s"):
        colds = {"fp32": m.get("cold_start") or {}, **(m.get("cold_start_variants") or {})}
        for label, c in colds.items():
            check(f"{name} [{label}]: cold start s", c.get("wall_s_median"), targets["cold_start_s"]["max"])
            if "cold_start_rss_mb" in targets:
                check(f"{name} [{label}]: cold start peak RSS MB", c.get("peak_rss_mb"),
                      targets["cold_start_rss_mb"]["max"])
    if "all_loaded_rss_mb" in targets:
        n = (rec.get("all_loaded") or {}).get("n", len(by_model))
        check(f"all {n} bundles loaded in one process: peak RSS MB", (rec.get("all_loaded") or {}).get("peak_rss_mb"),
              targets["all_loaded_rss_mb"]["max"])
    return ["| target | this run | goal | |", "|---|---|---|---|", *rows]


def _result_targets(targets: dict[str, Any], results: dict[str, Any], row: Any, check: Any) -> None:
    """Targets measured by the separate result files: one pass vs patch by patch, the audit trail's cost."""
    from .safety import audit_ratio
    from .slice import summary

    goal = targets.get("slice_speedup") or {}
    slice_doc = results.get("medinfer.slice")
    for name in goal.get("models", []):
        for r in (slice_doc or {}).get("rows", []):
            if r["model"] == name and r["size"] == goal.get("size"):
                speedup = summary(r)["speedup"]
                row(f"{name} [{r['one_pass_variant']}]: one pass vs patch by patch, {r['size']}x{r['size']} slice at "
                    f"{r['stride']} px (×, identical decisions)", speedup, f"≥ {goal['min']:g}, 0 flips",
                    speedup >= goal["min"] and r["decision_flips"] == 0)
    goal = targets.get("audit_overhead") or {}
    safety = results.get("medinfer.safety")
    for name in goal.get("models", []):
        cost = next((c for c in (safety or {}).get("costs", []) if c["model"] == name), None)
        check(f"{name}: audited predict / plain predict (p50, b=1)", audit_ratio(cost) if cost else None,
              goal["max"])


def results_by_kind(folder: Path) -> dict[str, Any]:
    """The raw result documents (``kind`` = medinfer.slice, medinfer.safety, medinfer.cold_start) in ``folder``."""
    out: dict[str, Any] = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        data = json.loads(path.read_text())
        if isinstance(data, dict) and isinstance(data.get("kind"), str):
            out[data["kind"]] = data
    return out


def render(latest: dict[str, Any] | None, plots: list[Path], extras: dict[str, Any]) -> str:
    lines = ["# medinfer benchmark report", "",
             "Generated by `python -m benchmarks run` (see `python -m benchmarks --help`); do not edit by hand.",
             "Numbers are SingleStream latencies on a shared, noisy VM: compare the RATIOS measured inside one run.",
             ""]
    lines += ["## Targets", ""] + targets_section(latest) + [""]
    if latest:
        lines += ["## Side by side: native framework, bare onnxruntime, medinfer", ""] + _suite_section(latest)
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p.stem}](plots/{p.name})" for p in plots]
    for title, body in extras.items():
        lines += ["", f"## {title}", ""]
        lines += body if isinstance(body, list) else [str(body)]
    return "\n".join(lines) + "\n"


def extras_from_results(folder: Path) -> dict[str, Any]:
    """Other result files: raw documents (one pass vs patch by patch, audit cost and soak, cold start, serve) rendered
    here, older ones (accelerators, concurrency) as the markdown lines their writer kept."""
    from .safety import markdown as safety_markdown
    from .serve import markdown as serve_markdown
    from .slice import markdown as slice_markdown

    renderers = {"medinfer.slice": slice_markdown, "medinfer.safety": safety_markdown,
                 "medinfer.cold_start": cold_start_markdown, "serve": serve_markdown}
    out: dict[str, Any] = {}
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and data.get("kind") in renderers:
            out[data.get("title") or data["kind"]] = renderers[data["kind"]](data)
        elif isinstance(data, dict) and "title" in data and "markdown" in data:
            out[data["title"]] = data["markdown"]
    return out


def cold_start_markdown(doc: dict[str, Any]) -> list[str]:
    """Every cold-start run of ``results/cold_start.json`` (the suite's table shows their median)."""
    lines = [f"`{doc['command']}` at {doc['time']}: {doc['method']}.", "",
             "| model | variant | run | wall s | import s | load s | first predict s | peak RSS MB |",
             "|---|---|---|---|---|---|---|---|"]
    for model, variants in doc["models"].items():
        for variant, c in variants.items():
            for i, run in enumerate((c or {}).get("raw", [])):
                rss = run.get("peak_rss_bytes")
                lines.append(f"| {model} | {variant} | {i + 1} | {run['wall_s']:.3f} | {run['import_s']:.3f} | "
                             f"{run['load_s']:.3f} | {run['first_predict_s']:.4f} | "
                             f"{(rss / 2**20) if rss else float('nan'):.1f} |")
    if doc.get("all_loaded"):
        lines += ["", f"All {doc['all_loaded'].get('n')} bundles loaded and run once in one process: peak RSS "
                      f"{_f(doc['all_loaded'].get('peak_rss_mb'))} MB."]
    return lines
