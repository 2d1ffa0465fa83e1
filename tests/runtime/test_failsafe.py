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




def test_the_watchdog_wakes_only_for_an_earlier_deadline() -> None:
    """Arming a deadline later than the one the watchdog waits for must not wake its thread (a wake per call cost a
    server half its throughput); an earlier one must, and still fires on time."""
    import time
    import types

    from medinfer.watchdog import Watchdog

    dog = Watchdog()
    far = types.SimpleNamespace(terminate=False)
    dog.arm(far, time.perf_counter() + 30)
    time.sleep(0.1)
    woken = dog.wakeups
    for i in range(300):
        entry = dog.arm(types.SimpleNamespace(terminate=False), time.perf_counter() + 60 + i)
        time.sleep(0.0002)
        dog.disarm(entry)
    assert dog.wakeups - woken <= 2
    near = types.SimpleNamespace(terminate=False)
    dog.arm(near, time.perf_counter() + 0.05)
    end = time.perf_counter() + 5
    while not near.terminate and time.perf_counter() < end:
        time.sleep(0.01)
    assert near.terminate and not far.terminate
