from __future__ import annotations

import threading
from pathlib import Path

import medinfer
import numpy as np
import pytest
from medinfer.batching import MicroBatcher

from . import tiny


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
    assert "| tiny_logistic | 2 |" in "\n".join(markdown([row]))
