"""README's (and SECURITY.md's) speed and accuracy numbers are rendered from the committed results or from the
constant of the rule they state (benchmarks/readme.py, stated.py); no other speed or ratio stands in the docs
(benchmarks/claims.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import claims, readme

ROOT = Path(__file__).resolve().parents[2]


def test_readme_numbers_are_rendered_from_the_results() -> None:
    want = readme.expected()
    spans = readme.spans((ROOT / "README.md").read_text())
    assert set(spans) <= set(want) and len(spans) >= 8
    for doc in claims.documents():  # README.md, SECURITY.md, docs/*.md: the same spans, the same data
        got = readme.spans(doc.read_text())
        assert set(got) <= set(want), f"{doc.name}: unknown marker {sorted(set(got) - set(want))}"
        assert got == {k: want[k] for k in got}, f"{doc.name}: python -m benchmarks report && publish"
        assert "no data" not in got.values(), doc.name


def test_no_speed_or_ratio_stands_outside_a_rendered_span() -> None:
    loose = [line for doc in claims.documents() for line in claims.scan(doc)]
    assert loose == [], "speeds or ratios without data behind them (render them: benchmarks/readme.py, " \
                        "benchmarks/stated.py):\n" + "\n".join(loose)


WRITTEN = ["6.8x", "6.8×", "2.7 times", "15 microseconds", "15 µs", "15 μs", "15 us", "3 ms", "40 ns", "2 seconds",
           "1.5 s", "10 min", "40 %", "40%", "40 percent", "3-fold", "500 req/s", "80 MB/s", "1,000 rows per second",
           "0.10–0.48×", "+15.3 µs", "~0.2 ms", "120 qps"]


@pytest.mark.parametrize("number", WRITTEN)
def test_every_way_of_writing_a_speed_or_ratio_is_found_anywhere_and_its_line_named(tmp_path: Path,
                                                                                     number: str) -> None:
    doc = tmp_path / "README.md"
    doc.write_text(f"# x\n\n## Install\n\nplain text\nthe runtime is {number} faster than the rest\n")
    found = claims.scan(doc)
    assert len(found) == 1 and found[0].startswith(f"{doc}:6: ") and number in found[0]
    doc.write_text(f"## Install\nthe runtime is <!-- n:hotpath.us -->{number}<!-- /n --> faster\n")
    assert claims.scan(doc) == []  # inside a rendered span: checked against its data instead


def test_settings_and_dimensions_are_not_claims() -> None:
    text = "`--window 1h`, `AuditLog(path, group_ms=10)`, an LSTM (3×64), a 512x512 slice, x86-64, 10x PBMC 68k"
    assert claims.loose(claims.rendered_removed(text)) == []


def test_a_stated_rule_is_rendered_from_its_constant(monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks import history

    assert readme.expected()["const.gate.threshold"] == f"{history.DEFAULT_THRESHOLD * 100:.0f} %"
    monkeypatch.setattr(history, "DEFAULT_THRESHOLD", 0.2)
    assert readme.expected()["const.gate.threshold"] == "20 %"  # the README sentence follows the code


def test_values_compute_what_they_say() -> None:
    models = {"models": [
        {"model": "lung_nodule_cnn", "metrics": {"heldout": {"roc_auc": {"value": 0.8891, "ci95": [0.8646, 0.9122]}}},
         "variants": {"int8": {"accuracy_delta": {"roc_auc": 0.0019}}}},
        {"model": "glucose_lstm", "metrics": {"heldout": {"rmse": {"value": 20.71, "ci95": [18.9, 22.84]},
                                                          "clarke_A_pct": {"value": 86.9}},
                                              "baseline": {"heldout": {"rmse": {"value": 28.64}}}}}]}

    def rows(model: str, pairs: dict[str, float]) -> dict:
        return {"model": model, "batches": [{"batch": 1, "rows": [
            {"candidate": k, "latency_us": {"p50": v}} for k, v in pairs.items()]}]}

    suite = {"time": "2026-12-01T00:00:00Z", "models": [
        rows("lung_nodule_cnn", {"medinfer [default]": 1500.0, "medinfer [int8]": 570.0}),
        rows("drug_activity_rf", {"ort (same options)": 7.2, "medinfer [default]": 8.2}),
        rows("clinical_notes_tfidf", {"ort (bundle profile)": 19.6, "medinfer [default]": 21.5})]}
    conc = {"rows": [
        {"model": "lung_nodule_cnn", "direct": {"requests_per_s": 100, "p99_us": 300},
         "micro_batched": {"requests_per_s": 136, "p99_us": 100}},
        {"model": "drug_activity_rf", "direct": {"requests_per_s": 100, "p99_us": 1}, "micro_batched": {
            "requests_per_s": 21, "p99_us": 1}},
        {"model": "glucose_lstm", "direct": {"requests_per_s": 100, "p99_us": 1}, "micro_batched": {
            "requests_per_s": 40, "p99_us": 1}}]}
    got = {k: f() for k, f in readme.values(models, suite, conc).items()
           if not k.startswith(("audit.", "const."))}  # safety: below; const: the rules' constants
    assert got["cnn.auc"] == "0.889 (0.865–0.912)" and got["lstm.rmse"] == "20.7 (18.9–22.8)"
    assert got["lstm.persistence"] == "28.6" and got["lstm.clarke_a"] == "87 %" and got["int8.auc"] == "−0.002"
    assert got["int8.ratio"] == "0.38×"
    assert got["hotpath.us"] == "RF +1.0 µs, TF-IDF +1.9 µs (p50, batch 1, run 2026-12-01)"
    assert got["microbatch.cnn"] == "1.36× the requests with 0.33× the p99" and got["microbatch.small"] == "0.21–0.40×"


def test_the_audit_cost_is_read_from_the_safety_results() -> None:
    safety = {"costs": [{"model": "drug_activity_rf", "rows": {
        "predict": {"stats_us": {"p50": 5.0, "p99": 9.0, "mean": 5.5}},
        "predict + audit": {"stats_us": {"p50": 15.1, "p99": 30.0, "mean": 16.0}},
        "predict + audit + fsync": {"stats_us": {"p50": 205.0, "p99": 300.0, "mean": 210.0}}}}]}
    got = readme.values(None, None, None, safety)
    assert got["audit.added"]() == "+10.1 µs per record over a plain predict (drug_activity_rf, p50, batch 1)"
    assert got["audit.fsync"]() == "+200.0 µs per record with fsync (drug_activity_rf, p50, batch 1)"
