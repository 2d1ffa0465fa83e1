"""The side-by-side suite's plumbing on a tiny bundle: like-for-like contenders, the rolling-median gate, run folders
that never touch the committed report. No timing assertions."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from benchmarks import history


def _record(ratio: float, overhead: float, *, cpu: str = "AMD EPYC", full: bool = True, t: str = "t") -> dict:
    return {"env": {"git_commit": "abc", "cpu": {"model": cpu, "flags": ["avx2"], "usable_cores": 2}}, "time": t,
            "full": full, "models": [{
                "model": "m", "overhead": {"predict_vs_bare_same_options_p50": overhead},
                "batches": [{"batch": 1, "rows": [
                    {"candidate": "ort (same options)", "kind": "ort", "ratio_p50_vs_same_options": 1.0},
                    {"candidate": "medinfer [default]", "kind": "medinfer", "ratio_p50_vs_same_options": ratio},
                    {"candidate": "sklearn", "kind": "native", "ratio_p50_vs_same_options": 900.0},
                ]}]}]}


def test_gate_compares_with_the_median_of_the_last_runs_on_the_same_cpu() -> None:
    earlier = [_record(r, r, t=f"t{i}") for i, r in enumerate([1.50, 1.00, 1.02, 1.04, 0.98, 1.01])]
    earlier.append(_record(0.50, 0.50, cpu="Intel Xeon", t="x"))  # another CPU: never part of the baseline
    earlier.append(_record(0.50, 0.50, full=False, t="short"))  # a short run: never part of the baseline
    new = _record(1.10, 1.01, t="new")
    base, used = history.baseline(earlier, new, window=5)
    assert len(used) == 5 and base["m|1|medinfer [default]|vs_same_options"] == pytest.approx(1.01)  # 1.50 is 6th back
    assert history.check(new, base, threshold=0.15) == []  # +8 % over the median: noise
    worse = history.check(_record(1.30, 1.0), base, threshold=0.15)
    assert len(worse) == 1 and "m|1|medinfer [default]|vs_same_options" in worse[0]
    slower_native = copy.deepcopy(new)
    slower_native["models"][0]["batches"][0]["rows"][2]["ratio_p50_vs_same_options"] = 5000.0
    assert history.check(slower_native, base, threshold=0.15) == []  # native frameworks are not ours to regress


def test_a_new_cpu_has_no_baseline_and_says_so_loudly(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.__main__ import NO_BASELINE, gate

    records = [_record(1.0, 1.0, t=f"t{i}") for i in range(3)]
    new = _record(1.0, 1.0, cpu="Intel Xeon", t="new")
    assert gate(records, new, 0.15, 5, require=False) == 0
    assert "NO BASELINE FOR THIS CPU" in capsys.readouterr().err
    assert gate(records, new, 0.15, 5, require=True) == NO_BASELINE
    assert gate(records, _record(2.0, 2.0, t="new"), 0.15, 5, require=True) == 1


def test_history_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    rec = _record(1.1, 1.1)
    rec["_raw"] = {"x": [1, 2]}
    history.append(path, rec)
    assert history.load(path)[0]["models"][0]["model"] == "m" and "_raw" not in history.load(path)[0]


def test_suite_is_like_for_like_and_a_short_run_stays_in_its_folder(tiny_bundle_ro: Path, tmp_path: Path) -> None:
    from benchmarks import plots, report, runs
    from benchmarks.contenders import DEFAULT, SAME
    from benchmarks.suite import run_suite

    rec = run_suite([tiny_bundle_ro], batches=[1, 4], artifacts=None, seconds=0.2, rounds=2, cold=False,
                    progress=lambda _: None, command="python -m benchmarks run --seconds 0.2")
    assert rec["full"] is False
    model = rec["models"][0]
    b1 = {r["candidate"]: r for r in model["batches"][0]["rows"]}
    assert {SAME, DEFAULT, "medinfer [default]"} <= set(b1)
    assert b1[SAME]["ratio_p50_vs_same_options"] == 1.0 and b1[DEFAULT]["ratio_p50_vs_default_options"] == 1.0
    info = model["batches"][0]
    assert info["medinfer_reads"] == "labels" and info["fetch"] == ["probabilities"]
    assert b1[DEFAULT]["settings"] == {"session_options": "default"}
    assert len(b1[SAME]["round_p50_us"]) == 2
    assert set(model["overhead"]) >= {"predict_vs_bare_same_options_p50", "predict_vs_bare_default_options_p50"}
    folder = runs.write(rec, tmp_path / "runs")
    assert folder.name.endswith("-short") and runs.read(folder)["models"][0]["_raw"]
    drawn = plots.distributions(runs.read(folder), tmp_path) + [plots.native_vs_runtime(rec, tmp_path)]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in drawn)
    text = report.render(runs.published(rec), [], drawn, folder=tmp_path / "no-results")
    assert "| tiny_logistic | 1 | medinfer [default] |" in text and "## The edge peers" in text


def test_publish_refuses_a_short_run(tiny_bundle_ro: Path, tmp_path: Path) -> None:
    from benchmarks import runs
    from benchmarks.__main__ import main
    from benchmarks.suite import run_suite

    rec = run_suite([tiny_bundle_ro], batches=[1], artifacts=None, seconds=0.1, rounds=1, cold=False,
                    progress=lambda _: None)
    folder = runs.write(rec, tmp_path)
    assert main(["publish", "--from", str(folder)]) == 2  # REPORT.md and results/ untouched


def test_native_models_run_single_threaded() -> None:
    sklearn = pytest.importorskip("sklearn.ensemble")
    from benchmarks.contenders import single_threaded

    model, changed = single_threaded(sklearn.RandomForestClassifier(n_jobs=-1))
    assert changed and model.n_jobs == 1
    plain = object()
    assert single_threaded(plain) == (plain, False)  # no n_jobs knob: left as it is


def test_every_contender_fetches_medinfers_outputs_domain_score_included(tmp_path: Path) -> None:
    from benchmarks.contenders import in_process

    from ..helpers import tiny

    bundle = tiny.build_domain(tmp_path / "tiny_domain")
    cands, info = in_process(bundle, 3, None)
    assert "domain_score" in info["fetch"]
    bare = {c.name: c for c in cands if c.kind == "ort"}
    for c in bare.values():
        assert c.fn is not None and len(c.fn()) == len(info["fetch"])  # the same outputs as medinfer, in order
