"""Per-item answers over the wire (``"parameters": {"on_error": "item"}``, HTTP and gRPC alike): a request's valid
items are answered and each invalid or refused item gets its own reason, in order, with status 200.

The response holds, per item, ``status`` (BYTES: ``ok`` or ``no_result``), ``labels`` (BYTES, empty for a refused
item), ``scores`` (the model's score type, NaN for a refused item) and, for a guarded bundle, ``in_domain`` (BOOL,
false for a refused item) and ``domain_score``; ``parameters.no_results`` is a JSON list of the refused items
(index, reason, error, message) and ``parameters.answered`` their count. The raw graph outputs are not sent in
this mode (a refused item has none).
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np

from ..items import ItemResults
from .infer import Answer, Call, Pending


def item_tensors(model: Any, got: ItemResults) -> dict[str, np.ndarray]:
    """The response tensors of per-item results (see the module docstring)."""
    ok = got.ok
    score_spec = next(o for o in model.manifest.outputs if o.name == model.manifest.decision.score_output)
    tensors: dict[str, np.ndarray] = {"status": np.array(["ok" if k else "no_result" for k in ok], dtype=object)}
    labels = got.labels
    if labels is not None or model.manifest.labels:
        shown = labels if labels is not None else np.full(len(got), None, dtype=object)
        tensors["labels"] = np.array(["" if v is None else str(v) for v in shown], dtype=object)
    tensors["scores"] = np.asarray(got.scores).astype(score_spec.dtype if score_spec.dtype != "string" else "float32")
    if got.in_domain is not None or model.manifest.domain is not None:
        inside = got.in_domain
        tensors["in_domain"] = np.array([bool(v) if v is not None else False
                                         for v in (inside if inside is not None else [None] * len(got))])
        domain = got.domain_scores
        tensors["domain_score"] = (np.asarray(domain, np.float32) if domain is not None
                                   else np.full(len(got), np.nan, np.float32))
    return tensors


def finish_items(call: Call, model: Any, req: Any, got: ItemResults, pending: Pending, start: int,
                 predicted: int) -> Answer:
    """The answer of per-item results: the tensors asked for, provenance, the refusals; fills ``call``'s batch and
    phases like :func:`medinfer.fleet.infer.finish_request`."""
    from ..errors import RequestError

    tensors = item_tensors(model, got)
    if req.outputs is not None:
        unknown = [n for n in req.outputs if n not in tensors]
        if unknown:
            raise RequestError(f"model '{call.slot.name}' answers per item with outputs {list(tensors)}; the request "
                               f"asked for {unknown}")
        tensors = {n: tensors[n] for n in req.outputs}
    binary = {n: req.binary.get(n, req.binary_default) for n in tensors}
    params: dict[str, Any] = {"model_sha256": model.model_sha256, "manifest_sha256": model.manifest_sha256,
                              "variant": model.variant, "provider": model.providers[0],
                              "answered": int(got.ok.sum()),
                              "no_results": json.dumps([r.to_dict() for r in got.no_results], separators=(",", ":"))}
    if model.manifest.decision.threshold is not None:
        params["threshold"] = model.manifest.decision.threshold
    if model.manifest.domain is not None:
        params["domain_threshold"] = model.manifest.domain.threshold
    if got.explanation is not None:
        params["explanation"] = json.dumps({**got.explanation.to_dict(), "items": got.answered.tolist()},
                                           separators=(",", ":"))
    if pending.fhir is not None:
        from ..errors import MissingExtraError, UsageError

        try:
            from ..tools.fhir import to_fhir

            params["fhir"] = json.dumps(to_fhir(got, **pending.fhir), separators=(",", ":"))
        except (UsageError, MissingExtraError) as exc:
            raise RequestError(f"parameters.fhir: {exc}") from None
    call.batch = len(got)
    call.phases = (start - call.arrival, pending.decoded - start, predicted - pending.decoded,
                   time.perf_counter_ns() - predicted)
    return Answer(model.version, tensors, binary, params)
