"""Fail-safe outcomes, deadlines, determinism and concurrency."""

from __future__ import annotations

from pathlib import Path

import medinfer
import numpy as np
import pytest

from ..helpers import tiny
from ..helpers.checks import concurrent_check, deterministic_check


def test_try_predict_returns_no_result_with_reason(tiny_bundle_ro: Path) -> None:
    model = medinfer.load(tiny_bundle_ro)
    ok = model.try_predict(np.array([[1, 2, 3]], np.float32))
    assert ok.ok and ok.labels is not None
    for bad, reason in [(np.array([[np.inf, 0, 0]], np.float32), "input"),
                        (np.zeros((1, 3), np.float64), "input_type"),
                        ("text", "input_type")]:
        out = model.try_predict(bad)
        assert isinstance(out, medinfer.NoResult) and not out.ok
        assert out.reason == reason and out.labels is None and out.model == "tiny_logistic"


def test_unloadable_bundle_is_no_result_not_a_default(tiny_bundle: Path) -> None:
    data = bytearray((tiny_bundle / "model.onnx").read_bytes())
    data[10] ^= 1
    (tiny_bundle / "model.onnx").write_bytes(bytes(data))
    model = medinfer.load(tiny_bundle, on_error="no_result")
    assert isinstance(model, medinfer.UnavailableModel)
    out = model.try_predict(np.zeros((1, 3), np.float32))
    assert out.reason == "integrity" and "model.onnx" in out.message
    with pytest.raises(medinfer.IntegrityError):
        model.predict(np.zeros((1, 3), np.float32))


@pytest.mark.timing
def test_deadline_cancels_a_long_run(tmp_path: Path) -> None:
    bundle = tiny.build(tmp_path / "slow", slow=400)
    model = medinfer.load(bundle, self_test=False, session_profile={"intra_op_num_threads": 1})
    import time

    start = time.perf_counter()
    with pytest.raises(medinfer.DeadlineExceeded, match="20 ms deadline"):
        model.predict(tiny.GOLDEN_X, deadline_ms=20)
    assert time.perf_counter() - start < 0.5  # cancelled, not run to the end (~1 s on 1 core)
    out = model.try_predict(tiny.GOLDEN_X, deadline_ms=20)
    assert out.reason == "timeout"
    assert isinstance(out, medinfer.NoResult)
    done = model.predict(tiny.GOLDEN_X, deadline_ms=60_000)  # generous: completes normally
    np.testing.assert_allclose(done.scores, tiny.reference(tiny.GOLDEN_X)[:, 1], atol=1e-5)


def test_deterministic_and_concurrent_tiny(tiny_bundle_ro: Path) -> None:
    deterministic_check(tiny_bundle_ro, tiny.GOLDEN_X)
    concurrent_check(tiny_bundle_ro, tiny.GOLDEN_X)


