"""Every part of a domain guard computes the same score in ONNX as in numpy (the parity gate's native reference)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from medinfer.export.domain_graph import add_domain_output
from medinfer.train import domain
from onnx import TensorProto, helper


def _graph(shape: list, opset: int = 17):
    dims = ["N", *(["T", shape[2]] if len(shape) == 3 else shape[1:])]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)
    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [out])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def _run(onx, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run([domain.OUTPUT], {"x": x})[0]


RNG = np.random.default_rng(0)
TABLE = RNG.normal(size=(300, 6)).astype(np.float32)
SERIES = np.abs(RNG.normal(size=(80, 12, 3))).astype(np.float32) * 50 + 40


@pytest.mark.parametrize("opset", [17, 18])
@pytest.mark.parametrize("make", [
    lambda: domain.knn("x", TABLE, k=3), lambda: domain.mahalanobis("x", TABLE, RNG.integers(0, 3, 300)),
    lambda: domain.nll("x", TABLE), lambda: domain.low_share("x", TABLE), lambda: domain.value_stats("x", TABLE),
], ids=["knn", "mahalanobis", "nll", "low_share", "stats"])
def test_table_parts_match_numpy(make, opset: int) -> None:
    part = make()
    guard = domain.DomainGuard([part], "test", features=lambda X: {"x": X}).calibrate(TABLE)
    onx = _graph([300, 6], opset)
    add_domain_output(onx, guard)
    shifted = np.concatenate([TABLE[:20], TABLE[:20] * 3 + 2, np.zeros((2, 6), np.float32)]).astype(np.float32)
    np.testing.assert_allclose(_run(onx, shifted), guard.score(shifted), rtol=1e-4, atol=2e-4)


@pytest.mark.parametrize("make", [lambda: domain.series_flat("x", 0, "stuck"),
                                  lambda: domain.series_flat("x", 0, "stuck", bounds=(45.0, 90.0)),
                                  lambda: domain.series_step("x", 0, "spike")], ids=["flat", "flat_bounded", "step"])
@pytest.mark.parametrize("steps", [1, 2, 12])
def test_series_parts_match_numpy(make, steps: int) -> None:
    guard = domain.DomainGuard([make()], "test", features=lambda X: {"x": X}).calibrate(SERIES)
    onx = _graph([80, 12, 3])
    add_domain_output(onx, guard)
    x = np.ascontiguousarray(SERIES[:10, -steps:]).copy()
    x[:3, steps // 2:, 0] = x[:3, -1:, 0]  # stuck for the second half of the window
    np.testing.assert_allclose(_run(onx, x), guard.score(x), rtol=1e-5, atol=1e-6)


def test_entropy_and_several_parts_take_the_largest() -> None:
    probs = RNG.dirichlet(np.ones(4), size=50).astype(np.float32)
    guard = domain.DomainGuard([domain.entropy("x"), domain.low_share("x", probs)], "test",
                               features=lambda X: {"x": X}).calibrate(probs)
    onx = _graph([50, 4])
    add_domain_output(onx, guard)
    np.testing.assert_allclose(_run(onx, probs), guard.score(probs), rtol=1e-5, atol=1e-6)
    parts = guard.parts_scores(probs)
    np.testing.assert_allclose(guard.score(probs), np.maximum(*parts.values()), rtol=1e-6)


def test_threshold_and_metrics() -> None:
    """The threshold leaves above it as many calibration scores as keep >= 99 % coverage with 90 % confidence
    (binomial order statistic): none of 100 (P = 0.63 even then), 1 of 400 (P(Bin(400, 0.01) >= 2) = 0.91), 5 of
    1000 (P(Bin(1000, 0.01) >= 6) = 0.93; 6 would give 0.87)."""
    scores = np.arange(100, dtype=np.float64)
    t = domain.choose_threshold(scores, 0.99)
    assert t > 99 and (scores <= t).all()
    for n, above in ((400, 1), (1000, 5)):
        s = np.arange(n, dtype=np.float64)
        assert int(np.sum(s > domain.choose_threshold(s, 0.99))) == above
    from medinfer.train.domain_eval import threshold_confidence

    assert abs(threshold_confidence(400, 1, 0.99) - 0.9095) < 1e-3 and threshold_confidence(1000, 6, 0.99) < 0.9
    assert domain.auroc(np.zeros(5), np.ones(5)) == 1.0 and domain.auroc(np.ones(4), np.ones(4)) == 0.5
    curve = domain.selective_curve(np.arange(10.0), np.r_[np.zeros(5), np.ones(5)], points=2)
    assert curve == [{"coverage": 0.5, "error": 0.0}, {"coverage": 1.0, "error": 0.5}]


def test_flat_counts_a_stuck_reading_but_not_the_sensor_floor() -> None:
    part = domain.series_flat("x", 0, "stuck", bounds=(39.0, 600.0))
    x = np.array([[100, 101, 102, 103], [100, 120, 120, 120], [39, 39, 39, 39], [600, 600, 250, 250]],
                 np.float32)[:, :, None]
    np.testing.assert_allclose(part.raw(x), [0.0, 0.5, 0.0, 0.25])
    guard = domain.DomainGuard([part], "test", features=lambda X: {"x": X})
    onx = _graph([4, 4, 1])
    add_domain_output(onx, guard)
    np.testing.assert_allclose(_run(onx, x), [0.0, 0.5, 0.0, 0.25])


@pytest.mark.parametrize("standardize", [False, True])
def test_mahalanobis_is_the_textbook_distance_to_the_nearest_class(standardize: bool) -> None:
    """The whitened form equals (x - m_c)' inv(S) (x - m_c), S the pooled within-class covariance (without a
    ridge, standardizing first changes nothing: the distance is scale-invariant)."""
    y = RNG.integers(0, 3, 300)
    part = domain.mahalanobis("x", TABLE, y, ridge=0.0, standardize=standardize)
    data = TABLE.astype(np.float64)
    means = np.stack([data[y == c].mean(0) for c in range(3)])
    centred = np.concatenate([data[y == c] - means[c] for c in range(3)])
    precision = np.linalg.inv(centred.T @ centred / (len(centred) - 1))
    x = RNG.normal(size=(7, 6))
    expected = [min(float((v - m) @ precision @ (v - m)) for m in means) for v in x]
    np.testing.assert_allclose(part.raw(x), expected, rtol=1e-8)


@pytest.mark.parametrize("make,expected", [(lambda: domain.value("x", "as is"), [0.0, 3.0, 9.0]),
                                           (lambda: domain.inverse("x", "few"), [1.0, 0.25, 0.1])],
                         ids=["value", "inverse"])
def test_per_sample_values_are_read_as_they_are_or_inverted(make, expected) -> None:
    counts = np.array([0.0, 3.0, 9.0], np.float32)
    guard = domain.DomainGuard([make()], "test", features=lambda X: {"x": X})
    np.testing.assert_allclose(guard.score(counts), expected, rtol=1e-6)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N"])
    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N"])])
    onx = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onx.ir_version = 8
    add_domain_output(onx, guard)
    np.testing.assert_allclose(_run(onx, counts), expected, rtol=1e-6)
