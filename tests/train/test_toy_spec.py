"""Adding a model is one spec class: a sixth, toy spec defined HERE (tiny scikit-learn model on synthetic data) is
registered, then trains, exports through the parity gate, bundles, loads, predicts and benchmarks through the
same code paths as the five real ones, with no other file touched — and speaks FHIR and DICOM in the codes its
spec declares (no table in tools/ names it)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import medinfer
import numpy as np
import pytest
from medinfer.codings import Coding, Codings, FhirResult
from medinfer.manifest import Card, DataSource, SessionProfile, TensorSpec

pytest.importorskip("sklearn")

from medinfer.train import registry  # noqa: E402
from medinfer.train.families import SklearnClassifierSpec  # noqa: E402
from medinfer.train.spec import Dataset, ParityTolerance  # noqa: E402

FEATURES = ("a", "b", "c", "d")


class ToySpec(SklearnClassifierSpec):
    name = "toy_logistic"
    version = "0.1.0"
    task = "binary_classification"
    description = "A toy logistic regression on SYNTHETIC data (defined inside a test)."
    seed_section = "none: a test of the spec contract"
    labels = ("no", "yes")
    positive_label = "yes"
    threshold = 0.5
    threshold_rationale = "the logistic model's default"
    parity = ParityTolerance(atol=1e-5)
    profile = SessionProfile(intra_op_num_threads=1, inter_op_num_threads=1)
    measure_profile = False  # keep the test fast; the measured path is covered by the real specs
    card = Card(summary="toy", intended_use="tests of the spec contract only", out_of_scope=("anything real",),
                limitations=("synthetic data",))
    options = ("c",)
    c: float = 1.0
    codings = Codings(fhir=FhirResult("RiskAssessment", Coding("urn:example:toy", "toy-risk", "Toy risk (model)"),
                                      outcome=Coding("urn:example:toy", "toy-yes", "Toy finding")),
                      dicom_finding=Coding("99TOY", "YES", "Toy finding"))

    def load_data(self, *, sample: int | None = None, seed: int = 0, progress: Any = None) -> Dataset:
        rng = np.random.default_rng(seed)
        X = rng.normal(size=(sample or 300, len(FEATURES))).astype(np.float32)
        y = (X @ np.array([1.5, -1.0, 0.5, 0.0]) + rng.normal(scale=0.5, size=len(X)) > 0).astype(np.int64)
        cut = int(0.7 * len(X))
        return Dataset(X_train=X[:cut], y_train=y[:cut], X_test=X[cut:], y_test=y[cut:],
                       sources=(DataSource(name="toy", package="none", version="0", file="-", sha256="0" * 64,
                                           licence="CC0", citation="generated in the test"),),
                       split={"method": "first 70 % / last 30 %"}, synthetic=True,
                       description="SYNTHETIC: linear rule plus noise", feature_names=FEATURES,
                       edge=np.array([[-10] * 4, [10] * 4, [0] * 4], dtype=np.float32))

    def build(self, dataset: Dataset) -> Any:
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=self.c)

    def inputs(self, dataset: Dataset) -> tuple[TensorSpec, ...]:
        return (TensorSpec("x", "float32", ("N", len(FEATURES)), range=(-10.0, 10.0), names=FEATURES),)

    def evaluate(self, scores: np.ndarray, y: np.ndarray, X: Any, threshold: float | None) -> dict[str, Any]:
        from medinfer.train.metrics import binary_metrics

        return binary_metrics(y, scores, threshold)


@pytest.fixture
def toy() -> Any:
    registry.register(ToySpec)
    yield ToySpec
    registry.unregister(ToySpec.name)


def test_a_sixth_spec_goes_from_training_to_benchmark(toy, tmp_path: Path, capsys) -> None:
    from medinfer.cli import main
    from medinfer.tools.bench import bench_bundle

    from benchmarks.suite import run_suite

    assert "toy_logistic" in registry.names()
    artifacts, bundles = tmp_path / "artifacts", tmp_path / "bundles"
    assert main(["build", "toy_logistic", "--artifacts", str(artifacts), "--out", str(bundles),
                 "--set", "c=0.5"]) == 0
    assert "parity passed" in capsys.readouterr().err
    path = bundles / "toy_logistic"
    model = medinfer.load(path)
    assert model.manifest.parity.passed and model.manifest.decision.threshold == 0.5
    x = np.array([[2, -1, 0, 0], [-2, 1, 0, 0]], np.float32)
    assert list(model.predict(x).labels) == ["yes", "no"]
    assert list(model.predict({f: x[:, i] for i, f in enumerate(FEATURES)}).labels) == ["yes", "no"]
    assert model.manifest.codings == ToySpec.codings  # declared by the spec, written into the manifest
    if importlib.util.find_spec("fhir") is not None:
        from medinfer.tools.fhir import to_fhir

        doc = to_fhir(model.predict(x[:1]), "Patient/p1")
        (risk,) = [e["resource"] for e in doc["entry"] if e["resource"]["resourceType"] == "RiskAssessment"]
        assert risk["code"]["coding"][0]["code"] == "toy-risk"
        assert risk["prediction"][0]["outcome"]["coding"][0]["code"] == "toy-yes"
    record = bench_bundle(path, min_queries=20, min_seconds=0.05, warmup_queries=2, cold=False)
    assert record["bundle"] == "toy_logistic" and record["latency_us"]["n"] >= 20
    suite = run_suite([path], batches=[1], artifacts=artifacts, seconds=0.1, rounds=1, cold=False,
                      progress=lambda _: None)
    names = {r["candidate"] for r in suite["models"][0]["batches"][0]["rows"]}
    assert "medinfer [default]" in names and any("sklearn" in n for n in names)  # the native side came along


def test_unknown_and_mistyped_options_are_refused(toy, tmp_path: Path, capsys) -> None:
    from medinfer.cli import main

    assert main(["train", "toy_logistic", "--set", "cc=2", "--artifacts", str(tmp_path)]) == 2
    assert "unknown option 'cc' of toy_logistic; did you mean 'c'?" in capsys.readouterr().err
    assert main(["train", "toy_logistic", "--set", "c=lots", "--artifacts", str(tmp_path)]) == 2
    assert "option 'c' of toy_logistic takes a float" in capsys.readouterr().err
    assert main(["train", "toy_logistic", "--set", "c", "--artifacts", str(tmp_path)]) == 2
    assert "--set expects KEY=VALUE" in capsys.readouterr().err
