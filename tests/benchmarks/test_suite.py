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
