"""Property-based hostile inputs: every case ends in a correct prediction or a typed error — no crash, no hang,
no silent nonsense. Strategies are derived from each bundle's manifest, so every registered model is covered."""

from __future__ import annotations

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
import medinfer  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from ..helpers import tiny  # noqa: E402
from ..helpers.hostile import DTYPES, PATTERNS, SHAPES, check_outcome, numeric_case  # noqa: E402


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=st.sampled_from(SHAPES), dtype=st.sampled_from(DTYPES), pattern=st.sampled_from(PATTERNS),
       batch=st.integers(1, 5), seed=st.integers(0, 2**31 - 1))
def test_hostile_numbers_tiny(tiny_bundle_ro, shape, dtype, pattern, batch, seed) -> None:
    model = medinfer.load(tiny_bundle_ro, self_test=False)
    x = numeric_case(model.manifest.inputs[0], shape, dtype, pattern, batch, seed)

    def reference(arr):
        a = np.asarray(arr, dtype=np.float32)
        return tiny.reference(a.reshape(-1, 3))[:, 1]

    check_outcome(model, x, reference)


