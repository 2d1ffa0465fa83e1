"""`medinfer diff OLD NEW [--reference DATA]` holds a candidate to the acceptance criteria its parent declared:
every class of degraded candidate is refused (exit 16) naming the criterion; a candidate within them passes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from medinfer.change import MetricCriterion, Pccp
from medinfer.cli import main
from medinfer.errors import EXIT_CODES
from medinfer.lifecycle.diff import diff

from ..helpers import candidates

pytestmark = pytest.mark.hostile("degraded change candidates")
PLAN = Pccp(metrics=(MetricCriterion("roc_auc", "higher", 0.02), MetricCriterion("accuracy", "higher", 0.03)),
            n_boot=200)


@pytest.fixture(scope="module")
def parent(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return candidates.build(tmp_path_factory.mktemp("parent") / "tiny_change", release=1, pccp=PLAN)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ref") / "frozen.npz"
    np.savez(path, **candidates.reference_set(1000))
    return path


def _candidate(tmp_path: Path, parent: Path, **kw) -> Path:
    return candidates.build(tmp_path / "new" / "tiny_change", parent=parent, change="test candidate", **kw)


NOISY = candidates.W + np.array([[0.05, -0.05], [-0.04, 0.04], [0.03, -0.03]], np.float32)
WEAK = np.array([[0.3, -0.3], [1.5, -1.5], [-0.2, 0.2]], np.float32)  # leans on the least informative feature

DEGRADED = {
    "lower AUROC beyond the margin": ({"w": WEAK}, ("reference roc_auc", "decision flips")),
    "inverted scores under the same contract": ({"w": -candidates.W}, ("reference roc_auc", "decision flips")),
    "labels swapped in the contract": ({"labels": ("positive", "negative")}, ("contract: labels",)),
    "positive label changed": ({"positive": "negative"}, ("contract: decision.positive_label",)),
    "threshold moved": ({"threshold": 0.3}, ("operating threshold",)),
    "input range changed": ({"x_range": (-100.0, 100.0)}, ("contract: inputs",)),
    "domain guard removed": ({"guard": None}, ("domain guard",)),
    "domain guard neutered": ({"guard": 1e9}, ("out-of-range probes",)),
    "domain guard too strict": ({"guard": 0.05}, ("domain acceptance",)),
    "one subgroup much worse": ({"alt_w": -candidates.W, "alt_from": 1.0}, ("subgroup high: roc_auc",)),
    "declared metric lower": ({"metrics": {"roc_auc": 0.80, "accuracy": 0.78}}, ("declared roc_auc",)),
}


@pytest.mark.parametrize("case", list(DEGRADED))
def test_a_degraded_candidate_is_refused_naming_the_criterion(tmp_path: Path, parent: Path, reference: Path,
                                                              case: str) -> None:
    options, expected = DEGRADED[case]
    candidate = _candidate(tmp_path, parent, **options)
    report = diff(parent, candidate, reference)
    failed = {f.check for f in report.failures()}
    assert not report.passed and set(expected) <= failed, (case, failed)
    assert main(["diff", str(parent), str(candidate), "--reference", str(reference)]) == EXIT_CODES[
        "change_rejected"] == 16


@pytest.mark.parametrize("case", ["threshold moved", "domain guard removed", "labels swapped in the contract",
                                  "inverted scores under the same contract", "domain guard neutered"])
def test_without_reference_data_the_parents_own_samples_still_catch_it(tmp_path: Path, parent: Path,
                                                                       case: str) -> None:
    candidate = _candidate(tmp_path, parent, **DEGRADED[case][0])
    assert not diff(parent, candidate).passed


def test_a_candidate_within_the_plan_passes(tmp_path: Path, parent: Path, reference: Path, capsys) -> None:
    candidate = _candidate(tmp_path, parent, w=NOISY, version="0.0.2")
    report = diff(parent, candidate, reference)
    assert report.passed, [(f.check, f.detail) for f in report.failures()]
    checks = {f.check for f in report.findings}
    assert {"contract", "lineage", "operating threshold", "domain guard", "decision flips", "domain acceptance",
            "out-of-range probes", "reference roc_auc", "subgroup high: roc_auc"} <= checks
    assert main(["diff", str(parent), str(candidate), "--reference", str(reference), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["passed"] and doc["new"]["release"] == 2 and doc["plan"].startswith("the PCCP declared")


def test_a_candidate_of_another_parent_is_refused(tmp_path: Path, parent: Path, reference: Path) -> None:
    stranger = candidates.build(tmp_path / "stranger" / "tiny_change", release=1, threshold=0.45)
    candidate = _candidate(tmp_path, stranger, version="0.0.2")
    failed = {f.check for f in diff(parent, candidate, reference).failures()}
    assert "lineage" in failed


def test_a_parent_without_a_plan_is_judged_by_the_default_plan(tmp_path: Path, reference: Path) -> None:
    old = candidates.build(tmp_path / "old" / "tiny_change")
    report = diff(old, _candidate(tmp_path, old, w=WEAK), reference)
    assert "default plan" in report.plan and not report.passed
    assert diff(old, _candidate(tmp_path / "ok", old, w=NOISY), reference).passed


def test_a_bad_reference_file_is_a_usage_error(tmp_path: Path, parent: Path) -> None:
    bad = tmp_path / "bad.npz"
    np.savez(bad, other=np.zeros(3))
    assert main(["diff", str(parent), str(parent), "--reference", str(bad)]) == EXIT_CODES["usage"]
    labels = tmp_path / "labels.npz"
    np.savez(labels, x=np.zeros((4, 3), np.float32), y=np.array(["maybe"] * 4))
    assert main(["diff", str(parent), str(parent), "--reference", str(labels)]) == EXIT_CODES["usage"]


def test_a_bundle_written_before_change_control_loads_and_is_judged_by_the_default_plan(tmp_path: Path,
                                                                                      reference: Path) -> None:
    import medinfer

    old = candidates.build(tmp_path / "old" / "tiny_change")
    doc = json.loads((old / "manifest.json").read_text())
    for field in ("lineage", "pccp"):
        doc.pop(field, None)  # as a manifest written before the fields existed (manifest.json is not pinned)
    (old / "manifest.json").write_text(json.dumps(doc))
    assert medinfer.load(old).manifest.pccp is None
    report = diff(old, _candidate(tmp_path, old, w=NOISY), reference)
    assert report.passed and "declares no PCCP" in report.plan
