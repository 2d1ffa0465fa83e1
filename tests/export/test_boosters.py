"""LightGBM -> ONNX keeps every decision of the native model on float32 inputs: LightGBM compares the input widened
to double with a double threshold; onnxmltools rounds that threshold to the nearest float32, which can land on the
input value just above it (adjacent float32 values, as descriptors with large magnitudes have)."""

from __future__ import annotations

import numpy as np
import pytest


def _adjacent_values_model() -> tuple[object, np.ndarray]:
    lgb = pytest.importorskip("lightgbm")
    rng = np.random.default_rng(0)
    base = np.float32(1000.0) + np.arange(40, dtype=np.float32) * np.float32(0.25)
    lo = base[rng.integers(0, len(base), 600)]
    X = np.stack([lo, np.nextafter(lo, np.float32(np.inf))], axis=1)[np.arange(600), rng.integers(0, 2, 600)]
    X = np.stack([X, rng.normal(size=600).astype(np.float32)], axis=1).astype(np.float32)
    y = (X[:, 0] != np.floor(X[:, 0] * 4) / 4).astype(int)  # 1: the upper one of two adjacent float32 values
    model = lgb.LGBMClassifier(n_estimators=20, num_leaves=4, min_child_samples=2, verbose=-1).fit(X, y)
    return model, X


def test_lightgbm_graph_gives_the_native_probabilities_at_thresholds_between_adjacent_floats() -> None:
    pytest.importorskip("onnxmltools")
    import onnxruntime as ort
    from medinfer.export.converters.boosters import exact_lightgbm_thresholds
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    model, X = _adjacent_values_model()
    native = model.predict_proba(X)[:, 1]

    def graph_probability(onx: object) -> np.ndarray:
        session = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])  # type: ignore
        return session.run(None, {"x": X})[1][:, 1]

    onx = convert_lightgbm(model, initial_types=[("x", FloatTensorType([None, 2]))], target_opset=15, zipmap=False)
    rounded = np.abs(graph_probability(onx) - native).max()
    assert exact_lightgbm_thresholds(onx, model.booster_) > 0
    assert np.abs(graph_probability(onx) - native).max() < 1e-6, f"nearest-rounded thresholds were off by {rounded}"
    assert rounded > 1e-3  # the case this guards against occurs in this data (else the test proves nothing)
