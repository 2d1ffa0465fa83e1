"""Dynamic batching for ``medinfer serve``: requests for one model that wait at the same time run as one batch.

No request is held back for others: when a runner is free, whatever is waiting runs at once (alone at one client,
so batching adds no latency there); while every runner is busy, requests gather and the next free runner takes up
to ``max_batch`` of them in one ``onnxruntime`` run. The batch goes through
:func:`medinfer.request_groups.predict_grouped_audited` — the library's one batching rule: same-shaped inputs together,
each request alone after a refusal so a bad request fails only itself, and ONE audit record per request under its
own id, the record ``Model.predict`` would have written for it alone.

A model fast enough to run on the event loop (``inline``) batches there: the requests whose data arrived in one
turn of the loop reach the batcher in the next and run as one batch at its end (one client: one hop of the loop).

Bounds: at most ``runners`` batches run at once (the worker pool's threads) and at most ``max_waiting`` requests
wait; more are refused at once (HTTP 503 / gRPC UNAVAILABLE). A batch takes requests of one loaded model only,
so a version swap never mixes versions in a run. Requests with a deadline of their own run alone (their deadline
must not cut their neighbours' run); the server's deadline applies to a batch from its oldest request.
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Any

from ..errors import Busy
from ..request_groups import predict_grouped_audited


class DynamicBatcher:
    """Batches of one served model, run in ``pool`` (see the module docstring)."""

    def __init__(self, pool: Any, runners: int, max_batch: int, max_waiting: int, inline: bool = False) -> None:
        self.pool, self.runners, self.max_batch, self.max_waiting = pool, runners, max_batch, max_waiting
        self.inline = inline  # run on the event loop: what arrived in one turn of the loop runs as one batch
        self._flush_due = False
        self.waiting: list[tuple[Any, Any, str | None, float | None, int, asyncio.Future[Any]]] = []
        self.running = 0
        self.batches = 0
        self.requests = 0

    async def predict(self, model: Any, x: Any, request_id: str | None, deadline_ms: float | None) -> Any:
        """``(Prediction, first)`` for ``x`` on ``model`` (raises its typed error), run with whatever else is waiting;
        ``first`` marks the one request of each batch that counts its execution."""
        if self.running >= self.runners and len(self.waiting) >= self.max_waiting:
            raise Busy(f"server busy: {self.running} batches running and {len(self.waiting)} requests waiting; "
                       "retry later")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiting.append((model, x, request_id, deadline_ms, time.perf_counter_ns(), future))
        self._kick()
        result, first = await future
        if isinstance(result, BaseException):
            raise result
        return result, first

    def _take(self) -> list[Any]:
        model = self.waiting[0][0]
        batch = [w for w in self.waiting if w[0] is model][:self.max_batch]
        taken = {id(w) for w in batch}
        self.waiting = [w for w in self.waiting if id(w) not in taken]
        return batch

    def _kick(self) -> None:
        loop = asyncio.get_running_loop()
        if self.inline:
            if not self._flush_due and self.waiting:
                # The requests whose data arrived in this turn of the loop reach here in the next one: the flush
                # runs after them and takes them all.
                self._flush_due = True
                loop.call_soon(self._flush)
            return
        while self.running < self.runners and self.waiting:
            batch = self._take()
            self.running += 1
            task = loop.run_in_executor(self.pool, self._run, batch)
            task.add_done_callback(functools.partial(self._done, batch=batch))

    def _flush(self) -> None:
        self._flush_due = False
        while self.waiting:
            batch = self._take()
            self.running += 1
            try:
                results: list[Any] = self._run(batch)
            except Exception as exc:  # noqa: BLE001 - a bug must not leave callers waiting
                results = [exc] * len(batch)
            self._settle(batch, results)

    @staticmethod
    def _run(batch: list[Any]) -> list[Any]:
        model = batch[0][0]
        now = time.perf_counter_ns()
        deadlines = [d - (now - t) / 1e6 for _, _, _, d, t, _ in batch if d is not None]
        deadline = max(min(deadlines), 1e-3) if deadlines else None
        return predict_grouped_audited(model, [x for _, x, _, _, _, _ in batch], [r for _, _, r, _, _, _ in batch],
                                       deadline_ms=deadline)

    def _done(self, done: Any, *, batch: list[Any]) -> None:
        exc = done.exception()
        self._settle(batch, [exc] * len(batch) if exc is not None else done.result())
        self._kick()

    def _settle(self, batch: list[Any], results: list[Any]) -> None:
        self.running -= 1
        self.batches += 1
        self.requests += len(batch)
        for i, ((*_, future), result) in enumerate(zip(batch, results)):
            if not future.done():
                future.set_result((result, i == 0))


def batchable(manifest: Any) -> bool:
    """Can requests of this model be stacked along a batch axis (every input's first dimension is free)?"""
    return all(spec.shape and not isinstance(spec.shape[0], int) for spec in manifest.inputs)


def batcher_for(app: Any, slot: Any) -> DynamicBatcher | None:
    """The slot's batcher under serve's ``--dynamic-batching`` (``auto``: every model with a batch axis — those
    fast enough for the event loop batch there, the others in the worker pool; ``pool``: only models that run in
    the worker pool; ``off``), made on first use (again when a swap changes where the model runs)."""
    mode = getattr(app.config, "dynamic_batching", "off")
    model = slot.model
    if mode == "off" or model is None or not batchable(model.manifest) or (mode == "pool" and slot.inline):
        return None
    batcher = app.batchers.get(slot.name)
    if batcher is None or batcher.inline != bool(slot.inline):
        config = app.config
        batcher = app.batchers[slot.name] = DynamicBatcher(
            app.pool, config.max_concurrency, min(config.max_batch, model.manifest.profile.max_batch or 1 << 30),
            config.max_queue, inline=bool(slot.inline))
    return batcher
