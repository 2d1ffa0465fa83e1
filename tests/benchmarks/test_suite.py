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
                    progress=lambda _: None, command="python -m benchmarks run --seconds 0.2", threads=2)
    assert rec["full"] is False
    model = rec["models"][0]
    b1 = {r["candidate"]: r for r in model["batches"][0]["rows"]}
    assert {SAME, DEFAULT, "medinfer [default]"} <= set(b1)
    assert b1[SAME]["ratio_p50_vs_same_options"] == 1.0 and b1[DEFAULT]["ratio_p50_vs_default_options"] == 1.0
    info = model["batches"][0]
    assert info["medinfer_reads"] == "labels" and info["fetch"] == ["probabilities"]
    assert b1[DEFAULT]["settings"] == {"session_options": "default", "intra_op_num_threads": 2}
    assert {r["threads"] for r in b1.values()} == {2} and all(r["label"] for r in b1.values())
    assert len(b1[SAME]["round_p50_us"]) == 2
    assert set(model["overhead"]) >= {"predict_vs_bare_same_options_p50", "predict_vs_bare_default_options_p50"}
    from benchmarks import results

    assert results.problems(runs.published(rec), "suite") == []  # what a run records follows the results schema
    folder = runs.write(rec, tmp_path / "runs")
    assert folder.name.endswith("-short") and runs.read(folder)["models"][0]["_raw"]
    drawn = plots.distributions(runs.read(folder), tmp_path) + [plots.native_vs_runtime(rec, tmp_path)]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in drawn)
    text = report.render(runs.published(rec), [], drawn, folder=tmp_path / "no-results")
    assert "| tiny_logistic | 1 | medinfer [default] | medinfer " in text and "## The edge peers" in text
    assert f"| {b1[SAME]['label']} | 2 |" in text  # what runs and its threads, per row


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


def test_slice_benchmark_smoke_raw_rows_and_the_target_row(tmp_path: Path) -> None:
    from benchmarks import report_sections, results
    from benchmarks.slice import document, markdown, slice_speed, summary

    from ..helpers import tiny_cnn

    bundle = tiny_cnn.build(tmp_path / "tiny_cnn")
    from benchmarks import provenance

    rows = slice_speed(bundle, sizes=(160,), seconds=0.3, rounds=1)
    assert len(rows) == 1
    row = rows[0]
    assert row["one_pass_variant"] == "slice" and row["windows"] == 49 and row["decision_flips"] == 0
    assert row["max_abs_diff"] <= 1e-6 and all(len(v) >= 1 for v in row["samples_ms"].values())
    doc = document(rows, "python -m benchmarks slice --slice-sizes 160", 0.3, 1, provenance.capture(),
                   provenance.bundles_of([bundle]))
    assert results.problems(doc) == []  # raw data and its command, no prose
    assert any("| tiny_cnn | 160x160 | 24 px | fp32 | 49 |" in line for line in markdown(doc))
    results.write("slice", doc, tmp_path / "results")
    targets = {"slice_speedup": {"models": ["tiny_cnn"], "size": 160, "min": 1e-9}}
    lines = report_sections.targets(None, targets, tmp_path / "results")
    assert any("tiny_cnn [slice]: one pass vs patch by patch" in line and "| met |" in line for line in lines)
    assert summary(row)["speedup"] > 0
    missing = report_sections.targets(None, targets, tmp_path / "none")  # no file: the target stays, with no value
    assert any("tiny_cnn: one pass vs patch by patch" in line and "| – |" in line for line in missing)


def test_the_profile_target_compares_medinfer_with_the_better_of_its_options_and_the_defaults() -> None:
    """Issue 14 §5: a shipped profile 2x slower than the defaults at batch 64 must show as not met."""
    from benchmarks import report_sections

    def rows(same: float, default: float, medinfer: float) -> list[dict]:
        return [{"candidate": c, "latency_us": {"p50": p}} for c, p in
                (("ort (same options)", same), ("ort (default options)", default), ("medinfer [default]", medinfer))]

    rec = {"models": [{"model": "m", "batches": [{"batch": 1, "rows": rows(10.0, 10.4, 10.3)},
                                                 {"batch": 64, "rows": rows(361.0, 181.5, 365.0)}]}]}
    lines = report_sections.targets(rec, {"never_lose_to_defaults": {"models": ["m"], "max": 1.05}})
    got = {line.split(" | ")[0].lstrip("| "): line for line in lines[2:]}
    assert "| 0.962 | ≤ 1.05 | met |" in got["m: bare session with medinfer's options / with onnxruntime's defaults "
                                            "(p50, b=1: the shipped profile)"]
    assert "| 1.030 | ≤ 1.05 | met |" in got["m: medinfer fp32 / the better of those two (p50, b=1)"]
    assert "| 1.989 | ≤ 1.05 | not met |" in got["m: bare session with medinfer's options / with onnxruntime's "
                                                "defaults (p50, b=64: the shipped profile)"]
    assert "| 2.011 | ≤ 1.05 | not met |" in got["m: medinfer fp32 / the better of those two (p50, b=64)"]


