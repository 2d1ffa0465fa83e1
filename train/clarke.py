"""Clarke error grid (Clarke et al., Diabetes Care 10:622, 1987): clinical accuracy zones of glucose estimates.

Zone A: within 20 % of the reference (or both hypoglycaemic, < 70 mg/dL) — clinically accurate.
Zone B: outside 20 % but benign. Zone C: would lead to unnecessary treatment. Zone D: a dangerous failure to
detect hypo- or hyperglycaemia. Zone E: would confuse treatment of hypo- with hyperglycaemia (erroneous).
The boundaries follow the usual published implementation (mg/dL).
"""

from __future__ import annotations

from typing import Any

import numpy as np

ZONES = ("A", "B", "C", "D", "E")


def zones(reference: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """The zone letter of each (reference, predicted) pair, both in mg/dL.

    Raises:
        ValueError: the two arrays differ in length.
    """
    ref = np.asarray(reference, dtype=np.float64).reshape(-1)
    pred = np.asarray(predicted, dtype=np.float64).reshape(-1)
    if ref.shape != pred.shape:
        raise ValueError(f"reference has {ref.size} values but predicted has {pred.size}; pass paired values")
    a = ((ref <= 70) & (pred <= 70)) | ((pred >= 0.8 * ref) & (pred <= 1.2 * ref))
    e = ((ref >= 180) & (pred <= 70)) | ((ref <= 70) & (pred >= 180))
    c = (((ref >= 70) & (ref <= 290)) & (pred >= ref + 110)) | (
        ((ref >= 130) & (ref <= 180)) & (pred <= (7.0 / 5.0) * ref - 182))
    d = ((ref >= 240) & (pred >= 70) & (pred <= 180)) | ((ref <= 175.0 / 3.0) & (pred >= 70) & (pred <= 180)) | (
        (ref >= 175.0 / 3.0) & (ref <= 70) & (pred >= (6.0 / 5.0) * ref))
    out = np.full(ref.shape, "B", dtype="<U1")
    out[d] = "D"
    out[c & ~d] = "C"
    out[e] = "E"
    out[a] = "A"
    return out


def zone_percentages(reference: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Percentage of pairs in each zone (A-E), summing to 100."""
    z = zones(reference, predicted)
    n = max(len(z), 1)
    return {k: float(100.0 * np.sum(z == k) / n) for k in ZONES}


def summary(reference: np.ndarray, predicted: np.ndarray, baseline: np.ndarray | None = None) -> dict[str, Any]:
    """Zone percentages of a forecast (and of a baseline forecast), plus A+B, for the training report."""
    out: dict[str, Any] = {"model": zone_percentages(reference, predicted)}
    out["model"]["A+B"] = out["model"]["A"] + out["model"]["B"]
    if baseline is not None:
        out["baseline"] = zone_percentages(reference, baseline)
        out["baseline"]["A+B"] = out["baseline"]["A"] + out["baseline"]["B"]
    return out
