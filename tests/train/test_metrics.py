from __future__ import annotations

import numpy as np
import pytest
from medinfer.train.metrics import binary_metrics, bootstrap, multiclass_metrics, regression_metrics


@pytest.mark.parametrize("seed", range(5))
def test_macro_f1_matches_sklearn(seed: int) -> None:
    from sklearn.metrics import accuracy_score, f1_score

    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 8))
    y = rng.integers(0, k, 200)
    proba = rng.random((200, k))
    proba[np.arange(200), y] += rng.random(200) * 2
    m = multiclass_metrics(y, proba, tuple(str(i) for i in range(k)))
    pred = proba.argmax(1)
    assert m["heldout"]["macro_f1"]["value"] == pytest.approx(
        f1_score(y, pred, average="macro", labels=list(range(k)), zero_division=0))
    assert m["heldout"]["accuracy"]["value"] == pytest.approx(accuracy_score(y, pred))
    lo, hi = m["heldout"]["macro_f1"]["ci95"]
    assert lo <= m["heldout"]["macro_f1"]["value"] <= hi


def test_binary_metrics_and_baseline() -> None:
    y = np.array([0, 0, 0, 1, 1, 0, 1, 0, 0, 1] * 10)
    s = np.where(y == 1, 0.8, 0.2)
    s[:3] = 0.9  # three false positives
    m = binary_metrics(y, s, 0.5)
    assert m["heldout"]["sensitivity"]["value"] == 1.0
    assert m["heldout"]["specificity"]["value"] == pytest.approx(57 / 60)
    assert m["baseline"]["heldout"]["accuracy"]["value"] == pytest.approx(0.6)
    assert m["heldout"]["roc_auc"]["ci95"][0] <= m["heldout"]["roc_auc"]["value"]


def test_regression_metrics() -> None:
    y = np.arange(10, dtype=float)
    m = regression_metrics(y, y + 1.0, y + 2.0, "persistence")
    assert m["heldout"]["rmse"]["value"] == pytest.approx(1.0)
    assert m["baseline"]["heldout"]["mae"]["value"] == pytest.approx(2.0)


def test_bootstrap_skips_undefined_resamples() -> None:
    def needs_two(y, s):
        if len(np.unique(y)) < 2:
            raise ValueError("one class")
        return float(np.mean(y))

    y = np.array([0, 1, 0, 1, 0, 1])
    out = bootstrap(needs_two, y, y.astype(float), n_boot=200)
    assert out["value"] == 0.5 and out["ci95"] is not None
    thin = bootstrap(needs_two, np.array([0, 1]), np.array([0.0, 1.0]), n_boot=200)
    assert thin["ci95"] is None  # about half the resamples are undefined: no CI rather than a false one
