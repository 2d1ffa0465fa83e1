"""README's speed and accuracy numbers are rendered from the committed results (benchmarks/readme.py)."""

from __future__ import annotations

import re
from pathlib import Path

from benchmarks import readme

ROOT = Path(__file__).resolve().parents[2]


def test_readme_numbers_are_rendered_from_the_results() -> None:
    spans = readme.spans((ROOT / "README.md").read_text())
    want = readme.expected()
    assert set(spans) <= set(want) and len(spans) >= 8
    assert {k: spans[k] for k in spans} == {k: want[k] for k in spans}, "python -m benchmarks report && publish"
    assert "no data" not in spans.values()


def test_no_speed_number_stands_outside_a_marker() -> None:
    text = (ROOT / "README.md").read_text()
    speed = text.split("## Speed", 1)[1].split("\n## ", 1)[0]
    speed = re.sub(r"```.*?```", "", speed, flags=re.S)
    speed = readme.SPAN.sub("", speed)
    loose = re.findall(r"\d[\d.,]*\s?(?:µs|ms|×|x\b)|\d+\.\d+[–-]\d", speed)
    assert loose == [], f"README speed numbers without data behind them: {loose}"


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
    got = {k: f() for k, f in readme.values(models, suite, conc).items() if k != "audit.added"}  # safety: below
    assert got["cnn.auc"] == "0.889 (0.865–0.912)" and got["lstm.rmse"] == "20.7 (18.9–22.8)"
    assert got["lstm.persistence"] == "28.6" and got["lstm.clarke_a"] == "87 %" and got["int8.auc"] == "−0.002"
    assert got["int8.ratio"] == "0.38×"
    assert got["hotpath.us"] == "RF +1.0 µs, TF-IDF +1.9 µs (p50, batch 1, run 2026-12-01)"
    assert got["microbatch.cnn"] == "1.36× the requests with 0.33× the p99" and got["microbatch.small"] == "0.21–0.40×"


def test_the_audit_cost_is_read_from_the_safety_results() -> None:
    safety = {"costs": [{"model": "drug_activity_rf", "rows": {
        "predict": {"stats_us": {"p50": 5.0, "p99": 9.0, "mean": 5.5}},
        "predict + audit": {"stats_us": {"p50": 15.1, "p99": 30.0, "mean": 16.0}}}}]}
    got = readme.values(None, None, None, safety)["audit.added"]()
    assert got == "+10.1 µs per record over a plain predict (drug_activity_rf, p50, batch 1)"
