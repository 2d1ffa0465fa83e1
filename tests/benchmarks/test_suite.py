"""The side-by-side suite's plumbing: regression checker, history, a smoke run with plots and report.
No timing assertions."""

from __future__ import annotations

import copy
from pathlib import Path

from benchmarks import history


def _record(ratio: float, overhead: float) -> dict:
    return {"env": {"git_commit": "abc"}, "time": "t", "models": [{
        "model": "m", "overhead": {"predict_vs_bare_same_options_p50": overhead},
        "batches": [{"batch": 1, "rows": [
            {"candidate": "ort (bundle profile)", "kind": "ort", "ratio_p50_vs_ort": 1.0},
            {"candidate": "medinfer [default]", "kind": "medinfer", "ratio_p50_vs_ort": ratio},
            {"candidate": "sklearn", "kind": "native", "ratio_p50_vs_ort": 900.0},
        ]}]}]}


def test_regression_check_flags_a_worse_ratio() -> None:
    base = _record(1.10, 1.10)
    assert history.check(_record(1.15, 1.12), base, threshold=0.10) == []  # noise within threshold
    problems = history.check(_record(1.40, 1.10), base, threshold=0.10)
    assert len(problems) == 1 and "m|1|medinfer [default]" in problems[0]
    slower_native = copy.deepcopy(base)
    slower_native["models"][0]["batches"][0]["rows"][2]["ratio_p50_vs_ort"] = 5000.0
    assert history.check(slower_native, base, threshold=0.10) == []  # native frameworks are not ours to regress


def test_history_roundtrip_and_baseline(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    first = _record(1.1, 1.1)
    first["baseline"] = True
    history.append(path, first)
    history.append(path, _record(1.0, 1.0))
    history.append(path, _record(1.5, 1.5))
    records = history.load(path)
    assert len(records) == 3
    assert history.baseline_of(records)["baseline"] is True  # the marked one, not simply the previous
    assert history.check(records[-1], history.baseline_of(records), 0.15)


def test_suite_smoke_with_plots_and_report(tiny_bundle_ro: Path, tmp_path: Path) -> None:
    from benchmarks import plots, report
    from benchmarks.suite import BARE, DEFAULT, run_suite

    rec = run_suite([tiny_bundle_ro], batches=[1, 4], artifacts=None, seconds=0.2, rounds=2, cold=False,
                    progress=lambda _: None)
    model = rec["models"][0]
    names = {r["candidate"] for r in model["batches"][0]["rows"]}
    assert {BARE, DEFAULT, "medinfer [default]"} <= names
    bare = next(r for r in model["batches"][0]["rows"] if r["candidate"] == BARE)
    assert bare["ratio_p50_vs_ort"] == 1.0
    assert set(model["overhead"]) >= {"predict_vs_bare_same_options_p50", "predict_vs_bare_default_options_p50"}
    drawn = plots.distributions(rec, tmp_path) + [plots.native_vs_runtime(rec, tmp_path)]
    drawn.append(plots.history([rec, rec], tmp_path))
    assert all(p.stat().st_size > 1000 and p.read_bytes()[:4] == b"\x89PNG" for p in drawn)
    text = report.render(rec, drawn, {"Extra": ["hello"]})
    assert "| tiny_logistic | 1 | medinfer [default] |" in text and "## Extra" in text


def test_slice_benchmark_smoke_raw_rows_and_the_target_row(tmp_path: Path) -> None:
    from benchmarks import report
    from benchmarks.slice import document, markdown, slice_speed, summary

    from ..helpers import tiny_cnn

    bundle = tiny_cnn.build(tmp_path / "tiny_cnn")
    rows = slice_speed(bundle, sizes=(160,), seconds=0.3, rounds=1)
    assert len(rows) == 1
    row = rows[0]
    assert row["one_pass_variant"] == "slice" and row["windows"] == 49 and row["decision_flips"] == 0
    assert row["max_abs_diff"] <= 1e-6 and all(len(v) >= 1 for v in row["samples_ms"].values())
    doc = document(rows, "python -m benchmarks slice --slice-sizes 160", 0.3, 1)
    assert "markdown" not in doc and doc["command"].startswith("python -m benchmarks")
    assert any("| tiny_cnn | 160x160 | 24 px | fp32 | 49 |" in line for line in markdown(doc))
    targets = {"slice_speedup": {"models": ["tiny_cnn"], "size": 160, "min": 1e-9}}
    lines = report.targets_section(None, targets, {"medinfer.slice": doc})
    assert any("tiny_cnn [slice]: one pass vs patch by patch" in line and "| met |" in line for line in lines)
    assert summary(row)["speedup"] > 0


def test_safety_results_are_raw_and_render(tiny_bundle_ro: Path) -> None:
    from benchmarks import report
    from benchmarks.safety import AUDIT, PREDICT, audit_cost, audit_ratio, markdown

    cost = audit_cost(tiny_bundle_ro, seconds=0.5, rounds=2)
    assert {PREDICT, AUDIT, "predict + audit + fsync", "predict + audit + group commit"} <= set(cost["rows"])
    row = cost["rows"][AUDIT]
    assert len(row["round_p50_us"]) == 2 and sum(row["histogram"]) + row["below_edges"] + row["above_edges"] \
        == row["stats_us"]["n"]
    doc = {"kind": "medinfer.safety", "command": "python -m benchmarks safety", "time": "t", "method": {"rounds": 2},
           "costs": [cost], "soaks": []}
    assert any("| tiny_logistic | predict + audit |" in line for line in markdown(doc))
    lines = report.targets_section(None, {"audit_overhead": {"models": ["tiny_logistic"], "max": 1e9}},
                                   {"medinfer.safety": doc})
    assert any(f"{audit_ratio(cost):.3f}" in line and "| met |" in line for line in lines)
