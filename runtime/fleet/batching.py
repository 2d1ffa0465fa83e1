"""Micro-batching of concurrent single-sample requests into one batched run.

Many threads (an acquisition loop per sensor, a server's workers) each asking for ONE sample pay the per-call
cost of onnxruntime every time; a :class:`MicroBatcher` gathers what arrives within ``max_wait_ms`` (up to
``max_batch`` samples), runs one batch through the model's normal, validated ``predict``, and hands each caller
its own slice. Whether it wins is measured (``python -m benchmarks concurrency``), not assumed.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from typing import Any

from ..errors import InputError, MedinferError, NotReady, UsageError
from ..model import Model
from ..prediction import Prediction
from ..request_groups import predict_grouped


class MicroBatcher:
    """Thread-safe front of a one-input :class:`Model` that batches single samples.

    Args:
        model: a loaded model with a batch dimension.
        max_batch: most samples per run.
        max_wait_ms: how long the first waiting request may be held for others to join.
    """

    def __init__(self, model: Model, max_batch: int = 32, max_wait_ms: float = 1.0) -> None:
        if len(model.manifest.inputs) != 1:
            raise UsageError(f"MicroBatcher serves one-input models; {model.name} has {len(model.manifest.inputs)}")
        if not (max_batch >= 1 and max_wait_ms >= 0):
            raise UsageError(f"max_batch must be >= 1 and max_wait_ms >= 0, got {max_batch!r} and {max_wait_ms!r}")
        self.model = model
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1e3
        self._cv = threading.Condition()
        self._queue: list[tuple[Any, Future[Prediction]]] = []
        self._closed = False
        self._worker = threading.Thread(target=self._loop, name=f"medinfer-batcher-{model.name}", daemon=True)
        self._worker.start()
        self.batches = 0
        self.samples = 0

    def submit(self, x: Any) -> Future[Prediction]:
        """Queue one sample (validated now, in the caller's thread); returns a Future of its Prediction."""
        feeds, single = self.model.prepare(x)
        arr = next(iter(feeds.values()))
        if not single and arr.shape[0] != 1:
            raise InputError(f"MicroBatcher takes one sample per call, got a batch of {arr.shape[0]}")
        future: Future[Prediction] = Future()
        with self._cv:
            if self._closed:
                raise NotReady("MicroBatcher is closed: it takes no new requests")
            self._queue.append((x, future))
            if len(self._queue) == 1 or len(self._queue) >= self.max_batch:
                self._cv.notify()
        return future

    def predict(self, x: Any, timeout: float | None = None) -> Prediction:
        """Blocking single-sample prediction through the batcher."""
        return self.submit(x).result(timeout)

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._closed:
                    self._cv.wait()
                if self._closed and not self._queue:
                    return
                deadline = time.perf_counter() + self.max_wait
                while len(self._queue) < self.max_batch and not self._closed:
                    left = deadline - time.perf_counter()
                    if left <= 0:
                        break
                    self._cv.wait(left)
                batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch:]
            self._run(batch)

    def _run(self, batch: list[tuple[Any, Future[Prediction]]]) -> None:
        """One run for the batch; a request the model refuses fails only its own caller (the shared rule of
        :func:`medinfer.request_groups.predict_grouped`: same-shaped requests together, each alone after a refusal)."""
        try:
            results = predict_grouped(self.model, [x for x, _ in batch])
        except BaseException as exc:  # noqa: BLE001 - a bug must not leave callers waiting forever
            for _, fut in batch:
                fut.set_exception(exc)
            return
        self.batches += 1
        self.samples += len(batch)
        for (_, fut), result in zip(batch, results):
            if isinstance(result, MedinferError):
                fut.set_exception(result)
            else:
                fut.set_result(result)

    def close(self) -> None:
        """Finish what is queued, then stop the worker."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._worker.join()

    def __enter__(self) -> MicroBatcher:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
