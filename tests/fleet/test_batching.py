from __future__ import annotations

import threading
from pathlib import Path

import medinfer
import numpy as np
import pytest
from medinfer.fleet.batching import MicroBatcher

from ..helpers import tiny


def test_micro_batched_results_equal_direct(tiny_bundle_ro: Path) -> None:
    model = medinfer.load(tiny_bundle_ro)
    rng = np.random.default_rng(0)
    xs = rng.uniform(-5, 5, size=(8, 40, 3)).astype(np.float32)
    results: dict[tuple[int, int], object] = {}
    with MicroBatcher(model, max_batch=16, max_wait_ms=2.0) as batcher:
        def client(t: int) -> None:
            for i in range(40):
                results[(t, i)] = batcher.predict(xs[t, i], timeout=30)

        threads = [threading.Thread(target=client, args=(t,)) for t in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert batcher.samples == 320 and batcher.batches < 320  # requests were really combined
    for (t, i), pred in results.items():
        assert pred.single and pred.label == model.predict(xs[t, i]).label
        np.testing.assert_allclose(pred.score, tiny.reference(xs[t, i][None])[0, 1], atol=1e-6)


def test_batcher_validates_in_the_callers_thread(tiny_bundle_ro: Path) -> None:
    model = medinfer.load(tiny_bundle_ro)
    with MicroBatcher(model) as batcher:
        with pytest.raises(medinfer.InputError, match="X has 4 features"):
            batcher.submit(np.zeros((1, 4), np.float32))
        with pytest.raises(medinfer.InputError, match="one sample per call"):
            batcher.submit(np.zeros((2, 3), np.float32))
    with pytest.raises(RuntimeError, match="closed"):
        batcher.submit(np.zeros(3, np.float32))


def test_concurrency_benchmark_smoke(tiny_bundle_ro: Path) -> None:
    from benchmarks.concurrency import concurrency, markdown

    row = concurrency(tiny_bundle_ro, threads=2, seconds=0.2)
    assert row["direct"]["requests"] > 0 and row["micro_batched"]["requests"] > 0
    assert "| tiny_logistic | 2 |" in "\n".join(markdown({"command": "python -m benchmarks concurrency",
                                                            "interleaved": True, "rows": [row]}))


def _submit_together(batcher: MicroBatcher, xs: list[np.ndarray]) -> list[object]:
    """Submit every x from its own thread at once (so they share a micro-batch); results or exceptions."""
    out: list[object] = [None] * len(xs)
    barrier = threading.Barrier(len(xs))

    def client(i: int) -> None:
        barrier.wait()
        try:
            out[i] = batcher.predict(xs[i], timeout=30)
        except Exception as exc:  # noqa: BLE001 - compared below
            out[i] = exc

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_sequences_of_different_lengths_in_one_window_each_get_their_answer(tmp_path: Path) -> None:
    model = medinfer.load(tiny.build_sequence(tmp_path / "seq"))
    xs = [np.full((t, 2), t / 10, np.float32) for t in (8, 12, 30, 12, 8)]
    with MicroBatcher(model, max_batch=8, max_wait_ms=200) as batcher:
        out = _submit_together(batcher, xs)
        assert batcher.batches == 1  # one window held all five
    assert [float(r.score) for r in out] == [np.float32(t / 10) for t in (8, 12, 30, 12, 8)]


def test_a_request_that_fails_in_the_batch_fails_only_its_own_caller(tiny_bundle_ro: Path, monkeypatch) -> None:
    """A request that passes validation but fails when run (here: a poisoned value the session refuses) must not
    take its batch neighbours down with it."""
    model = medinfer.load(tiny_bundle_ro)
    real = model.predict

    def session_refuses_poison(x, **kw):
        if np.any(np.asarray(x) == 7.0):
            raise medinfer.InferenceError("the session refused the poisoned request (test)")
        return real(x, **kw)

    monkeypatch.setattr(model, "predict", session_refuses_poison)
    xs = [np.array([1, 2, 3], np.float32), np.array([7, 7, 7], np.float32), np.array([0, 1, 0], np.float32)]
    with MicroBatcher(model, max_batch=8, max_wait_ms=200) as batcher:
        out = _submit_together(batcher, xs)
    assert isinstance(out[1], medinfer.InferenceError)
    for i in (0, 2):
        assert isinstance(out[i], medinfer.Prediction)
        np.testing.assert_allclose(out[i].score, tiny.reference(xs[i][None])[0, 1], atol=1e-6)
