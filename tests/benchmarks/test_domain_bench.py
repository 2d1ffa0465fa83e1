"""``python -m benchmarks domain`` writes raw data with its provenance: the run's state captured before the guard
is timed, the sha256 of every timed bundle, the schema of every results file (names and codes; the shifts'
descriptions and the calibration's words stay in the manifests), the guard's latency at batch 1 and 64."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks import domain, provenance, results

from ..helpers import tiny

SHIFTS = {
    "columns_shuffled": {"kind": "gross", "family": "column order faults", "role": "design", "synthetic": True,
                         "description": "the descriptors of each sample shuffled", "n": 50, "auroc": 0.999,
                         "refused": 0.98, "source": "held-out samples, corrupted"},
    "other_series": {"kind": "subtle", "family": "other chemical series", "role": "evaluation", "synthetic": False,
                     "description": "ligands of another target", "n": 40, "auroc": 0.81, "refused": 0.55,
                     "source": "chembl==33:file.csv", "note": "close analogues score like the training set"},
}


def _evaluated(folder: Path) -> Path:
    """The tiny bundle with a domain guard, its manifest's domain section as the exporter writes it now."""
    bundle = tiny.build_domain(folder / "tiny_domain")
    path = bundle / "manifest.json"
    doc = json.loads(path.read_text())
    doc["domain"]["calibration"] = {"data": "the validation part (never trained on)", "n": 400,
                                    "above_threshold": 1, "confidence": 0.91,
                                    "rule": "above all but the 1 largest of 400 calibration scores"}
    doc["domain"]["evaluation"] = {
        "n": 300, "acceptance": 0.99, "acceptance_goal_met": True, "parts": ["leverage"], "shifts": SHIFTS,
        "goals": {"columns_shuffled": {"refused_goal": 0.95, "met": True},
                  "other_series": {"refused_goal": 0.6, "auroc_goal": 0.8, "met": False}},
        "design": ["columns_shuffled"], "evaluation": ["other_series"],
        "note": "in-domain acceptance on held-out samples that chose nothing"}
    path.write_text(json.dumps(doc))
    return bundle


def test_the_domain_command_records_its_start_times_both_batches_and_writes_raw_data(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks.__main__ import main

    bundles = _evaluated(tmp_path / "bundles").parent
    events: list[str] = []
    capture, timed = provenance.capture, domain.guard_latency

    def captured(root: Any = None) -> dict[str, Any]:
        events.append("provenance")
        return capture(root)

    def latency(bundle: Path, batch: int = 1, seconds: float = 6.0, rounds: int = 12) -> dict[str, Any]:
        events.append(f"timed at batch {batch}")
        return timed(bundle, batch, seconds, rounds=2)

    monkeypatch.setattr(provenance, "capture", captured)
    monkeypatch.setattr(domain, "guard_latency", latency)
    out = tmp_path / "results"
    assert main(["domain", "--bundles", str(bundles), "--seconds", "0.05", "--results", str(out)]) == 0
    assert events == ["provenance", "timed at batch 1", "timed at batch 64"]  # the state before any timing
    doc = json.loads((out / "domain.json").read_text())
    assert results.problems(doc, "domain") == [] and domain.problems(doc) == []
    assert doc["bundles"] == {"tiny_domain": provenance.bundle_digests(bundles / "tiny_domain")}
    assert doc["command"].startswith("python -m benchmarks domain --bundles")
    model = doc["models"]["tiny_domain"]
    assert set(model["latency"]) == {"1", "64"} and model["latency"]["64"]["batch"] == 64
    shift = model["shifts"]["other_series"]
    assert shift["role"] == "evaluation" and shift["family"] == "other chemical series" and "description" not in shift
    assert "rule" not in model["calibration"] and "data" not in model["calibration"]


def test_a_results_file_with_the_shifts_words_is_refused(tmp_path: Path) -> None:
    doc = domain.collect(_evaluated(tmp_path / "bundles").parent)
    assert results.problems(doc, "domain") == []
    doc["models"]["tiny_domain"]["shifts"]["other_series"]["description"] = SHIFTS["other_series"]["description"]
    assert any("description" in p for p in results.problems(doc, "domain"))
    with pytest.raises(ValueError, match="would not be raw data"):
        results.write("domain", doc, tmp_path / "elsewhere")


def test_an_incomplete_evaluation_is_not_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.__main__ import main

    bundles = tmp_path / "bundles"
    tiny.build_domain(bundles / "tiny_domain")  # a guard without the refused-share evaluation
    out = tmp_path / "results"
    assert main(["domain", "--bundles", str(bundles), "--seconds", "0.02", "--results", str(out)]) == 2
    assert "rebuild them" in capsys.readouterr().err and not (out / "domain.json").exists()
