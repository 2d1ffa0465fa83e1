"""Hostile inputs on the tiny bundle: valid inputs MUST be accepted and equal the numpy reference; each invalid
class MUST be refused with its error class; anything else ends in a typed input refusal or a correct answer."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
import medinfer  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from ..helpers import tiny  # noqa: E402
from ..helpers.hostile import (  # noqa: E402
    DTYPES,
    PATTERNS,
    SHAPES,
    check_outcome,
    check_refused_or_right,
    invalid_cases,
    numeric_case,
    valid_from,
)

POOL = np.random.default_rng(7).uniform(-9.9, 9.9, size=(64, 3)).astype(np.float32)


def _reference(rows: np.ndarray):
    return lambda _x: tiny.reference(rows)[:, 1]


@pytest.mark.hostile("library inputs: valid must be answered")
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(form=st.sampled_from(["batch", "single", "float16"]), seed=st.integers(0, 2**31 - 1))
def test_valid_inputs_are_accepted_and_equal_the_reference(tiny_bundle_ro, form: str, seed: int) -> None:
    model = medinfer.load(tiny_bundle_ro, self_test=False)
    x, rows = valid_from(POOL, np.random.default_rng(seed), form)
    check_outcome(model, x, _reference(rows))


@pytest.mark.hostile("library inputs: invalid must be refused")
@pytest.mark.parametrize("case", list(invalid_cases(SimpleNamespace(range=tiny.RANGE), POOL)))
def test_each_invalid_class_is_refused_with_its_error(tiny_bundle_ro, case: str) -> None:
    model = medinfer.load(tiny_bundle_ro, self_test=False)
    x, error = invalid_cases(model.manifest.inputs[0], POOL)[case]
    with pytest.raises(error):
        model.predict(x)
    assert model.try_predict(x).reason in ("input", "input_type")


@pytest.mark.hostile("library inputs: anything else")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=st.sampled_from(SHAPES), dtype=st.sampled_from(DTYPES), pattern=st.sampled_from(PATTERNS),
       batch=st.integers(1, 5), seed=st.integers(0, 2**31 - 1))
def test_anything_else_is_an_input_refusal_or_a_correct_answer(tiny_bundle_ro, shape, dtype, pattern, batch,
                                                               seed) -> None:
    model = medinfer.load(tiny_bundle_ro, self_test=False)
    x = numeric_case(model.manifest.inputs[0], shape, dtype, pattern, batch, seed)

    def reference(arr):
        a = np.asarray(arr, dtype=np.float32)
        return tiny.reference(a.reshape(-1, 3))[:, 1]

    check_refused_or_right(model, x, reference)
