"""Render ``benchmarks/REPORT.md`` from committed raw data only: ``results/suite.json`` (the published full run),
the history, ``targets.json`` and the other ``results/*.json``. Every table, ratio and range is computed here;
no results file carries text (``benchmarks.results`` checks that), and ``tests/benchmarks/test_report.py`` keeps
REPORT.md equal to what this module renders from the files in the repo.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from . import history, report_peers, report_sections, results
from .contenders import BATCH1, DEFAULT, SAME
from .report_peers import label_of, threads_of

HERE = Path(__file__).parent
REFERENCE = "medinfer [default]"


def _f(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def settings(s: dict[str, Any]) -> str:
    """A short label of a contender's session settings."""
    if not s:
        return ""
    if s.get("session_options") == "default" or s == {"onnxruntime_defaults": True}:
        return "ORT defaults"
    if "n_jobs" in s:
        return f"n_jobs={s['n_jobs']}"
    if "intra_op_num_threads" in s:
        return (f"{s['intra_op_num_threads']}t{' spin' if s.get('allow_spinning') else ''} "
                f"{s.get('graph_optimization_level', '')}").strip()
    if "threads" in s:
        return f"{s['threads']}t {s.get('runtime', '')} {s.get('version', '')}".strip()
    return ""


def provenance_line(rec: dict[str, Any]) -> str:
    """When the run started and which commit it measured (recorded at its start), or, for a record made before
    issue 24, what it recorded at its end."""
    prov = rec.get("provenance")
    if isinstance(prov, dict):
        state = "a clean tree" if prov.get("dirty") is False else "**uncommitted changes**"
        return f"Run started {prov.get('started')} at commit `{prov.get('commit')}` ({state}, recorded at its start)"
    return (f"Run {rec.get('time')} at commit `{(rec.get('env') or {}).get('git_commit')}` (recorded at the end of "
            "the run: a record made before issue 24)")


def environment_line(rec: dict[str, Any]) -> str:
    env = rec["env"]
    cpu = env["cpu"]
    threads = f"{rec['threads']} intra-op threads for every contender" if rec.get("threads") else \
        "threads as each row says"
    return (f"{provenance_line(rec)} on {cpu['model']} ({cpu['usable_cores']} usable "
            f"cores; {', '.join(cpu['flags'])}), {env['os']}, Python {env['python']}, numpy {env['numpy']}, "
            f"onnxruntime {env['onnxruntime']}. Interleaved: {rec['rounds']} rounds, {rec['seconds_per_batch']:g} s "
            f"per model and batch, {threads}, every contender in the same rounds (peers in their own processes, "
            "one timed block per turn); every query timed; nothing trimmed. Command: `" + rec.get("command", "?")
            + "`.")


LEGACY = ("This run predates issue 14 (it is the newest full record of the history; no run in the new format is "
          "published yet): medinfer was timed without reading `.labels`, scikit-learn ran with `n_jobs=-1`, "
          "*ort (bundle profile)* is the batch-1 profile session at every batch size and fetched only the score, "
          "so the like-for-like columns are empty. `make bench && make bench-publish` replaces it.")


