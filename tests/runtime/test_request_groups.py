"""medinfer.predict_grouped: requests that fit together run once; a refused request fails only itself."""

from __future__ import annotations

from pathlib import Path

import medinfer
import numpy as np

from ..helpers import tiny
from ..helpers.answers import assert_same_answers


def test_good_requests_share_one_run_and_a_bad_one_fails_alone(tiny_bundle_ro: Path) -> None:
    model = medinfer.load(tiny_bundle_ro)
    good = [tiny.GOLDEN_X[:1], tiny.GOLDEN_X[1:], np.zeros(3, np.float32)]
    bad = np.full((1, 3), 50, np.float32)  # outside the declared range
    results = medinfer.predict_grouped(model, [good[0], bad, good[1], "text", good[2]])
    assert isinstance(results[1], medinfer.InputError) and "outside the declared range" in str(results[1])
    assert isinstance(results[3], medinfer.InputTypeError)
    for got, x in zip([results[0], results[2], results[4]], good):
        expected = model.predict(x)  # run in another batch: within the bundle's stated tolerance
        assert_same_answers(model, got.scores, got.labels, expected)
        assert got.single == expected.single
    assert results[4].single and results[4].label == model.predict(good[2]).label


def test_requests_of_different_sequence_lengths_each_get_their_answer(tmp_path: Path) -> None:
    model = medinfer.load(tiny.build_sequence(tmp_path / "seq"))
    items = [np.full((1, t, 2), t / 10, np.float32) for t in (8, 12, 30, 8)]
    results = medinfer.predict_grouped(model, items)
    assert [float(r.scores[0]) for r in results] == [np.float32(t / 10) for t in (8, 12, 30, 8)]


def test_a_batch_refused_at_run_time_is_retried_alone(tiny_bundle_ro: Path, monkeypatch) -> None:
    """A failure only the joined batch meets (e.g. a memory bound): each request then runs on its own."""
    model = medinfer.load(tiny_bundle_ro)
    real = model.predict

    def refuse_batches(x, **kw):
        if len(x) > 1:
            raise medinfer.InferenceError("joined batch refused (test)")
        return real(x, **kw)

    monkeypatch.setattr(model, "predict", refuse_batches)
    results = medinfer.predict_grouped(model, [tiny.GOLDEN_X[:1], tiny.GOLDEN_X[1:2]])
    assert all(isinstance(r, medinfer.Prediction) for r in results)
