"""The one decision rule (medinfer.decision): per sample, never over the batch; the same in training and runtime."""

from __future__ import annotations

from pathlib import Path

import medinfer
import numpy as np
import pytest
from medinfer.decision import DEFAULT_THRESHOLD, decide, score_column, scores_of

from ..helpers import tiny

X = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [3, 3, 3], [-1, -1, -1]], dtype=np.float32)


def test_single_sigmoid_binary_bundle_without_a_threshold_decides_each_row_at_one_half(tmp_path: Path) -> None:
    model = medinfer.load(tiny.build_sigmoid(tmp_path / "s", threshold=None))
    assert model.manifest.decision.threshold is None
    pred = model.predict(X)
    expected_scores = tiny.sigmoid_reference(X)[:, 0]
    np.testing.assert_allclose(pred.scores, expected_scores, atol=1e-6)
    expected = np.where(expected_scores >= DEFAULT_THRESHOLD, "positive", "negative")
    assert list(pred.labels) == list(expected)
    assert {"positive", "negative"} == set(pred.labels)  # both outcomes occur: not one label for the batch
    one = model.predict(X[1])  # a single sample gets the same answer as inside the batch
    assert one.label == expected[1] and one.score == pytest.approx(expected_scores[1])


def test_a_declared_threshold_moves_the_decision(tmp_path: Path) -> None:
    model = medinfer.load(tiny.build_sigmoid(tmp_path / "s", threshold=0.7))
    scores = tiny.sigmoid_reference(X)[:, 0]
    assert list(model.predict(X).labels) == list(np.where(scores >= 0.7, "positive", "negative"))


def test_rules() -> None:
    two = np.array([[0.9, 0.1], [0.2, 0.8]], np.float32)
    assert score_column("binary_classification", ("neg", "pos"), "pos", ("N", 2)) == 1
    assert score_column("binary_classification", ("pos", "neg"), "pos", ("N", 2)) == 0
    assert score_column("binary_classification", ("neg", "pos"), "pos", ("N", 1)) is None
    assert list(scores_of("binary_classification", two, 1)) == [np.float32(0.1), np.float32(0.8)]
    assert list(decide("binary_classification", np.array([0.5, 0.49]), None, positive=1)) == [1, 0]
    assert list(decide("binary_classification", np.array([0.5, 0.49]), None, positive=0)) == [0, 1]
    probs = np.array([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1]])
    assert list(decide("multiclass_classification", probs)) == [1, 0]  # per row
    with pytest.raises(ValueError, match=r"must be \(N, classes\)"):
        decide("multiclass_classification", np.array([0.1, 0.7]))
    with pytest.raises(ValueError, match="binary score output has 3 columns"):
        score_column("binary_classification", ("neg", "pos"), "pos", ("N", 3))


def test_a_manifest_with_an_impossible_score_output_is_refused(tmp_path: Path) -> None:
    from medinfer.manifest import TensorSpec
    from medinfer.schema import to_json

    bad = tiny.contract()
    bad["outputs"] = to_json((TensorSpec("label", "int64", ("N",)), TensorSpec("probabilities", "float32", ("N", 3))))
    with pytest.raises(medinfer.ManifestError, match="decision.score_output.*3 columns"):
        tiny.build(tmp_path / "t", **{"outputs": bad["outputs"]})


def test_one_sample_is_decided_exactly_as_inside_a_batch() -> None:
    """The one-sample path of decide (a scalar comparison) agrees with the batch path at float32 neighbours of the
    threshold, for thresholds that float32 cannot represent exactly."""
    for threshold in (0.5, 0.2863, 0.1 + 1e-9, None):
        t = DEFAULT_THRESHOLD if threshold is None else threshold
        centre = np.float32(t)
        scores = np.array([np.nextafter(centre, np.float32(-1)), centre, np.nextafter(centre, np.float32(2)),
                           0.0, 1.0], dtype=np.float32)
        batch = decide("binary_classification", scores, threshold, positive=1)
        one = [int(decide("binary_classification", scores[i:i + 1], threshold, positive=1)[0])
               for i in range(len(scores))]
        assert one == batch.tolist()
        assert decide("binary_classification", scores[1:2], threshold, positive=0).tolist() == [1 - batch[1]]