def suite_section(rec: dict[str, Any]) -> list[str]:
    lines = [environment_line(rec), ""] + ([LEGACY, ""] if "command" not in rec else []) + [
             f"medinfer is timed as a user calls it: `predict(x)` plus reading `.labels` (`.scores` for regression). "
             f"*{SAME}*: a bare session with the options medinfer uses at that batch size (its large-batch session's "
             f"from `large_batch_from` on); *{DEFAULT}*: `onnxruntime.SessionOptions()` with only the thread count "
             "set (untouched in a record made before issue 24); both fetch the "
             "same outputs as medinfer (score, evidence and `domain_score`). scikit-learn runs with `n_jobs=1`, as "
             "a device would. *what runs* and *threads*: each row's engine and its intra-op threads, as recorded.",
             "",
             "| model | batch | contender | what runs | threads | settings | p50 µs | p90 | p99 | p99.9 | max | "
             "mean ± std | samples/s | × same options | × default options |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in rec["models"]:
        for b in m["batches"]:
            for r in b["rows"]:
                s = r["latency_us"]
                lines.append(
                    f"| {m['model']} | {b['batch']} | {r['candidate']} | {label_of(r)} | {threads_of(r)} | "
                    f"{settings(r.get('settings') or {})} | "
                    f"{_f(s['p50'])} | {_f(s['p90'])} | {_f(s['p99'])} | {_f(s['p99.9'])} | {_f(s['max'])} | "
                    f"{_f(s['mean'])} ± {_f(s['std'])} | {r['throughput_samples_per_s']:.0f} | "
                    f"{_f(r.get('ratio_p50_vs_same_options'), 3)} | {_f(r.get('ratio_p50_vs_default_options'), 3)} |")
    lines += ["", "### Where medinfer switches sessions (why a batch-1-profile session is slower at large batches)", ""]
    lines += large_batch_lines(rec)
    spec = json.loads((HERE / "targets.json").read_text())
    same, default = spec["overhead_same_options"]["max"], spec["overhead_default_options"]["max"]
    lines += ["", f"### Runtime overhead at batch 1 (targets: ≤ {same:g} vs same options, ≤ {default:g} vs default "
              "options)", "",
              "| model | predict / bare (same options, p50) | predict / bare (default options, p50) | "
              "same options, mean | predict − bare (same options, p50 µs) |", "|---|---|---|---|---|"]
    for m in rec["models"]:
        o = m.get("overhead") or {}
        lines.append(f"| {m['model']} | {_f(o.get('predict_vs_bare_same_options_p50'), 3)} | "
                     f"{_f(o.get('predict_vs_bare_default_options_p50'), 3)} | "
                     f"{_f(o.get('predict_vs_bare_same_options_mean'), 3)} | {_f(overhead_us(m), 1)} |")
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


def rows(rec: dict[str, Any], model: str, batch: int) -> dict[str, dict[str, Any]]:
    """{contender: row} of one model at one batch size."""
    m = next((m for m in rec.get("models", []) if m["model"] == model), None)
    b = next((b for b in (m or {}).get("batches", []) if b["batch"] == batch), None)
    return {r["candidate"]: r for r in (b or {}).get("rows", [])}


def overhead_us(m: dict[str, Any]) -> float | None:
    """medinfer's p50 minus the same-options session's at batch 1, in µs."""
    b1 = next((b for b in m["batches"] if b["batch"] == 1), None)
    by = {r["candidate"]: r["latency_us"]["p50"] for r in (b1 or {}).get("rows", [])}
    return by[REFERENCE] - by[SAME] if REFERENCE in by and SAME in by else None


def large_batch_lines(rec: dict[str, Any]) -> list[str]:
    out = []
    for m in rec["models"]:
        for b in m["batches"]:
            by = {r["candidate"]: r for r in b["rows"]}
            if BATCH1 not in by or SAME not in by or REFERENCE not in by:
                continue
            one, same, me = (by[k]["latency_us"]["p50"] for k in (BATCH1, SAME, REFERENCE))
            lb = b.get("large_batch") or {}
            switched = ", ".join(f"{k} {v}" for k, v in lb.items() if k != "from")
            out.append(f"- **{m['model']}, batch {b['batch']}**: medinfer runs batches of ≥ {lb.get('from')} on its "
                       f"large-batch session ({switched}; batch-1 profile: {settings(by[BATCH1]['settings'])}). "
                       f"The batch-1-profile session takes {one:.1f} µs, a bare session with the large-batch options "
                       f"{same:.1f} µs ({one / same:.2f}×), medinfer {me:.1f} µs ({me / same:.3f}× the same options): "
                       "the gap is the session switch, not medinfer's own path.")
    return out or ["No model switches sessions at the batch sizes of this run."]


def render(rec: dict[str, Any] | None, records: list[dict[str, Any]], plots: list[Path],
           folder: Path = results.FOLDER) -> str:
    """The whole report from a published suite record, the history and the results folder."""
    lines = ["# medinfer benchmark report", "",
             "Rendered by `python -m benchmarks report` from `benchmarks/results/*.json` (raw data + the command that "
             "made them) and `benchmarks/history/`; do not edit by hand. A full run is published on purpose with "
             "`make bench-publish`. Numbers are SingleStream latencies on a shared VM: compare the RATIOS measured "
             "inside one run.", ""]
    targets = json.loads((HERE / "targets.json").read_text())
    lines += ["## Targets", ""] + report_sections.targets(rec, targets, folder) + [""]
    if rec:
        lines += ["## Side by side: native framework, bare onnxruntime, medinfer", ""] + suite_section(rec)
        lines += ["", "## The edge peers: LiteRT and OpenVINO, same run, same held-out set", ""]
        lines += report_peers.section(rec)
        lines += ["", "## int8, like for like", ""] + report_sections.int8(rec, folder)
    else:
        lines += ["No full suite run is published yet (`make bench` then `make bench-publish`)."]
    lines += ["", "## Why the targets not met stop where they do", ""]
    lines += report_sections.target_notes(rec, records, targets, folder)
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p.stem}](plots/{p.name})" for p in plots]
    for title, body in report_sections.extras(folder):
        lines += ["", f"## {title}", "", *body]
    return "\n".join(lines) + "\n"


def published(folder: Path = results.FOLDER) -> dict[str, Any] | None:
    """The published full suite run (``results/suite.json``), else the newest full record of the history."""
    from .readme import suite_source

    return suite_source(folder)


def history_records(root: Path = HERE / "history") -> list[dict[str, Any]]:
    """The history's records of committed code (what REPORT.md's ranges and plot may show)."""
    return [r for r in history.all_records(root) if history.clean(r)]
