"""Domain-guard parts where physics or the data format decides, and the cheap statistics the guards are built from.

Rules (``rule=True``: a declared limit, no calibration; see :mod:`medinfer.train.domain`):
- ``bound``: each feature within [lo, hi] (e.g. a scaled gene never below its zero-expression value);
- ``window_sum``: the totals of features of a sequence over any ``steps`` consecutive steps (e.g. insulin per hour);
- ``identities``: linear identities the features obey for every real sample (e.g. RDKit's surface-area
  descriptor families all sum to the same total).

Calibrated statistics:
- ``bound`` without ``rule``: how far a value lies beyond the training range, relative to the range;
- ``floor_share_residual``: the share of features at their floor against what the latent state predicts for it
  (dropouts, and profiles too uniform or too sparse for their cell type);
- ``zscore``: the largest |z-score| of selected per-sample statistics;
- ``at_bounds``: the share of a sequence's steps where one feature sits at a bound (a sensor pinned at its floor).

Each kind's native statistic (float64) is registered in :data:`medinfer.train.domain.KINDS`; the graph's
(``medinfer.export.domain_rules_graph``) is checked against it by the parity gate.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .domain import KINDS, Part

BIG = 1.0e30  # a bound that does not apply (finite, so that the graph's float32 arithmetic stays finite)


def bound(source: str, lo: np.ndarray | None, hi: np.ndarray | None, width: np.ndarray, label: str, *,
          rule: bool = False, min_scale: float = 0.0) -> Part:
    """Per feature (last axis), how far a value lies below ``lo`` or above ``hi``, relative to ``width``; the part's
    statistic is the largest over features (and steps). ``None`` or non-finite bounds do not apply."""
    inv = 1.0 / np.asarray(width, dtype=np.float64)
    n = len(inv)

    def scaled(b: np.ndarray | None, sign: float) -> np.ndarray:
        v = np.full(n, sign * BIG) if b is None else np.asarray(b, dtype=np.float64) * inv
        return np.where(np.isfinite(v), v, sign * BIG)

    return Part("bound", source, {"inv_width": inv, "lo": scaled(lo, -1.0), "hi": scaled(hi, 1.0)}, label=label,
                rule=rule, min_scale=min_scale)


def _bound(p: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    z = x.reshape(len(x), -1, len(p["inv_width"])) * p["inv_width"]
    return np.maximum((p["lo"] - z).max(axis=(1, 2)), (z - p["hi"]).max(axis=(1, 2)))


def window_sum(source: str, features: Sequence[int], steps: int, limits: Sequence[float], label: str) -> Part:
    """Rule: the total of each of ``features`` over any ``steps`` consecutive steps of a (N, T, F) sequence (all T
    steps when T < steps) is at most its limit."""
    return Part("window_sum", source, {"features": np.asarray(features, np.int64), "steps": np.array([steps]),
                                       "inv_limits": 1.0 / np.asarray(limits, np.float64)}, label=label, rule=True)


def _window_sum(p: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    f = x[:, :, p["features"]]
    c = np.cumsum(f, axis=1)
    w = int(p["steps"][0])
    sums = np.concatenate([c[:, :w], c[:, w:] - c[:, :-w]], axis=1) * p["inv_limits"]
    return sums.max(axis=(1, 2)) - 1.0


def identities(source: str, coefficients: np.ndarray, tolerance: np.ndarray, label: str) -> Part:
    """Rule: ``|x @ coefficients[:, i]| <= tolerance[i]`` for every identity ``i`` (columns of ``coefficients``)."""
    a = np.asarray(coefficients, dtype=np.float64) / np.asarray(tolerance, dtype=np.float64)[None, :]
    return Part("identities", source, {"scaled": a}, label=label, rule=True)


def _identities(p: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    return np.abs(x.reshape(len(x), -1) @ p["scaled"]).max(axis=1) - 1.0


def identity_columns(names: Sequence[str], groups: Sequence[tuple[Sequence[str], Sequence[str]]]) -> np.ndarray:
    """Coefficient columns for identities ``sum(left) == sum(right)`` over named features (groups whose names are
    not all present are skipped)."""
    index = {n: i for i, n in enumerate(names)}
    cols = []
    for left, right in groups:
        if not left or not right or any(n not in index for n in (*left, *right)):
            continue
        c = np.zeros(len(names))
        c[[index[n] for n in left]] += 1.0
        c[[index[n] for n in right]] -= 1.0
        cols.append(c)
    return np.stack(cols, axis=1) if cols else np.zeros((len(names), 0))


def floor_share_residual(source: str, latent: str, X: np.ndarray, Z: np.ndarray, label: str,
                         eps: float = 1e-6) -> Part:
    """|share of features at their training floor - the share a linear model of the latent ``Z`` predicts|, in
    units of that model's residual SD on the training data (fitted here, training data only)."""
    x = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    floor = x.min(axis=0) + eps
    share = (x <= floor).mean(axis=1)
    design = np.column_stack([np.asarray(Z, np.float64), np.ones(len(x))])
    coef = np.linalg.lstsq(design, share, rcond=None)[0]
    sigma = max(float(np.std(share - design @ coef)), 1e-6)
    return Part("floor_share_residual", source, {"floor": floor, "beta": coef[:-1], "intercept": coef[-1:],
                                                 "inv_sigma": np.array([1.0 / sigma])}, label=label, more=(latent,))


def _floor_share_residual(p: dict[str, np.ndarray], x: np.ndarray, z: np.ndarray) -> np.ndarray:
    share = (x.reshape(len(x), -1) <= p["floor"]).mean(axis=1)
    return np.abs(share - (z.reshape(len(z), -1) @ p["beta"] + p["intercept"][0])) * p["inv_sigma"][0]


def zscore(source: str, X: np.ndarray, columns: Sequence[int], label: str) -> Part:
    """The largest |z-score| of the selected columns of a per-sample statistics table (training mean and SD)."""
    cols = np.asarray(columns, dtype=np.int64)
    table = np.asarray(X, dtype=np.float64)[:, cols]
    return Part("zscore", source, {"columns": cols, "mean": table.mean(axis=0),
                                   "inv_sd": 1.0 / np.maximum(table.std(axis=0), 1e-9)}, label=label)


def _zscore(p: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    return (np.abs(x[:, p["columns"]] - p["mean"]) * p["inv_sd"]).max(axis=1)


def at_bounds(source: str, feature: int, low: float, high: float, label: str, min_scale: float = 0.0) -> Part:
    """The share of a (N, T, F) sequence's steps where ``feature`` is at or below ``low`` or at or above ``high``
    (e.g. a sensor pinned at the floor or ceiling of what it can report)."""
    return Part("at_bounds", source, {"feature": np.array([feature]), "low": np.array([float(low)]),
                                      "high": np.array([float(high)])}, label=label, min_scale=min_scale)


def _at_bounds(p: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    f = x[:, :, int(p["feature"][0])]
    return ((f <= p["low"][0]) | (f >= p["high"][0])).mean(axis=1)


KINDS.update(bound=_bound, window_sum=_window_sum, identities=_identities,
             floor_share_residual=_floor_share_residual, zscore=_zscore, at_bounds=_at_bounds)
