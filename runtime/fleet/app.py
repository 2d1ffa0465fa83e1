"""The routes of ``medinfer serve``: a plain ASGI application (no framework between uvicorn and the model).

Open Inference Protocol (KServe v2): ``GET /v2`` (also ``/v2/``: a trailing slash is ignored everywhere),
``/v2/health/live``, ``/v2/health/ready``, ``/v2/models/{name}[/versions/{v}]`` (metadata), ``…/ready``,
``POST …/infer``. Triton's extensions: ``binary_tensor_data``, ``model_repository`` (``POST /v2/repository/index``),
``statistics`` (``GET /v2/models[/{name}[/versions/{v}]]/stats``), ``model_configuration``
(``GET /v2/models/{name}[/versions/{v}]/config``). Prometheus: ``GET /metrics``.

Health answers follow the KServe v2 text: 200 for true, 4xx (400, as Triton) for false, and an empty body; the
reason a server or model is not ready is in the ``X-Medinfer-Not-Ready`` header and ``/v2/repository/index``.

Request ids: the response's ``id`` and its ``X-Request-ID`` header carry the request's ``id``, else its
``X-Request-ID`` header, else the id the server gave it — the id of its audit record.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import traceback
from collections.abc import Callable
from typing import Any

from .._version import __version__
from ..audit.record import MAX_REQUEST_ID
from ..errors import AuthError, Busy, InputTypeError, MedinferError, http_status
from .infer import (
    Call,
    ClientGone,
    begin_batched,
    check_declared_length,
    finish_request,
    http_remedy,
    read_body,
    run_call,
)
from .protocol import encode_response, error_body

log = logging.getLogger(__name__)
access_log = logging.getLogger("medinfer.access")

EXTENSIONS = ["binary_tensor_data", "model_repository", "statistics", "model_configuration", "metrics"]
# The endpoint group of each route (medinfer.fleet.auth.GROUPS): what credential it needs.
GROUP_OF = {"live": "health", "ready": "health", "server_metadata": "metadata", "model_metadata": "metadata",
            "model_ready": "metadata", "model_config": "metadata", "index": "metadata", "infer": "infer",
            "stats": "metrics", "scrape": "metrics", "load": "admin", "unload": "admin"}
INLINE_BODY_BYTES = 256 << 10  # larger requests of inline models still go to the worker pool
BATCH_BODY_BYTES = 4 << 20  # larger requests of batched models run alone in the worker pool
_JSON = b"application/json"


class Gate:
    """At most ``slots`` requests running in the worker pool and ``queue`` waiting; more are refused at once."""

    def __init__(self, slots: int, queue: int) -> None:
        self.slots, self.queue = slots, queue
        self.waiting = 0
        self._sem = asyncio.Semaphore(slots)  # binds to the server's loop on first use

    async def __aenter__(self) -> None:
        if self._sem.locked() and self.waiting >= self.queue:
            raise Busy(f"server busy: {self.slots} requests running and {self.waiting} waiting; retry later")
        self.waiting += 1
        try:
            await self._sem.acquire()
        finally:
            self.waiting -= 1

    async def __aexit__(self, *exc: Any) -> None:
        self._sem.release()


def batcher_for(app: Any, slot: Any) -> Any:
    """The slot's dynamic batcher (:func:`medinfer.fleet.dynamic.batcher_for`; imported here late, as it imports
    this module)."""
    from .dynamic import batcher_for as make

    return make(app, slot)


def header_safe(value: str | None) -> bytes | None:
    """``value`` as an HTTP header value, or None when it cannot be one unchanged (non-ASCII, control chars) or
    is longer than a request id may be (a refused id is never echoed)."""
    if value is None or len(value) > MAX_REQUEST_ID or not value.isascii() or not value.isprintable():
        return None
    return value.encode("ascii")


def error_code(status: int) -> str:
    """The code an access record gives an answer that no typed error made (a route or method refusal)."""
    return {404: "no_route", 405: "method", 413: "too_large"}.get(status, f"http_{status}")


class App:
    """The ASGI application. ``registry`` holds the slots, ``gate`` bounds the worker pool, ``metrics`` renders
    the Prometheus text (None: ``/metrics`` answers 404), ``metrics_port`` serves only ``/metrics`` and health."""

    def __init__(self, registry: Any, config: Any, pool: Any, gate: Any, metrics: Any = None,
                 metrics_port: int | None = None, auth: Any = None) -> None:
        self.registry, self.config, self.pool, self.gate = registry, config, pool, gate
        self.metrics, self.metrics_port = metrics, metrics_port
        self.auth = auth if auth is not None and auth.enabled else None  # a medinfer.fleet.auth.Authorizer
        self.batchers: dict[str, Any] = {}  # model name -> medinfer.fleet.dynamic.DynamicBatcher
        self.loop: Any = None  # the server's event loop, once it runs (gRPC hands batched requests to it)
        self.audited = registry.audit is not None
        get = {("v2",): self.server_metadata, ("v2", "health", "live"): self.live,
               ("v2", "health", "ready"): self.ready, ("v2", "models", "stats"): self.stats, ("metrics",): self.scrape}
        self.fixed: dict[tuple[str, ...], tuple[str, Callable[..., Any]]] = {k: ("GET", v) for k, v in get.items()}
        self.fixed[("v2", "repository", "index")] = ("POST", self.index)
        self.per_model = {"": ("GET", self.model_metadata), "ready": ("GET", self.model_ready),
                          "infer": ("POST", self.infer), "config": ("GET", self.model_config),
                          "stats": ("GET", self.stats)}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        begin = time.perf_counter_ns()
        headers = dict(scope["headers"])
        raw_id = headers.get(b"x-request-id")
        ctx: dict[str, Any] = {"id": raw_id.decode("latin-1") if raw_id else None, "in": 0}
        status = 500
        try:
            status = await self.route(scope, receive, send, headers, ctx)
        except ClientGone:
            status = 499
        finally:
            if self.config.access_log:
                # Ids, sizes, codes and times only: never a value, a message or a query string (they can hold
                # patient data), never a credential.
                shown = header_safe(ctx.get("id"))
                # The route, not the path: a path a client made up (an unknown model name) is content too.
                fields = {"id": shown.decode() if shown is not None else None, "method": scope["method"][:16],
                          "route": ctx.get("route", "-"), "path_bytes": len(scope["path"]), "status": status,
                          "bytes_in": ctx["in"],
                          "client": (scope.get("client") or ("", 0))[0],
                          "duration_ms": round((time.perf_counter_ns() - begin) / 1e6, 3)}
                if "model" in ctx:
                    fields.update(model=ctx["model"], version=ctx.get("version"), batch=ctx.get("batch"))
                    for name, ns in zip(("queue_ms", "input_ms", "infer_ms", "output_ms"), ctx.get("phases") or ()):
                        fields[name] = round(ns / 1e6, 3)
                if "error" in ctx:
                    fields["error"] = ctx.get("code") or error_code(status)
                if ctx.get("who"):
                    fields["who"] = ctx["who"]
                access_log.info("%s %s %s", fields["method"], fields["route"], status, extra={"access": fields})

    async def route(self, scope: dict[str, Any], receive: Any, send: Any, headers: dict[bytes, bytes],
                    ctx: dict[str, Any]) -> int:
        parts = tuple(p for p in scope["path"].split("/") if p)
        method = scope["method"]
        if self.metrics_port is not None and (scope.get("server") or ("", 0))[1] == self.metrics_port and \
                parts not in (("metrics",), ("v2", "health", "live"), ("v2", "health", "ready")):
            return await self.send_error(send, 404, "the metrics port serves /metrics and health only", ctx)
        target = self.fixed.get(parts)
        args: tuple[Any, ...] = ()
        if target is None and len(parts) >= 3 and parts[:2] == ("v2", "models"):
            name, rest, version = parts[2], parts[3:], None
            if len(rest) >= 2 and rest[0] == "versions":
                version, rest = rest[1], rest[2:]
            if len(rest) <= 1 and (rest[0] if rest else "") in self.per_model:
                target = self.per_model[rest[0] if rest else ""]
                args = (name, version)
        if target is None and len(parts) == 5 and parts[:3] == ("v2", "repository", "models") and \
                parts[4] in ("load", "unload"):
            target, args = ("POST", self.load if parts[4] == "load" else self.unload), (parts[3],)
        if target is None:
            return await self.send_error(send, 404, f"no route {method[:16]} {scope['path'][:200]}: see GET /v2 for "
                                         "this server's extensions", ctx)
        ctx["route"] = target[1].__name__
        if self.auth is not None:
            extensions = scope.get("extensions") or {}
            try:
                who = self.auth.check(GROUP_OF[target[1].__name__], headers.get(b"authorization"),
                                      (extensions.get("tls") or {}).get("client_cert"), scope.get("query_string", b""),
                                      client=(scope.get("client") or ("", 0))[0], path=ctx["route"])
            except AuthError as exc:
                extra = [(b"www-authenticate", b'Bearer realm="medinfer"')] if http_status(exc) == 401 else None
                return await self.fail(send, exc, ctx, extra)
            ctx["who"] = str(who) if who.token or who.cert else None
        if method != target[0] and not (method == "HEAD" and target[0] == "GET"):
            return await self.send_error(send, 405, f"{scope['path'][:200]} takes {target[0]}, not {method}", ctx)
        return int(await target[1](send, ctx, *args, receive=receive, headers=headers))

    # -- answers ---------------------------------------------------------------------------------------------
    async def respond(self, send: Any, status: int, body: bytes, ctx: dict[str, Any],
                      content_type: bytes = _JSON, extra: list[tuple[bytes, bytes]] | None = None) -> int:
        headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
        echoed = header_safe(ctx.get("id"))
        if echoed is not None:
            headers.append((b"x-request-id", echoed))
        if extra:
            headers += extra
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return status

    async def send_json(self, send: Any, doc: Any, ctx: dict[str, Any], status: int = 200) -> int:
        return await self.respond(send, status, json.dumps(doc, separators=(",", ":")).encode(), ctx)

    async def send_error(self, send: Any, status: int, message: str, ctx: dict[str, Any],
                         extra: list[tuple[bytes, bytes]] | None = None) -> int:
        ctx["error"] = True
        if status == 503:
            extra = [*(extra or []), (b"retry-after", b"1")]
        return await self.respond(send, status, error_body(message), ctx, extra=extra)

    async def fail(self, send: Any, exc: BaseException, ctx: dict[str, Any],
                   extra: list[tuple[bytes, bytes]] | None = None) -> int:
        message = f"{type(exc).__name__}: {exc}" if isinstance(exc, MedinferError) else str(exc)
        ctx["code"] = getattr(exc, "code", "internal")
        return await self.send_error(send, http_status(exc), message, ctx, extra)

    async def health(self, send: Any, ok: bool, reason: str, ctx: dict[str, Any]) -> int:
        """KServe v2 health: 200 (true) or 400 (false), empty body; the reason in a header."""
        if ok:
            return await self.respond(send, 200, b"", ctx)
        ctx["error"], ctx["code"] = True, "not_ready"
        printable = "".join(c if c.isascii() and c.isprintable() else "?" for c in reason)[:1000]
        return await self.respond(send, 400, b"", ctx, extra=[(b"x-medinfer-not-ready", printable.encode())])

    # -- routes ----------------------------------------------------------------------------------------------
    async def live(self, send: Any, ctx: dict[str, Any], **_: Any) -> int:
        return await self.health(send, True, "", ctx)

    async def ready(self, send: Any, ctx: dict[str, Any], **_: Any) -> int:
        audit = self.registry.audit
        if audit is not None and not audit.probe():
            return await self.health(send, False, f"the audit trail cannot be written ({audit.failed}); no result "
                                     "is returned that could not be recorded", ctx)
        states = ", ".join(f"{s.name}: {s.state}" for s in self.registry.slots.values())
        return await self.health(send, self.registry.ready, f"not ready ({states})", ctx)

    async def server_metadata(self, send: Any, ctx: dict[str, Any], **_: Any) -> int:
        return await self.send_json(send, {"name": "medinfer", "version": __version__, "extensions": EXTENSIONS},
                                    ctx)

    async def _send_of_ready(self, send: Any, ctx: dict[str, Any], name: str, version: str | None,
                             document: Callable[[Any], Any]) -> int:
        """``document(slot)`` as JSON for a model that is loaded and ready; its typed error otherwise."""
        try:
            slot = self.registry.get(name, version)
            slot.ready_model()
        except MedinferError as exc:
            return await self.fail(send, exc, ctx)
        return await self.send_json(send, document(slot), ctx)

    async def model_metadata(self, send: Any, ctx: dict[str, Any], name: str, version: str | None, **_: Any) -> int:
        return await self._send_of_ready(send, ctx, name, version, lambda slot: slot.metadata())

    async def model_ready(self, send: Any, ctx: dict[str, Any], name: str, version: str | None, **_: Any) -> int:
        try:
            slot = self.registry.get(name, version)
        except MedinferError as exc:
            return await self.fail(send, exc, ctx)
        try:
            slot.ready_model()
        except MedinferError as exc:
            return await self.health(send, False, str(exc), ctx)
        return await self.health(send, True, "", ctx)

    async def model_config(self, send: Any, ctx: dict[str, Any], name: str, version: str | None, **_: Any) -> int:
        return await self._send_of_ready(send, ctx, name, version, lambda slot: slot.config(self.config))

    async def stats(self, send: Any, ctx: dict[str, Any], name: str | None = None, version: str | None = None,
                    **_: Any) -> int:
        try:
            slots = [self.registry.get(name, version)] if name is not None else list(self.registry.slots.values())
        except MedinferError as exc:
            return await self.fail(send, exc, ctx)
        return await self.send_json(send, {"model_stats": [s.stats.triton() for s in slots]}, ctx)

    async def index(self, send: Any, ctx: dict[str, Any], **_: Any) -> int:
        return await self.send_json(send, self.registry.index(), ctx)

    async def load(self, send: Any, ctx: dict[str, Any], name: str, **_: Any) -> int:
        """Triton's repository load: the new version is checked aside and replaces the serving one in one step."""
        try:
            await asyncio.to_thread(self.registry.load_model, name)
        except MedinferError as exc:
            return await self.fail(send, exc, ctx)
        return await self.respond(send, 200, b"", ctx)

    async def unload(self, send: Any, ctx: dict[str, Any], name: str, **_: Any) -> int:
        try:
            self.registry.unload_model(name)
        except MedinferError as exc:
            return await self.fail(send, exc, ctx)
        return await self.respond(send, 200, b"", ctx)

    async def scrape(self, send: Any, ctx: dict[str, Any], **_: Any) -> int:
        if self.metrics is None:
            return await self.send_error(send, 404, "metrics are off", ctx)
        body = await asyncio.get_running_loop().run_in_executor(self.pool, self.metrics.render)
        return await self.respond(send, 200, body, ctx, content_type=self.metrics.content_type.encode())

    async def infer(self, send: Any, ctx: dict[str, Any], name: str, version: str | None, *, receive: Any,
                    headers: dict[bytes, bytes]) -> int:
        begin = time.perf_counter_ns()
        stats = None
        try:
            slot = self.registry.get(name, version)
            stats = slot.stats
            ctx["model"], ctx["version"] = slot.name, stats.version
            slot.ready_model()
            check_declared_length(headers, self.config.max_body_bytes)  # 413 before waiting for anything
            call = await self.gated(slot, receive, headers, ctx, begin)
            out, json_length = call.out
        except ClientGone:
            if stats is not None:
                stats.record(time.perf_counter_ns() - begin, reason="cancelled")
            raise
        except MedinferError as exc:
            if stats is not None:
                stats.record(time.perf_counter_ns() - begin, reason=exc.code)
            return await self.fail(send, exc, ctx)
        except Exception as exc:  # noqa: BLE001 - answer 500 in the protocol's shape, log the trace
            # The type and the frames, never the message: it may quote request content.
            log.error("inference failed: %s\n%s", type(exc).__name__, "".join(traceback.format_tb(exc.__traceback__)))
            if stats is not None:
                stats.record(time.perf_counter_ns() - begin, reason="internal")
            return await self.fail(send, MedinferError(f"internal error: {type(exc).__name__}"), ctx)
        stats.record(time.perf_counter_ns() - begin, call.phases, call.batch, executions=call.executions)
        ctx["batch"], ctx["phases"] = call.batch, call.phases
        if json_length is None:
            return await self.respond(send, 200, out, ctx)
        return await self.respond(send, 200, out, ctx, b"application/octet-stream",
                                  [(b"inference-header-content-length", str(json_length).encode())])

    async def gated(self, slot: Any, receive: Any, headers: dict[bytes, bytes], ctx: dict[str, Any],
                    arrival: int) -> Call:
        """Read the body and run the request inside the gate: a body is buffered only by a request that holds a
        slot, so waiting or trickling uploads hold no memory beyond the server's receive buffer. A model with a
        dynamic batcher (:mod:`.dynamic`) leaves the gate once its request is decoded and waits for its batch."""
        stats = slot.stats
        stats.enter(queued=True)
        queued = True
        batched: Any = None
        batcher: Any = None
        try:
            async with self.gate:
                stats.leave(queued=True)
                stats.enter(queued=False)
                queued = False
                body = await read_body(receive, headers, self.config.max_body_bytes)
                ctx["in"] = len(body)
                length = headers.get(b"inference-header-content-length")
                call = Call(slot, body, length.decode("latin-1") if length is not None else None, ctx["id"], arrival)
                try:
                    batcher = batcher_for(self, slot) if len(body) <= BATCH_BODY_BYTES else None
                    if batcher is not None:
                        batched = begin_batched(call, self.config.deadline_ms)
                        if batched[2].explicit_deadline or batched[2].explain or batched[2].per_item:
                            batched = None  # its own deadline (an explanation, per-item answers): it runs alone
                    if batched is None and slot.inline and len(body) <= INLINE_BODY_BYTES:
                        call.out = run_call(call, self.config.deadline_ms, self.audited)
                    elif batched is None:
                        call.out = await asyncio.get_running_loop().run_in_executor(
                            self.pool, run_call, call, self.config.deadline_ms, self.audited)
                finally:
                    if call.rid is not None:
                        ctx["id"] = call.rid
        finally:
            stats.leave(queued=queued)
        if batched is not None:
            model, req, pending = batched
            rid = call.rid if self.audited else pending.sent_id
            try:
                pred, first = await batcher.predict(model, pending.x, rid, pending.deadline_ms)
            except InputTypeError as exc:
                raise http_remedy(exc, slot, req.inputs) from None
            answer = finish_request(call, model, req, pred, pending, pending.started, time.perf_counter_ns())
            call.executions = 1 if first else 0
            done = time.perf_counter_ns()
            call.out = encode_response(slot.name, answer.version, call.rid, answer.tensors, answer.binary,
                                       answer.parameters)
            call.phases = (*call.phases[:3], call.phases[3] + time.perf_counter_ns() - done)
        return call