def test_the_audit_summary_rounds_scores_like_numpy() -> None:
    from medinfer.audit import summary as _summary

    class Fake:  # a prediction's labels, scores and (no) domain scores: what the summary reads
        def __init__(self, scores: np.ndarray) -> None:
            self.labels, self.scores, self.domain_scores = None, scores, None

        def __len__(self) -> int:
            return len(self.scores)

    rng = np.random.default_rng(0)
    values = np.concatenate([rng.random(3000), rng.normal(0, 1e6, 100), [0.5, 2.5e-6, -3.000005, 1.000005]])
    for x in (values.astype(np.float32), values):
        for i in range(0, len(x), 16):
            part = x[i:i + 16]
            assert _summary(Fake(part))["scores"] == np.round(part.astype(np.float64), 5).tolist()
            assert _summary(Fake(part[:1]))["scores"] == np.round(part[:1].astype(np.float64), 5).tolist()
    odd = np.array([np.nan, np.inf, 1.0], np.float32)
    assert _summary(Fake(odd))["scores"][1:] == [np.inf, 1.0]  # non-finite values take numpy's own path


def test_the_audit_summary_of_one_domain_score_equals_the_batch_rule() -> None:
    """The one-sample fast path of the audit summary (Python's round) gives numpy's record for domain scores too."""
    from medinfer.audit import summary as _summary

    class Fake:
        def __init__(self, domain: np.ndarray, threshold: float) -> None:
            self.labels, self.scores, self.domain_scores = None, np.zeros(len(domain), np.float32), domain
            self.in_domain = domain <= np.float32(threshold)

        def __len__(self) -> int:
            return len(self.domain_scores)

    rng = np.random.default_rng(1)
    values = np.concatenate([rng.random(2000) * 3, [1.0, 0.999995, 1.000005, np.nan, np.inf, -np.inf]])
    for v in values.astype(np.float32):
        one = np.array([v], np.float32)
        got = _summary(Fake(one, 1.0))
        want = np.round(one.astype(np.float64), 5).tolist()
        assert got["domain_scores"] == want or (np.isnan(v) and np.isnan(got["domain_scores"][0])), v
        assert got["out_of_domain"] == int(np.sum(~(one <= np.float32(1.0)))), v
    batch = values.astype(np.float32)[-40:]  # a batch with NaN and infinities: numpy's own path, every sample counted
    got = _summary(Fake(batch, 1.0))
    assert got["out_of_domain"] == int(np.sum(~(batch <= np.float32(1.0))))
    np.testing.assert_array_equal(got["domain_scores"], np.round(batch[:16].astype(np.float64), 5))


def test_the_positive_class_is_the_declared_one_else_the_last_label_else_the_sigmoid_unit() -> None:
    from medinfer.decision import positive_index

    assert positive_index(["benign", "malignant"], "benign") == 0
    assert positive_index(["a", "b", "c"], None) == 2  # the last label
    assert positive_index(["a", "b", "c"], "not a label") == 2
    assert positive_index(None, None) == 1  # a sigmoid unit: its one column is class 1
    assert positive_index([], "anything") == 1


def test_in_domain_is_at_most_the_threshold_compared_in_float32() -> None:
    """THE applicability-domain rule: a score equal to the threshold is inside; the comparison is the graph's
    float32 one (0.1 as float32 lies above 0.1 as float64, and is still inside a 0.1 threshold)."""
    from medinfer.decision import in_domain

    scores = np.array([0.05, 0.1, 0.1000001, 7.0], dtype=np.float32)
    assert in_domain(scores, 0.1).tolist() == [True, True, False, False]
    assert float(np.float32(0.1)) > 0.1  # why float32: in float64 the second score would be outside
    assert in_domain(np.array([3.0], np.float32), 3.0).tolist() == [True]
    assert in_domain([2.5, 3.5], 3.0).tolist() == [True, False]  # a list reads like an array
