"""Hostile-input generators derived from a manifest's input contract, and the outcome check."""

from __future__ import annotations

import medinfer
import numpy as np

DTYPES = ["float32", "float64", "float16", "int8", "int16", "int64", "uint8", "bool", "complex64", "object", "U3"]

PATTERNS = ["valid", "nan", "posinf", "neginf", "above", "below", "huge", "bounds", "zeros"]

SHAPES = ["ok", "single", "empty", "extra_axis", "missing_axis", "wrong_dim", "big_batch", "scalar"]


def numeric_case(spec, draw_shape: str, dtype: str, pattern: str, batch: int, seed: int):
    rng = np.random.default_rng(seed)
    fixed = [d if isinstance(d, int) else None for d in spec.shape]
    dims = [batch if d is None and i == 0 else (d if d is not None else int(rng.integers(1, 6)))
            for i, d in enumerate(fixed)]
    if draw_shape == "single":
        dims = dims[1:]
    elif draw_shape == "empty":
        dims[0] = 0
    elif draw_shape == "extra_axis":
        dims = dims + [2]
    elif draw_shape == "missing_axis":
        dims = dims[:-1] or [1]
    elif draw_shape == "wrong_dim":
        dims[-1] = dims[-1] + 1
    elif draw_shape == "big_batch":
        dims[0] = 4096 if np.prod(dims[1:]) <= 1024 else 64
    elif draw_shape == "scalar":
        dims = []
    lo, hi = spec.range if spec.range else (-1e3, 1e3)
    lo, hi = max(lo, -1e4), min(hi, 1e4)
    x = rng.uniform(lo, hi, size=dims) if dims else np.float64(rng.uniform(lo, hi))
    x = np.asarray(x)
    if x.size:
        flat = x.reshape(-1)
        k = int(rng.integers(0, flat.size))
        span = (spec.range[1] - spec.range[0]) if spec.range else 1e3
        flat[k] = {"nan": np.nan, "posinf": np.inf, "neginf": -np.inf,
                   "above": (spec.range[1] + 1 + span) if spec.range else 1e30,
                   "below": (spec.range[0] - 1 - span) if spec.range else -1e30,
                   "huge": 3e38, "bounds": lo, "zeros": 0.0}.get(pattern, flat[k])
        if pattern == "zeros":
            x = np.zeros_like(x)
    try:
        with np.errstate(all="ignore"):
            return x.astype(dtype)
    except (ValueError, OverflowError):
        return x


def strings_case(texts: list, shape: str):
    if shape == "scalar":
        return texts[0] if texts else ""
    if shape == "empty":
        return []
    if shape == "extra_axis":
        return np.array([[t, t] for t in texts], dtype=object)
    return texts


def check_outcome(model, x, reference=None) -> None:
    try:
        pred = model.predict(x)
    except medinfer.MedinferError:
        return  # a typed, worded refusal is a correct outcome
    scores = np.asarray(pred.scores, dtype=np.float64)
    assert np.isfinite(scores).all(), "a prediction must never carry NaN/inf scores"
    if model.manifest.task != "regression":
        assert ((scores >= -1e-6) & (scores <= 1 + 1e-6)).all()
        assert pred.labels is not None and set(pred.labels) <= set(model.manifest.labels)
    if reference is not None:
        np.testing.assert_allclose(pred.scores, reference(x), atol=1e-5)
