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
from collections.abc import Callable
from typing import Any

from .._version import __version__
from ..errors import Busy, MedinferError, http_status
from .infer import Call, ClientGone, read_body, run_call
from .protocol import error_body

log = logging.getLogger(__name__)
access_log = logging.getLogger("medinfer.access")

EXTENSIONS = ["binary_tensor_data", "model_repository", "statistics", "model_configuration", "metrics"]
INLINE_BODY_BYTES = 256 << 10  # larger requests of inline models still go to the worker pool
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


def header_safe(value: str | None) -> bytes | None:
    """``value`` as an HTTP header value, or None when it cannot be one unchanged (non-ASCII, control chars)."""
    if value is None or not value.isascii() or not value.isprintable():
        return None
    return value.encode("ascii")


class App:
    """The ASGI application. ``registry`` holds the slots, ``gate`` bounds the worker pool, ``metrics`` renders
    the Prometheus text (None: ``/metrics`` answers 404), ``metrics_port`` serves only ``/metrics`` and health."""

    def __init__(self, registry: Any, config: Any, pool: Any, gate: Any, metrics: Any = None,
                 metrics_port: int | None = None) -> None:
        self.registry, self.config, self.pool, self.gate = registry, config, pool, gate
        self.metrics, self.metrics_port = metrics, metrics_port
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
        ctx: dict[str, Any] = {"id": raw_id.decode("latin-1") if raw_id else None}
        status = 500
        try:
            status = await self.route(scope, receive, send, headers, ctx)
        except ClientGone:
            status = 499
        finally:
            if self.config.access_log:
                fields = {"id": ctx.get("id"), "method": scope["method"], "path": scope["path"], "status": status,
                          "client": (scope.get("client") or ("", 0))[0],
                          "duration_ms": round((time.perf_counter_ns() - begin) / 1e6, 3)}
                if "model" in ctx:
                    fields.update(model=ctx["model"], version=ctx.get("version"), batch=ctx.get("batch"))
                    for name, ns in zip(("queue_ms", "input_ms", "infer_ms", "output_ms"), ctx.get("phases") or ()):
                        fields[name] = round(ns / 1e6, 3)
                if "error" in ctx:
                    fields["error"] = ctx["error"]
                access_log.info("%s %s %s", scope["method"], scope["path"], status, extra={"access": fields})

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
        if target is None:
            return await self.send_error(send, 404, f"no route {method} {scope['path']}: see GET /v2 for this "
                                         "server's extensions", ctx)
        if method != target[0] and not (method == "HEAD" and target[0] == "GET"):
            return await self.send_error(send, 405, f"{scope['path']} takes {target[0]}, not {method}", ctx)
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

    async def send_error(self, send: Any, status: int, message: str, ctx: dict[str, Any]) -> int:
        ctx["error"] = message
        extra = [(b"retry-after", b"1")] if status == 503 else None
        return await self.respond(send, status, error_body(message), ctx, extra=extra)

    async def fail(self, send: Any, exc: BaseException, ctx: dict[str, Any]) -> int:
        message = f"{type(exc).__name__}: {exc}" if isinstance(exc, MedinferError) else str(exc)
        return await self.send_error(send, http_status(exc), message, ctx)

    async def health(self, send: Any, ok: bool, reason: str, ctx: dict[str, Any]) -> int:
        """KServe v2 health: 200 (true) or 400 (false), empty body; the reason in a header."""
        if ok:
            return await self.respond(send, 200, b"", ctx)
        ctx["error"] = reason
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
        doc = [{"name": s.name, "version": s.model.version if s.model else "",
                "state": {"ready": "READY", "loading": "LOADING"}.get(s.state, "UNAVAILABLE"),
                "reason": str(s.error) if s.error else ""} for s in self.registry.slots.values()]
        return await self.send_json(send, doc, ctx)

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
            body = await read_body(receive, headers, self.config.max_body_bytes)
            length = headers.get(b"inference-header-content-length")
            call = Call(slot, body, length.decode("latin-1") if length is not None else None, ctx["id"],
                        time.perf_counter_ns())
            try:
                if slot.inline and len(body) <= INLINE_BODY_BYTES:
                    out, json_length = run_call(call, self.config.deadline_ms, self.audited)
                else:
                    out, json_length = await self.pooled(call)
            finally:
                if call.rid is not None:
                    ctx["id"] = call.rid
        except ClientGone:
            if stats is not None:
                stats.record(time.perf_counter_ns() - begin, reason="cancelled")
            raise
        except MedinferError as exc:
            if stats is not None:
                stats.record(time.perf_counter_ns() - begin, reason=exc.code)
            return await self.fail(send, exc, ctx)
        except Exception as exc:  # noqa: BLE001 - answer 500 in the protocol's shape, log the trace
            log.exception("inference failed")
            if stats is not None:
                stats.record(time.perf_counter_ns() - begin, reason="internal")
            return await self.fail(send, MedinferError(f"internal error: {type(exc).__name__}: {exc}"), ctx)
        stats.record(time.perf_counter_ns() - begin, call.phases, call.batch)
        ctx["batch"], ctx["phases"] = call.batch, call.phases
        if json_length is None:
            return await self.respond(send, 200, out, ctx)
        return await self.respond(send, 200, out, ctx, b"application/octet-stream",
                                  [(b"inference-header-content-length", str(json_length).encode())])

    async def pooled(self, call: Call) -> tuple[bytes, int | None]:
        stats = call.slot.stats
        stats.enter(queued=True)
        queued = True
        try:
            async with self.gate:
                stats.leave(queued=True)
                stats.enter(queued=False)
                queued = False
                return await asyncio.get_running_loop().run_in_executor(
                    self.pool, run_call, call, self.config.deadline_ms, self.audited)
        finally:
            stats.leave(queued=queued)
