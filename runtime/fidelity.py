"""Fidelity of an explanation, measured: deletion and insertion curves (numpy only).

For one sample, the features an explanation ranks are removed (set to the method's baseline, see
:mod:`medinfer.explain_perturb`) in the order of their attributions, most positive first, and the explained score is
recomputed after each share of them (deletion); insertion starts from every feature removed and puts them back in
the same order. The same is done in random orders. A faithful explanation makes the score fall faster on deletion
and rise faster on insertion than random orders do: the **area between the curves** (random minus attribution for
deletion, attribution minus random for insertion; fraction of features on the x axis, the score's units on the y
axis) is positive. Each sample's curves are scored in one batched call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .explain import Explainer

POINTS = 11  # 0 %, 10 %, ..., 100 % of the ranked features
RANDOM_ORDERS = 5
SEED = 31


def area(y: np.ndarray, x: np.ndarray) -> float:
    """Trapezoidal area under ``y`` over ``x`` (numpy's trapz/trapezoid, whose name changed between versions)."""
    y, x = np.asarray(y, np.float64), np.asarray(x, np.float64)
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2.0)


def sample_curves(score: Callable[[np.ndarray], np.ndarray], attributions: np.ndarray, candidates: np.ndarray,
                  n_features: int, rng: np.random.Generator, *, points: int = POINTS,
                  random_orders: int = RANDOM_ORDERS) -> dict[str, np.ndarray]:
    """Deletion and insertion curves of one sample.

    Args:
        score: masks (K, n_features) bool, True = removed -> the explained score of each perturbed copy (K,).
        attributions: the sample's attribution per feature (n_features,).
        candidates: the features ranked (e.g. the words a text contains); the others are never removed.
        n_features: the length of the masks.
        rng: the generator of the random orders.

    Returns:
        ``{"deletion": (points,), "deletion_random": (points,), "insertion": ..., "insertion_random": ...}``, the
        random curves averaged over ``random_orders`` orders.
    """
    candidates = np.asarray(candidates, np.int64)
    m = len(candidates)
    ks = np.round(np.linspace(0, 1, points) * m).astype(np.int64)
    values = np.asarray(attributions, np.float64)[candidates]
    orders = [candidates[np.argsort(-values, kind="stable")]] + [rng.permutation(candidates)
                                                                 for _ in range(random_orders)]
    masks = np.zeros((len(orders), 2, points, n_features), dtype=bool)
    for o, order in enumerate(orders):
        for p, k in enumerate(ks):
            masks[o, 0, p, order[:k]] = True  # deletion: the first k removed
            masks[o, 1, p, order[k:]] = True  # insertion: all but the first k removed
    got = np.asarray(score(masks.reshape(-1, n_features)), np.float64).reshape(len(orders), 2, points)
    return {"deletion": got[0, 0], "deletion_random": got[1:, 0].mean(axis=0),
            "insertion": got[0, 1], "insertion_random": got[1:, 1].mean(axis=0)}


def summarize(curves: list[dict[str, np.ndarray]], *, units: str = "", method: str = "") -> dict[str, Any]:
    """Mean curves, areas and the area between the curves over samples (JSON-ready).

    ``deletion_gain`` = area(random deletion) - area(attribution deletion); ``insertion_gain`` = area(attribution
    insertion) - area(random insertion); ``gain`` = their sum, per sample; its mean with a normal 95 % CI and the
    share of samples whose gain is positive. The explanation beats random order when the mean gain is > 0.
    """
    x = np.linspace(0, 1, len(curves[0]["deletion"])) if curves else np.zeros(0)
    per = {k: np.array([area(c[k], x) for c in curves]) for k in
           ("deletion", "deletion_random", "insertion", "insertion_random")}
    dgain = per["deletion_random"] - per["deletion"]
    igain = per["insertion"] - per["insertion_random"]
    gain = dgain + igain
    n = len(gain)
    half = 1.96 * float(gain.std(ddof=1)) / np.sqrt(n) if n > 1 else float("nan")

    def mean_curve(key: str) -> list[float]:
        return [round(float(v), 6) for v in np.mean([c[key] for c in curves], axis=0)] if curves else []

    return {
        "n": n, "method": method, "units": units, "points": len(x),
        "fractions": [round(float(v), 4) for v in x],
        "curves": {k: mean_curve(k) for k in ("deletion", "deletion_random", "insertion", "insertion_random")},
        "area": {k: round(float(v.mean()), 6) if n else None for k, v in per.items()},
        "deletion_gain": round(float(dgain.mean()), 6) if n else None,
        "insertion_gain": round(float(igain.mean()), 6) if n else None,
        "gain": round(float(gain.mean()), 6) if n else None,
        "gain_ci95": [round(float(gain.mean()) - half, 6), round(float(gain.mean()) + half, 6)] if n > 1 else None,
        "share_better": round(float(np.mean(gain > 0)), 4) if n else None,
        "random_orders": RANDOM_ORDERS, "seed": SEED,
        "rule": "features removed in attribution order (most positive first) vs random orders; gain = area between "
                "the deletion curves (random - attribution) + between the insertion curves (attribution - random)",
    }


def measure(explainer: Explainer, feeds: dict[str, np.ndarray], *, seed: int = SEED) -> dict[str, Any]:
    """Deletion and insertion curves of ``explainer`` on the samples of ``feeds`` (validated inputs), summarized
    (:func:`summarize`). The y axis is the model's score (the explained class's probability, or a regression's
    value), whatever the attributions' own units."""
    explanation = explainer.explain(feeds)
    rng = np.random.default_rng(seed)
    curves = []
    for i in range(len(explanation)):
        candidates, score = explainer.remover(feeds, i, explanation)
        if len(candidates):
            curves.append(sample_curves(score, explanation.values[i], candidates, explanation.values.shape[1], rng))
    units = explanation.units if explainer.subject.task == "regression" else "probability"
    return summarize(curves, units=units, method=explanation.method)
