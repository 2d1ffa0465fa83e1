"""The same answer on another path: scores within the bundle's own tolerance, labels equal.

Two sessions of one graph may sum in another order when the batch size, the thread count or the process differs
(a micro-batch in serve, a partition in score, a request grouped with others): float32 scores can then differ in
the last bits on some CPUs. The tolerance is the one the manifest states for exactly that (the golden self-test's
``atol``: its bound for the same graph in another session); a label may differ only where the scores are within
that tolerance of the decision (the threshold, or the runner-up class).
"""

from __future__ import annotations

from typing import Any

import medinfer
import numpy as np


def tolerance(model: medinfer.Model) -> float:
    """The manifest's stated tolerance for this graph computed by another session."""
    atol = model.manifest.variants[model.variant].golden_atol
    return float(atol if atol is not None else model.manifest.golden.atol)


def assert_same_answers(model: medinfer.Model, scores: Any, labels: Any, expected: medinfer.Prediction) -> None:
    """``scores``/``labels`` (from another path) are ``expected``'s within the manifest's tolerance."""
    atol = tolerance(model)
    want = np.asarray(expected.scores, np.float64)
    got = np.asarray(scores, np.float64).reshape(want.shape)
    np.testing.assert_allclose(got, want, rtol=0, atol=atol)
    if labels is None or expected.labels is None:
        return
    if want.ndim == 2:  # multiclass: a near tie between the top two classes
        top = np.sort(want, axis=1)
        near = top[:, -1] - top[:, -2] <= 2 * atol
    else:
        threshold = model.manifest.decision.threshold if model.manifest.decision is not None else None
        near = np.abs(want - (0.5 if threshold is None else threshold)) <= atol
    same = np.array([str(a) == str(b) for a, b in zip(labels, expected.labels)])
    assert len(same) == len(expected.labels) and bool(np.all(same | near)), (list(labels), list(expected.labels))
