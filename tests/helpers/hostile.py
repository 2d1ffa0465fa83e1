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
    """``x`` must be answered: finite scores, labels from the manifest, equal to ``reference(x)`` when given."""
    pred = model.predict(x)
    scores = np.asarray(pred.scores, dtype=np.float64)
    assert np.isfinite(scores).all(), "a prediction must never carry NaN/inf scores"
    if model.manifest.task != "regression":
        assert ((scores >= -1e-6) & (scores <= 1 + 1e-6)).all()
        assert pred.labels is not None and set(pred.labels) <= set(model.manifest.labels)
    if reference is not None:
        np.testing.assert_allclose(pred.scores, reference(x), atol=1e-5)


# -- inputs that MUST be accepted (and equal the reference) or refused (with the right error) ---------------------
SAFE_DTYPES = ("float32", "float16")  # dtypes that cast to a float32 input without loss


def valid_from(pool: np.ndarray, rng: np.random.Generator, form: str) -> tuple[object, np.ndarray]:
    """A valid input drawn from ``pool`` (held-out samples): (what is passed, the float32 rows it means).

    ``form``: "batch" (a random subset), "single" (one sample, no batch axis), "float16" (a batch in float16, a
    safe cast). (Python lists of floats are float64, refused under the default ``cast="safe"``.)"""
    rows = pool[rng.choice(len(pool), size=int(rng.integers(1, min(len(pool), 8) + 1)), replace=False)]
    if form == "single":
        return rows[0], rows[:1]
    if form == "float16" and rows.dtype.kind == "f":
        half = rows.astype(np.float16)
        return half, half.astype(np.float32)
    return rows, rows


def invalid_cases(spec, pool: np.ndarray) -> dict[str, tuple[object, type]]:
    """Inputs every bundle of this contract must refuse, with the error class it must raise."""
    x = np.array(pool[:2], copy=True)
    cases: dict[str, tuple[object, type]] = {
        "empty batch": (x[:0], medinfer.InputError),
        "an extra axis": (x[..., None] if x.dtype.kind != "O" else np.stack([x, x], axis=-1), medinfer.InputError),
        "a mapping of unknown names": ({"nope": x}, medinfer.InputError),
    }
    if x.dtype.kind == "f":
        nan, inf, above = x.copy(), x.copy(), x.copy()
        nan.reshape(-1)[0] = np.nan
        inf.reshape(-1)[-1] = np.inf
        hi = spec.range[1] if spec.range else 1e30
        above.reshape(-1)[0] = np.float32(min(hi * 2 + 1, 3e38))
        wrong = np.concatenate([x, x[..., -1:]], axis=-1)
        cases.update({
            "NaN": (nan, medinfer.InputError), "infinity": (inf, medinfer.InputError),
            "above the declared range": (above, medinfer.InputError),
            "one feature too many": (wrong, medinfer.InputError),
            "float64 (lossy cast)": (x.astype(np.float64), medinfer.InputTypeError),
            "booleans": (x.astype(bool), medinfer.InputTypeError),
            "strings": (x.astype(str), medinfer.InputTypeError),
        })
    else:
        cases.update({
            "numbers for text": (np.ones((2, 1), np.float32), medinfer.InputTypeError),
            "NUL in a text": (["fine", "bad\x00"], medinfer.InputError),
            "lone surrogate": (["\ud800"], medinfer.InputError),
            "undecodable bytes": ([b"\xff\xfe"], medinfer.InputError),
        })
    return cases


def check_refused_or_right(model, x, reference=None) -> None:
    """Anything at all: a typed INPUT refusal, or an answer (equal to ``reference`` when given). A refusal of another
    kind (runtime, inference) means validation let something through that the graph then choked on."""
    try:
        pred = model.predict(x)
    except medinfer.InputError:
        return
    check_outcome(model, x, reference)
    assert pred is not None
