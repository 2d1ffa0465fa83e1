"""Every registered spec end to end on its small test sample: train → export → parity → load → predict == native.

Parametrized over the registry: a new spec file is tested here without editing this file.
"""

from __future__ import annotations

import json

import medinfer
import numpy as np
import pytest
from medinfer.train import registry

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", registry.names())
def test_runtime_predict_equals_native(built, name: str) -> None:
    art, path = built(name)
    spec = art.spec
    model = medinfer.load(path)
    X = art.dataset.X_test
    pred = model.predict(X)
    native_scores = spec.scores(spec.native_outputs(art.model, X))
    np.testing.assert_allclose(pred.scores, native_scores, atol=spec.parity.atol, rtol=spec.parity.rtol)
    if spec.task != "regression":
        native_labels = np.asarray(spec.labels, dtype=object)[spec.decisions(native_scores)]
        assert list(pred.labels) == list(native_labels)
    assert pred.model_sha256 == model.manifest.files["model.onnx"].sha256


@pytest.mark.parametrize("name", registry.names())
def test_manifest_records_the_contract(built, name: str) -> None:
    art, path = built(name)
    m = medinfer.load_manifest(path)
    assert m.name == name and m.version == art.spec.version
    assert m.parity["passed"] is True and m.parity["n_samples"] >= len(art.dataset.y_test)
    assert m.data.sources and all(len(s.sha256) == 64 for s in m.data.sources)
    assert all(v.ci95 is None or v.ci95[0] <= v.value <= v.ci95[1] for v in m.metrics.heldout.values())
    assert m.metrics.baseline is not None
    assert set(m.files) >= {"model.onnx", "golden.npz", "model_card.md"}
    assert m.producer.opset and m.producer.frameworks
    card = (path / "model_card.md").read_text()
    assert m.card.intended_use in card
    import onnx

    props = {p.key: p.value for p in onnx.load(str(path / "model.onnx")).metadata_props}
    assert props["medinfer.name"] == name and props["medinfer.version"] == m.version
    assert json.loads((path / "manifest.json").read_text())["schema_version"] == 1


@pytest.mark.parametrize("name", registry.names())
def test_parity_gate_fails_closed(built, tmp_path, name: str) -> None:
    """A native model that disagrees with the graph must stop the export, and no bundle may appear."""
    import dataclasses

    from medinfer.export.bundle import export
    from medinfer.train.spec import ParityTolerance

    art, _ = built(name)
    strict = dataclasses.replace(art, spec=type(art.spec)())
    real = strict.spec.native_outputs

    def skewed(model, X):
        out = real(model, X)
        key = strict.spec.score_output
        out[key] = (out[key] + np.float32(0.01)).astype(out[key].dtype)
        return out

    strict.spec.native_outputs = skewed
    strict.spec.parity = ParityTolerance(atol=1e-4)
    with pytest.raises(medinfer.ParityError, match="(?s)parity gate FAILED.*max abs diff"):
        export(strict, tmp_path / "bundles")
    out = tmp_path / "bundles"
    assert not out.exists() or not any(out.iterdir())  # no bundle and no staging folder left behind
