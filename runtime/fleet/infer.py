"""One inference request of ``medinfer serve``, from its body to its response bytes (no HTTP framework here):
the body read within its bounds, the tensors decoded, ``Model.predict`` with the request's deadline and id, the
response encoded — with the duration of each phase for the statistics."""

from __future__ import annotations

import json
import time
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..errors import BodyTooLarge, InputError, InputTypeError, MissingExtraError, RequestError, UsageError
from .protocol import datatype_of, decode_request, encode_response, prediction_tensors


@dataclass
class Call:
    """One inference request on its way through :func:`run_call` (inline or in a worker thread)."""

    slot: Any
    body: bytes
    header_length: str | None
    header_id: str | None
    arrival: int  # perf_counter_ns when the whole body was there
    rid: str | None = None
    batch: int = 0
    phases: tuple[int, int, int, int] = (0, 0, 0, 0)
    out: tuple[bytes, int | None] = (b"", None)
    executions: int = 1  # model runs this request counts for (0: it rode in another request's batch)


def run_call(call: Call, server_deadline_ms: float | None, audited: bool) -> tuple[bytes, int | None]:
    """Decode, predict through the library, encode; fills ``call``'s id, batch size and phase durations."""
    start = time.perf_counter_ns()
    model = call.slot.ready_model()
    req = decode_request(call.body, call.header_length)
    answer = predict_request(call, model, req, start, server_deadline_ms, audited)
    done = time.perf_counter_ns()
    out = encode_response(call.slot.name, answer.version, call.rid, answer.tensors, answer.binary, answer.parameters)
    call.phases = (*call.phases[:3], call.phases[3] + time.perf_counter_ns() - done)
    return out


@dataclass
class Answer:
    """What a request gets back, before the wire format: the version that answered, its tensors, which of them go
    as binary, and the response parameters."""

    version: str
    tensors: dict[str, Any]
    binary: dict[str, bool]
    parameters: dict[str, Any]


@dataclass
class Pending:
    """A decoded request ready for ``Model.predict``: its input, deadline and FHIR option, the id it sent."""

    x: Any
    deadline_ms: float | None
    fhir: dict[str, Any] | None
    sent_id: str | None
    decoded: int  # perf_counter_ns when decoding ended
    explicit_deadline: bool  # the request asked for a deadline of its own
    started: int = 0  # perf_counter_ns when decoding began
    explain: bool = False  # the request asked for the explanation (``parameters.explain``)
    per_item: bool = False  # ``parameters.on_error = "item"``: each item answered or given its own reason


def begin_request(call: Call, model: Any, req: Any, start: int, server_deadline_ms: float | None) -> Pending:
    """The checks before ``Model.predict`` that every protocol shares: the id, the input names, the element bound,
    the deadline (queueing counts) and the FHIR option."""
    slot = call.slot
    sent_id = req.id if req.id is not None else call.header_id
    call.rid = sent_id if sent_id is not None else uuid.uuid4().hex
    names = model.input_names
    if sorted(req.inputs) != sorted(names):
        raise RequestError(f"model '{slot.name}' takes input(s) {list(names)}; the request sent {list(req.inputs)}")
    bound_elements(model.manifest.inputs, req.inputs, getattr(slot, "max_elements", None))
    x = model.as_input(req.inputs)
    deadline = request_deadline(req.parameters, server_deadline_ms)
    if deadline is not None:
        # Time spent queueing counts; a request whose time is up still goes through predict so that the audit
        # trail records the refusal.
        deadline = max(deadline - (start - call.arrival) / 1e6, 1e-3)
    fhir = fhir_request(req.parameters)
    explicit = any(req.parameters.get(k) is not None for k in ("deadline_ms", "timeout"))
    return Pending(x, deadline, fhir, sent_id, time.perf_counter_ns(), explicit, start,
                   explain_request(req.parameters), item_request(req.parameters))


def finish_request(call: Call, model: Any, req: Any, pred: Any, pending: Pending, start: int,
                   predicted: int) -> Answer:
    """The answer of a prediction: requested outputs, provenance parameters, explanation, FHIR; fills ``call``'s
    batch and phases (output encoding excluded)."""
    slot = call.slot
    tensors = prediction_tensors(pred)
    if req.outputs is not None:
        unknown = [n for n in req.outputs if n not in tensors]
        if unknown:
            raise RequestError(f"model '{slot.name}' has no output(s) {unknown}; it has {list(tensors)}")
        tensors = {n: tensors[n] for n in req.outputs}
    binary = {n: req.binary.get(n, req.binary_default) for n in tensors}
    params: dict[str, Any] = {"model_sha256": pred.model_sha256, "manifest_sha256": pred.manifest_sha256,
                              "variant": pred.variant, "provider": pred.provider}
    if model.manifest.decision.threshold is not None:
        params["threshold"] = model.manifest.decision.threshold
    if pred.in_domain is not None:
        params["domain_threshold"] = model.manifest.domain.threshold
        params["out_of_domain"] = int((~pred.in_domain).sum())
    if pred.explanation is not None:
        params["explanation"] = json.dumps(pred.explanation.to_dict(), separators=(",", ":"))
    if pending.fhir is not None:
        try:
            from ..tools.fhir import to_fhir

            params["fhir"] = json.dumps(to_fhir(pred, **pending.fhir), separators=(",", ":"))
        except (UsageError, MissingExtraError) as exc:
            raise RequestError(f"parameters.fhir: {exc}") from None
    call.batch = len(pred)
    call.phases = (start - call.arrival, pending.decoded - start, predicted - pending.decoded,
                   time.perf_counter_ns() - predicted)
    return Answer(pred.version, tensors, binary, params)


