"""Several requests through one model in as few runs as possible, each with its own answer.

A server's micro-batch, a Triton dynamic batch and a batch of scored rows share one rule: requests whose
validated inputs fit together (same trailing shape and dtype per input) run as ONE batch; when that run is
refused, each of its requests runs alone, so a bad request fails only itself and its neighbours still get their
answers. Requests of different shapes (e.g. glucose sequences of 8, 12 and 30 steps) form separate groups.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InferenceError, MedinferError

if TYPE_CHECKING:
    from .model import Model
    from .prediction import Prediction


def predict_grouped(model: Model, items: Sequence[Any], **predict_options: Any) -> list[Prediction | MedinferError]:
    """Predict every item; returns, in order, each item's Prediction or the typed error that refused it.

    Args:
        model: a loaded model.
        items: the requests' inputs, each as ``Model.predict`` takes it (one sample or a batch).
        predict_options: passed to ``Model.predict`` (``deadline_ms``, ``request_id``).

    Never raises for a request's own fault: input errors, timeouts and runtime failures come back in the list.
    """
    results: list[Prediction | MedinferError | None] = [None] * len(items)
    prepared: dict[int, tuple[dict[str, np.ndarray], bool]] = {}
    for i, x in enumerate(items):
        try:
            prepared[i] = model.prepare(x)
        except MedinferError as exc:
            results[i] = exc
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, (feeds, _) in prepared.items():
        key = tuple((name, arr.shape[1:], arr.dtype.str) for name, arr in sorted(feeds.items()))
        groups.setdefault(key, []).append(i)
    for members in groups.values():
        if len(members) > 1:
            joined = {name: np.concatenate([prepared[i][0][name] for i in members]) for name in prepared[members[0]][0]}
            try:
                whole = model.predict(model.as_input(joined), **predict_options)
            except MedinferError:
                pass  # one request spoils the run: each runs alone below and gets its own answer
            else:
                sizes = [len(next(iter(prepared[i][0].values()))) for i in members]
                for i, part in zip(members, whole.split(sizes)):
                    part.single = prepared[i][1]
                    results[i] = part
                continue
        for i in members:
            feeds, single = prepared[i]
            try:
                pred = model.predict(model.as_input(feeds), **predict_options)
            except MedinferError as exc:
                results[i] = exc
            else:
                pred.single = single
                results[i] = pred
    return [r if r is not None else InferenceError(f"{model.name}: request {i} got no answer")
            for i, r in enumerate(results)]


def predict_grouped_audited(model: Model, items: Sequence[Any], request_ids: Sequence[str | None], *,
                            deadline_ms: float | None = None) -> list[Prediction | MedinferError]:
    """:func:`predict_grouped` for a model with an audit trail, where every request keeps its own record.

    The runs go through an audit-free twin of ``model`` (the same session); then each request gets the record that
    ``model.predict(item, request_id=rid)`` alone would have written — its own input digest, outcome, output
    summary and id (a refused id is recorded under its digest and never run). A result whose record cannot be
    written is replaced by the :class:`~medinfer.AuditError` (no unrecorded answer). Without a trail it is
    :func:`predict_grouped` with each request id checked as ``predict`` checks it.
    """
    import copy
    import time

    from .audit.record import checked_request_id, digestible, refused_id, summary
    from .errors import AuditError, InputError

    options = {} if deadline_ms is None else {"deadline_ms": deadline_ms}
    audit = model.audit_binding
    results: list[Prediction | MedinferError | None] = [None] * len(items)
    ids: list[str | None] = []
    refused: set[int] = set()  # ids refused: recorded under their digest, never run
    for i, rid in enumerate(request_ids):
        try:
            ids.append(checked_request_id(rid))
        except InputError as exc:
            results[i], rid = exc, refused_id(rid)
            ids.append(rid)
            refused.add(i)
    twin = copy.copy(model).configure(audit=None, deadline_ms=model.deadline_ms, out_of_domain=model.out_of_domain)
    runnable = [i for i, r in enumerate(results) if r is None]
    start = time.perf_counter()
    for i, got in zip(runnable, predict_grouped(twin, [items[i] for i in runnable], **options)):
        results[i] = got
    latency_us = (time.perf_counter() - start) * 1e6
    if audit is None:
        return [r if r is not None else InferenceError(f"{model.name}: a request got no answer") for r in results]
    out: list[Prediction | MedinferError] = []
    for i, (item, rid, result) in enumerate(zip(items, ids, results)):
        try:
            if isinstance(result, MedinferError) or result is None:
                try:  # what predict digests: the validated feeds, the raw input when it never got that far
                    feeds: Any = digestible(item) if i in refused else model.prepare(item)[0]
                except MedinferError:
                    feeds = digestible(item)
                code = result.code if result is not None else "runtime"
                audit.record(feeds, "no_result", latency_us, None, rid, code)
            else:
                audit.record(model.prepare(item)[0], "ok", latency_us,
                             summary(result, explained=model.audit_explanations), rid)
        except AuditError as exc:
            result = exc
        out.append(result if result is not None else InferenceError(f"{model.name}: a request got no answer"))
    return out
