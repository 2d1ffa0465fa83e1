"""Held-out metrics with percentile-bootstrap 95 % confidence intervals, and the baselines they must beat."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from medinfer.decision import DEFAULT_THRESHOLD

N_BOOT = 1000
MetricFn = Callable[[np.ndarray, np.ndarray], float]


def bootstrap(
    fn: MetricFn, y: np.ndarray, s: np.ndarray, *, n_boot: int = N_BOOT, seed: int = 0
) -> dict[str, Any]:
    """Point estimate and percentile-bootstrap 95 % CI of ``fn(y, s)``.

    Resamples in which the metric is undefined (e.g. one class only for ROC-AUC) are skipped; the number used
    is reported so a thin CI is visible as such.
    """
    y = np.asarray(y)
    s = np.asarray(s)
    value = float(fn(y, s))
    rng = np.random.default_rng(seed)
    n = len(y)
    stats = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        try:
            v = fn(y[idx], s[idx])
        except ValueError:
            continue
        if np.isfinite(v):
            stats.append(v)
    if len(stats) < n_boot // 2:
        return {"value": value, "ci95": None}
    lo, hi = np.percentile(stats, [2.5, 97.5])
    return {"value": value, "ci95": [float(lo), float(hi)]}


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if len(np.unique(y)) < 2:
        raise ValueError("one class")
    return float(roc_auc_score(y, s))


def binary_metrics(y: np.ndarray, scores: np.ndarray, threshold: float | None, seed: int = 0) -> dict[str, Any]:
    """ROC-AUC, accuracy, sensitivity, specificity (at ``threshold``, the runtime's decision rule) with CIs;
    majority-class baseline.

    Args:
        y: the true outcome per sample, 1 for the positive class (``ModelSpec.outcome(y)`` of class indices).
        scores: the positive class's score per sample.
    """
    y = np.asarray(y).astype(int)
    threshold = DEFAULT_THRESHOLD if threshold is None else float(threshold)

    def acc(yy: np.ndarray, ss: np.ndarray) -> float:
        return float(np.mean((ss >= threshold).astype(int) == yy))

    def sens(yy: np.ndarray, ss: np.ndarray) -> float:
        pos = yy == 1
        if not pos.any():
            raise ValueError("no positives")
        return float(np.mean(ss[pos] >= threshold))

    def spec(yy: np.ndarray, ss: np.ndarray) -> float:
        neg = yy == 0
        if not neg.any():
            raise ValueError("no negatives")
        return float(np.mean(ss[neg] < threshold))

    heldout = {
        "roc_auc": bootstrap(_auc, y, scores, seed=seed),
        "accuracy": bootstrap(acc, y, scores, seed=seed),
        "sensitivity": bootstrap(sens, y, scores, seed=seed),
        "specificity": bootstrap(spec, y, scores, seed=seed),
    }
    majority = int(np.mean(y) >= 0.5)
    const = np.full(len(y), float(majority))
    baseline = {
        "roc_auc": {"value": 0.5, "ci95": None},
        "accuracy": bootstrap(lambda yy, ss: float(np.mean(yy == majority)), y, const, seed=seed),
    }
    return {
        "heldout": heldout,
        "baseline": {"name": f"majority class ({'positive' if majority else 'negative'})", "heldout": baseline},
        "n_test": int(len(y)),
        "method": f"percentile bootstrap, {N_BOOT} resamples, seed {seed}",
    }


def multiclass_metrics(y: np.ndarray, proba: np.ndarray, labels: tuple[str, ...], seed: int = 0) -> dict[str, Any]:
    """Accuracy and macro-F1 with CIs (plus macro one-vs-rest ROC-AUC); majority-class baseline."""
    y = np.asarray(y).astype(int)
    k = len(labels)
    pred = np.argmax(proba, axis=1)

    def acc(yy: np.ndarray, pp: np.ndarray) -> float:
        return float(np.mean(yy == pp))

    def f1(yy: np.ndarray, pp: np.ndarray) -> float:
        # macro-F1 over all k labels (sklearn's average="macro", zero_division=0), in numpy: it runs 2000
        # times per bootstrap, where f1_score's input checking dominated the training time.
        conf = np.bincount(yy * k + pp, minlength=k * k).reshape(k, k)
        tp = np.diag(conf).astype(np.float64)
        denom = conf.sum(axis=0) + conf.sum(axis=1)
        scores = np.divide(2 * tp, denom, out=np.zeros(k), where=denom > 0)
        return float(scores.mean())

    majority = int(np.bincount(y, minlength=k).argmax())
    const = np.full(len(y), majority)
    return {
        "heldout": {"accuracy": bootstrap(acc, y, pred, seed=seed), "macro_f1": bootstrap(f1, y, pred, seed=seed)},
        "baseline": {
            "name": f"majority class ({labels[majority]})",
            "heldout": {"accuracy": bootstrap(acc, y, const, seed=seed),
                        "macro_f1": bootstrap(f1, y, const, seed=seed)},
        },
        "n_test": int(len(y)),
        "method": f"percentile bootstrap, {N_BOOT} resamples, seed {seed}",
    }


def regression_metrics(
    y: np.ndarray, pred: np.ndarray, baseline_pred: np.ndarray, baseline_name: str, seed: int = 0
) -> dict[str, Any]:
    """RMSE and MAE with CIs, and the same for a baseline forecast."""

    def rmse(yy: np.ndarray, pp: np.ndarray) -> float:
        return float(np.sqrt(np.mean((yy - pp) ** 2)))

    def mae(yy: np.ndarray, pp: np.ndarray) -> float:
        return float(np.mean(np.abs(yy - pp)))

    return {
        "heldout": {"rmse": bootstrap(rmse, y, pred, seed=seed), "mae": bootstrap(mae, y, pred, seed=seed)},
        "baseline": {
            "name": baseline_name,
            "heldout": {"rmse": bootstrap(rmse, y, baseline_pred, seed=seed),
                        "mae": bootstrap(mae, y, baseline_pred, seed=seed)},
        },
        "n_test": int(len(y)),
        "method": f"percentile bootstrap, {N_BOOT} resamples, seed {seed}",
    }