def predict_request(call: Call, model: Any, req: Any, start: int, server_deadline_ms: float | None,
                    audited: bool) -> Answer:
    """The part of a request that every protocol (HTTP JSON, HTTP binary, gRPC) shares: :func:`begin_request`,
    ``Model.predict`` (validation, run, decision, audit record) and :func:`finish_request`."""
    pending = begin_request(call, model, req, start, server_deadline_ms)
    if pending.per_item:
        from .items import finish_items

        got = model.predict(pending.x, deadline_ms=pending.deadline_ms, request_id=call.rid if audited else
                            pending.sent_id, explain=pending.explain, on_error="item")
        return finish_items(call, model, req, got, pending, start, time.perf_counter_ns())
    try:
        # The id goes to the audit record (a server-made one only when there is a trail to match it with).
        pred = model.predict(pending.x, deadline_ms=pending.deadline_ms,
                             request_id=call.rid if audited else pending.sent_id, explain=pending.explain)
    except InputTypeError as exc:
        raise http_remedy(exc, call.slot, req.inputs) from None
    except UsageError as exc:  # asked to explain with a bundle that cannot (exported before explanations)
        if pending.explain:
            raise RequestError(f"parameters.explain: {exc}") from None
        raise
    return finish_request(call, model, req, pred, pending, start, time.perf_counter_ns())


def begin_batched(call: Call, server_deadline_ms: float | None) -> tuple[Any, Any, Pending]:
    """Decode a request for the dynamic batcher: (the model it runs on, the request, its pending state)."""
    start = time.perf_counter_ns()
    model = call.slot.ready_model()
    req = decode_request(call.body, call.header_length)
    return model, req, begin_request(call, model, req, start, server_deadline_ms)


def bound_elements(specs: Any, inputs: Mapping[str, Any], limit: int | None) -> None:
    """Refuse an input with a free axis besides the batch (a sequence length) beyond the server's per-call
    element bound: its memory would grow with whatever length a client sends.

    Raises:
        RequestError: an input holds more elements than the bound (HTTP 400, gRPC INVALID_ARGUMENT).
    """
    if limit is None:
        return
    for spec in specs:
        free = [d for d in spec.shape[1:] if not isinstance(d, int)]
        arr = inputs.get(spec.name)
        if free and arr is not None and arr.size > limit:
            raise RequestError(f"input '{spec.name}' holds {arr.size} elements (shape {list(arr.shape)}); this "
                               f"server takes at most {limit} per input per call for inputs of free length "
                               f"({', '.join(map(str, spec.shape))}): send shorter sequences or fewer at once "
                               "(serve --max-elements)")


def explain_request(parameters: dict[str, Any]) -> bool:
    """``"parameters": {"explain": true}``: the response's ``parameters.explanation`` holds each sample's top
    attributions with the method named (JSON string of :meth:`medinfer.Explanation.to_dict`)."""
    asked = parameters.get("explain", False)
    if not isinstance(asked, bool):
        raise RequestError(f"parameters.explain must be true or false, got {asked!r}")
    return asked


def item_request(parameters: dict[str, Any]) -> bool:
    """``"parameters": {"on_error": "item"}``: answer every valid item of the request and give each invalid or
    refused one its own reason (status 200; the ``status`` output and ``parameters.no_results``); ``"raise"`` (the
    default): one refused item refuses the request (400 / 422)."""
    asked = parameters.get("on_error", "raise")
    if asked not in ("raise", "item"):
        raise RequestError(f"parameters.on_error must be \"raise\" or \"item\", got {str(asked)[:40]!r}")
    return asked == "item"


def request_deadline(parameters: dict[str, Any], server_ms: float | None) -> float | None:
    """The tightest of the server's deadline, ``parameters.deadline_ms`` and Triton's ``parameters.timeout`` (µs)."""
    deadline = server_ms
    for key, scale in (("deadline_ms", 1.0), ("timeout", 1e-3)):
        asked = parameters.get(key)
        if asked is None:
            continue
        if isinstance(asked, bool) or not isinstance(asked, (int, float)) or not 0 < asked < MAX_DEADLINE[key]:
            unit = "milliseconds" if key == "deadline_ms" else "microseconds (Triton's request timeout)"
            raise RequestError(f"parameters.{key} must be a positive number of {unit} below "
                               f"{MAX_DEADLINE[key]:.0e}, got {str(asked)[:40]}")
        ms = float(asked) * scale
        deadline = ms if deadline is None else min(deadline, ms)
    return deadline


