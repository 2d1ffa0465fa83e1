"""The Triton repository carries the guard (issue 26): for a bundle with a domain guard, the decision model
``export-triton`` writes outputs ``in_domain`` — the domain score within the bundle's threshold, the rule of
``medinfer.decision.in_domain`` — checked against ``Model.predict`` like the labels before anything is written, and
the config names the threshold; the Python backend answers ``in_domain`` like ``medinfer serve``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import medinfer
import numpy as np
import pytest
from medinfer.fleet.triton.repository import TritonOptions, export_repository

from ..helpers import tiny

pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.build_domain(tmp_path_factory.mktemp("triton_domain") / "tiny_domain", threshold=1.0)


def test_the_decision_model_flags_like_model_predict(guarded: Path, tmp_path: Path) -> None:
    import onnxruntime as ort

    folder = export_repository([guarded], tmp_path / "repo", TritonOptions())[0]
    text = (folder / "config.pbtxt").read_text()
    assert 'name: "in_domain"\n    data_type: TYPE_BOOL' in text
    assert 'parameters { key: "domain_threshold" value: { string_value: "1.0" } }' in text
    model = medinfer.load(guarded)
    rng = np.random.default_rng(3)
    x = rng.uniform(-9, 9, (400, 3)).astype(np.float32)  # mean(x^2) / 10 spans both sides of the threshold 1
    session = ort.InferenceSession((folder / "1" / "model.onnx").read_bytes(), providers=["CPUExecutionProvider"])
    labels, inside = session.run(["labels", "in_domain"], {"x": x})
    expected = model.predict(x)
    assert 0 < expected.in_domain.sum() < len(x)
    assert inside.dtype == bool and inside.tolist() == expected.in_domain.tolist()
    assert list(labels) == [str(v) for v in expected.labels]


def test_a_graph_whose_flag_differs_from_model_predict_is_refused(guarded: Path) -> None:
    from medinfer.errors import ParityError
    from medinfer.fleet.triton.decision import check_decision, with_decision

    model = medinfer.load(guarded)
    manifest = model.manifest
    wrong = dataclasses.replace(manifest, domain=dataclasses.replace(manifest.domain, threshold=0.1))
    graph = with_decision(model.graph_bytes(), wrong)  # the golden rows score 0.47 and 0.71: flipped at 0.1
    with pytest.raises(ParityError, match="'in_domain' differs"):
        check_decision(graph, model)
    check_decision(with_decision(model.graph_bytes(), manifest), model)  # the bundle's own threshold passes


def test_a_refusing_model_is_exported_with_its_flags(guarded: Path, tmp_path: Path) -> None:
    """The exported graph answers and flags (Triton refuses nothing by itself); the check uses the flags, not a
    refusal of the golden input."""
    model = medinfer.load(guarded, out_of_domain="no_result")
    from medinfer.fleet.triton.decision import check_decision, with_decision

    check_decision(with_decision(model.graph_bytes(), model.manifest), model)


def test_a_bundle_without_a_guard_has_no_flag(tiny_bundle_ro: Path, tmp_path: Path) -> None:
    folder = export_repository([tiny_bundle_ro], tmp_path / "repo", TritonOptions())[0]
    text = (folder / "config.pbtxt").read_text()
    assert "in_domain" not in text and "domain_threshold" not in text


def test_the_python_backend_answers_the_flag(guarded: Path, tmp_path: Path) -> None:
    folder = export_repository([guarded], tmp_path / "repo", TritonOptions(backend="python"))[0]
    text = (folder / "config.pbtxt").read_text()
    assert 'name: "in_domain"\n    data_type: TYPE_BOOL' in text
