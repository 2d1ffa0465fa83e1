"""Property-based hostile inputs: every case ends in a correct prediction or a typed error — no crash, no hang,
no silent nonsense. Strategies are derived from each bundle's manifest, so every registered model is covered."""

from __future__ import annotations

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
import medinfer  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from medinfer.train import registry  # noqa: E402

from . import tiny  # noqa: E402

DTYPES = ["float32", "float64", "float16", "int8", "int16", "int64", "uint8", "bool", "complex64", "object", "U3"]
PATTERNS = ["valid", "nan", "posinf", "neginf", "above", "below", "huge", "bounds", "zeros"]
SHAPES = ["ok", "single", "empty", "extra_axis", "missing_axis", "wrong_dim", "big_batch", "scalar"]


def _numeric_case(spec, draw_shape: str, dtype: str, pattern: str, batch: int, seed: int):
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


def _strings_case(texts: list, shape: str):
    if shape == "scalar":
        return texts[0] if texts else ""
    if shape == "empty":
        return []
    if shape == "extra_axis":
        return np.array([[t, t] for t in texts], dtype=object)
    return texts


def _check(model, x, reference=None) -> None:
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


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=st.sampled_from(SHAPES), dtype=st.sampled_from(DTYPES), pattern=st.sampled_from(PATTERNS),
       batch=st.integers(1, 5), seed=st.integers(0, 2**31 - 1))
def test_hostile_numbers_tiny(tiny_bundle_ro, shape, dtype, pattern, batch, seed) -> None:
    model = medinfer.load(tiny_bundle_ro, self_test=False)
    x = _numeric_case(model.manifest.inputs[0], shape, dtype, pattern, batch, seed)

    def reference(arr):
        a = np.asarray(arr, dtype=np.float32)
        return tiny.reference(a.reshape(-1, 3))[:, 1]

    _check(model, x, reference)


MODELS = registry.names()


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_hostile_inputs_every_bundle(built, name: str) -> None:
    _, path = built(name)
    model = medinfer.load(path, self_test=False)
    spec = model.manifest.inputs[0]
    if spec.dtype == "string":
        text = st.one_of(st.text(max_size=200), st.binary(max_size=64), st.just("\x00"), st.just("\ud800"),
                         st.just("a" * 100_000), st.integers(), st.none())

        @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(texts=st.lists(text, min_size=0, max_size=4), shape=st.sampled_from(["ok", "scalar", "empty",
                                                                                    "extra_axis"]))
        def run(texts, shape) -> None:
            _check(model, _strings_case(texts, shape))
    else:

        @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(shape=st.sampled_from(SHAPES), dtype=st.sampled_from(DTYPES), pattern=st.sampled_from(PATTERNS),
               batch=st.integers(1, 3), seed=st.integers(0, 2**31 - 1))
        def run(shape, dtype, pattern, batch, seed) -> None:
            _check(model, _numeric_case(spec, shape, dtype, pattern, batch, seed))

    run()