def test_safety_results_are_raw_and_render(tiny_bundle_ro: Path, tmp_path: Path) -> None:
    from benchmarks import report_sections, results
    from benchmarks.safety import AUDIT, PREDICT, audit_cost, audit_ratio, markdown

    cost = audit_cost(tiny_bundle_ro, seconds=0.5, rounds=2)
    assert {PREDICT, AUDIT, "predict + audit + fsync", "predict + audit + group commit"} <= set(cost["rows"])
    row = cost["rows"][AUDIT]
    assert len(row["round_p50_us"]) == 2 and sum(row["histogram"]) + row["below_edges"] + row["above_edges"] \
        == row["stats_us"]["n"]
    from benchmarks import provenance

    started = provenance.capture()
    doc = {"kind": "medinfer.safety", "command": "python -m benchmarks safety", "time": started["started"],
           "provenance": started, "bundles": provenance.bundles_of([tiny_bundle_ro]),
           "method": {"seconds_per_model": 0.5, "rounds": 2}, "costs": [cost], "soaks": []}
    results.write("safety", doc, tmp_path)  # raises when the document is not raw data
    assert any("| tiny_logistic | predict + audit |" in line for line in markdown(doc))
    lines = report_sections.targets(None, {"audit_overhead": {"models": ["tiny_logistic"], "max": 1e9}}, tmp_path)
    assert any(f"{audit_ratio(cost):.3f}" in line and "| met |" in line for line in lines)


def test_safety_renders_the_flat_rows_of_files_written_before_issue_16() -> None:
    from benchmarks.safety import audit_ratio, markdown

    old = {"command": "python -m benchmarks safety", "costs": [{"model": "m", "rows": {
        "predict": {"p50_us": 8.0, "p99_us": 11.0, "mean_us": 8.0},
        "predict + audit": {"p50_us": 20.0, "p99_us": 40.0, "mean_us": 25.0}}}],
        "soaks": [{"model": "m", "seconds": 20.0, "calls": 100, "rss_start_mb": 10.0, "rss_end_mb": 10.5,
                   "rss_max_mb": 11.0, "growth_mb": 0.5}]}
    assert audit_ratio(old["costs"][0]) == 2.5
    text = "\n".join(markdown(old))
    assert "predates issue 16" in text and "| m | predict + audit | 20.0 | 40.0 | 40000 | 2.50 | +12.0 |" in text
    assert "| m | 20 | 100 | 10.0 | 10.5 | 11.0 | +0.50 |" in text


def test_publish_writes_the_runs_cold_starts_and_its_full_slice_section(tmp_path: Path) -> None:
    import json

    from benchmarks import runs
    from benchmarks.slice import FULL

    cold = {"wall_s_median": 0.2, "peak_rss_mb": 100.0, "raw": [
        {"wall_s": 0.2, "import_s": 0.1, "load_s": 0.05, "first_predict_s": 0.001, "peak_rss_bytes": 100 * 2**20}]}
    prov = {"commit": "1" * 40, "dirty": False, "changed": 0, "changed_paths": [], "started": "2026-12-01T00:00:00Z"}
    record = {"kind": "medinfer.suite", "time": "2026-12-01T00:00:00Z", "full": True, "provenance": prov,
              "bundles": {"m": {"manifest_sha256": "a" * 64, "graphs": {"default": "b" * 64}}},
              "command": "python -m benchmarks run", "env": {"cpu": {"model": "AMD EPYC"}},
              "models": [{"model": "m", "batches": [], "cold_start": cold, "cold_start_variants": {"int8": cold}}],
              "all_loaded": {"n": 1, "peak_rss_mb": 120.0}}
    run = runs.write(record, tmp_path / "runs")
    slice_doc = {"kind": "medinfer.slice", "command": "python -m benchmarks run", "time": prov["started"],
                 "provenance": prov, "bundles": record["bundles"],
                 "method": {"seconds_per_size": FULL["seconds"], "rounds": FULL["rounds"]}, "rows": []}
    runs.write_slice(run, slice_doc)
    out = tmp_path / "results"
    assert runs.publish_results(run, out) == ["suite", "cold_start", "slice"]
    doc = json.loads((out / "cold_start.json").read_text())
    assert doc["models"]["m"]["int8"]["raw"][0]["peak_rss_bytes"] == 100 * 2**20 and doc["all_loaded"]["n"] == 1
    assert json.loads((out / "slice.json").read_text()) == slice_doc
    runs.write_slice(run, {**slice_doc, "method": {"seconds_per_size": 0.5, "rounds": 1}})
    (out / "slice.json").unlink()
    assert runs.publish_results(run, out) == ["suite", "cold_start"] and not (out / "slice.json").exists()
    with pytest.raises(ValueError, match="short run"):
        runs.publish_results(runs.write({**record, "full": False}, tmp_path / "short"), out)


def test_every_benchmarks_subcommand_and_option_has_help() -> None:
    import argparse

    from benchmarks.cli import parser

    top = parser(None)
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    assert {"run", "publish", "report", "slice", "safety", "serve", "concurrency", "models"} <= set(sub.choices)
    helped = {a.dest for a in sub._choices_actions if a.help}
    assert helped == set(sub.choices)
    for name, p in sub.choices.items():
        for action in p._actions:
            if not isinstance(action, argparse._HelpAction):
                assert action.help, f"python -m benchmarks {name} {action.option_strings}: no help"
    run = top.parse_args(["run", "--no-slice", "--slice-seconds", "1", "--slice-sizes", "160"])
    assert run.no_slice and run.slice_seconds == 1.0 and run.slice_sizes == [160]
    assert top.parse_args(["safety", "--rounds", "2"]).rounds == 2