MAX_DEADLINE = {"deadline_ms": 3.6e6, "timeout": 3.6e9}  # an hour: beyond any request (and finite)


def http_remedy(exc: InputTypeError, slot: Any, inputs: dict[str, Any]) -> InputError:
    """A dtype refusal worded for an HTTP client: which datatype to send instead of a Python-side cast."""
    for meta in slot.inputs:
        arr = inputs.get(meta.name)
        sent = None if arr is None else datatype_of(arr)
        if sent is not None and sent != meta.datatype:
            head = str(exc).split(";")[0]
            return RequestError(f"{head}: input '{meta.name}' was sent as datatype {sent}; send it as "
                                f"{meta.datatype} (convert on the client, e.g. numpy's .astype before "
                                f"tritonclient's set_data_from_numpy; GET /v2/models/{slot.name} lists each input's "
                                "datatype). The server converts nothing that could change a value")
    return exc


class ClientGone(Exception):
    """The client closed the connection before its request body arrived (nothing to answer)."""


def check_declared_length(headers: Mapping[bytes, bytes], limit: int) -> None:
    """Refuse a body whose Content-Length exceeds ``limit`` before a byte of it is read.

    Raises:
        BodyTooLarge: the declared length exceeds ``limit`` (HTTP 413).
    """
    declared = headers.get(b"content-length")
    if declared is None or not declared.isdigit():
        return
    if len(declared) > 18 or int(declared) > limit:
        shown = declared.decode() if len(declared) <= 18 else f"{len(declared)}-digit"
        raise BodyTooLarge(f"request body of {shown} bytes exceeds this server's limit of {limit} bytes")


async def read_body(receive: Any, headers: Mapping[bytes, bytes], limit: int) -> bytes:
    """Read an ASGI request's body, refusing more than ``limit`` bytes (also after gzip/deflate).

    Raises:
        BodyTooLarge: the declared, received or decompressed body exceeds ``limit`` (HTTP 413).
        RequestError: an unsupported or broken Content-Encoding.
        ClientGone: the client disconnected.
    """
    check_declared_length(headers, limit)
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"request body exceeds this server's limit of {limit} bytes")
        chunks.append(chunk)
        more = message.get("more_body", False)
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    encoding = headers.get(b"content-encoding", b"identity").decode("latin-1").strip().lower()
    if encoding in ("", "identity"):
        return body
    return inflate(body, encoding, limit)


def inflate(body: bytes, encoding: str, limit: int) -> bytes:
    """Decompress a gzip or deflate body of at most ``limit`` bytes (one stream, whole)."""
    if encoding not in ("gzip", "deflate"):
        raise RequestError(f"Content-Encoding {encoding!r} is not supported; use gzip, deflate or none")
    inflater = zlib.decompressobj(31 if encoding == "gzip" else 15)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise RequestError(f"the {encoding} body does not decompress: {exc}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise BodyTooLarge(f"decompressed request body exceeds this server's limit of {limit} bytes")
    if not inflater.eof:
        raise RequestError(f"the {encoding} body is truncated (its stream does not end)")
    if inflater.unused_data:
        raise RequestError(f"the {encoding} body holds {len(inflater.unused_data)} bytes after its first stream "
                           "(e.g. a second gzip member); send one stream")
    return out


def fhir_request(parameters: dict[str, Any]) -> dict[str, Any] | None:
    """The request's FHIR option as :func:`medinfer.tools.fhir.to_fhir` arguments (None when not asked for).

    ``"fhir": true`` adds ``parameters.fhir`` to the response: the FHIR R4 transaction Bundle as a JSON string.
    It needs ``"fhir_subject"`` (e.g. ``"Patient/123"``); optional ``"fhir_basis"`` (comma-separated references),
    ``"fhir_time"`` (ISO 8601 with a time zone) and ``"fhir_generic": true``.

    Raises:
        RequestError: a parameter of the wrong type, a missing subject, or a time that is not ISO 8601.
    """
    asked = parameters.get("fhir", False)
    if asked is False:
        return None
    if asked is not True:
        raise RequestError(f"parameters.fhir must be true or false, got {asked!r}")
    subject, basis = parameters.get("fhir_subject"), parameters.get("fhir_basis", "")
    when, generic = parameters.get("fhir_time"), parameters.get("fhir_generic", False)
    if not isinstance(subject, str) or not subject:
        raise RequestError('parameters.fhir needs parameters.fhir_subject, the FHIR reference of the patient the '
                           'input came from (e.g. "Patient/123")')
    if not isinstance(basis, str) or not isinstance(generic, bool) or not isinstance(when, (str, type(None))):
        raise RequestError("parameters.fhir_basis and fhir_time must be strings, fhir_generic true or false")
    try:
        at = datetime.fromisoformat(when.replace("Z", "+00:00")) if when else None
    except ValueError:
        raise RequestError(f"parameters.fhir_time must be ISO 8601 with a time zone, got {str(when)[:64]!r}") from None
    return {"subject": subject, "basis": [b.strip() for b in basis.split(",") if b.strip()], "at": at,
            "generic": generic}
