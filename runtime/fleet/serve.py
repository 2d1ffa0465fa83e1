"""``medinfer serve``: bundles behind the Open Inference Protocol (KServe v2 / Triton HTTP). Extra ``[serve]``.

    medinfer serve bundles/drug_activity_rf bundles/clinical_notes_tfidf --port 8000 --audit audit.jsonl

Endpoints: ``GET /v2``, ``/v2/health/live``, ``/v2/health/ready``, ``/v2/models/{name}[/versions/{v}]`` (metadata),
``…/ready``, ``POST …/infer``, ``POST /v2/repository/index``. Requests go through the very ``Model.predict`` of the
library (validation, deadline, audit record), so a request that the library refuses is refused here with the
same message: HTTP 400 for input errors, 404 for an unknown model, 503 while not ready (or too busy), 504 past the
deadline, 413 for an oversized body, 500 for a runtime failure; the body is the protocol's ``{"error": "..."}``.

Safety by default: binds 127.0.0.1; the body size and the number of requests running and waiting are bounded
(a request beyond them is answered 503 at once instead of queueing without end); ``/v2/health/ready`` turns true
only after every bundle passed its sha256 integrity check and golden self-test (bundles load in the background,
so liveness answers at once); SIGTERM/SIGINT stop accepting, let running requests finish (bounded by
``shutdown_timeout``), then close the audit trail. uvicorn (h11) + starlette are imported only here.

FHIR (extra ``[fhir]``): a request with ``"parameters": {"fhir": true, "fhir_subject": "Patient/123"}`` gets the
result as a FHIR R4 transaction Bundle too, a JSON string in the response's ``parameters.fhir`` (see
:func:`medinfer.fleet.protocol.fhir_request`); a model without a patient-facing mapping answers 400 unless
``"fhir_generic": true``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._version import __version__
from ..audit import AuditLog
from ..errors import (
    AuditError,
    BodyTooLarge,
    DeadlineExceeded,
    InputError,
    MedinferError,
    MissingExtraError,
    NotReady,
    OutOfDomainError,
    RequestError,
    UnknownModel,
    UsageError,
)
from ..model import Model
from .protocol import (
    HEADER_LENGTH,
    decode_request,
    encode_response,
    error_body,
    fhir_request,
    input_metadata,
    output_metadata,
    prediction_tensors,
    read_body,
)

log = logging.getLogger(__name__)



def http_status(exc: BaseException) -> int:
    """The HTTP status of an error: the protocol's mapping of medinfer's typed errors."""
    if isinstance(exc, BodyTooLarge):
        return 413
    if isinstance(exc, InputError):
        return 400
    if isinstance(exc, OutOfDomainError):
        return 422
    if isinstance(exc, UnknownModel):
        return 404
    if isinstance(exc, (NotReady, AuditError)):
        return 503
    if isinstance(exc, DeadlineExceeded):
        return 504
    return 500


@dataclass(frozen=True)
class ServeConfig:
    """Everything ``medinfer serve`` can be told. Sizes in bytes, times in seconds unless named ``_ms``."""

    bundles: tuple[str, ...]
    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = 64 << 20
    max_concurrency: int = field(default_factory=lambda: max(1, len(os.sched_getaffinity(0))))
    max_queue: int = 64
    deadline_ms: float | None = None
    audit: str | None = None
    providers: Sequence[str] | None = None
    variant: str | None = None
    require_signature: bool = False
    trusted_keys: tuple[str, ...] = ()
    shutdown_timeout: float = 30.0
    access_log: bool = False
    out_of_domain: str = "flag"  # "no_result": a request with a sample outside the domain is answered 422
    request_timeout: float = 30.0  # a connection must deliver a whole request (headers + body) within this
    max_connections: int = 1024  # open connections; more are closed at once (liveness stays answerable)

    def __post_init__(self) -> None:
        """Refuse settings that would start a server that cannot work (typed UsageError, exit code 2)."""
        def bad(option: str, value: Any, expected: str) -> UsageError:
            return UsageError(f"{option} {value!r}: expected {expected}")

        if not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise bad("--port", self.port, "0 (any free port) to 65535")
        for option, value, low in (("--max-concurrency", self.max_concurrency, 1), ("--max-queue", self.max_queue, 0),
                                   ("--max-connections", self.max_connections, 1),
                                   ("--max-body-mb", self.max_body_bytes, 1)):
            if not isinstance(value, int) or value < low:
                raise bad(option, value, f"an integer >= {low}")
        for option, number in (("--deadline-ms", self.deadline_ms), ("--shutdown-timeout", self.shutdown_timeout),
                               ("--request-timeout", self.request_timeout)):
            if number is not None and not (isinstance(number, (int, float)) and math.isfinite(number) and number > 0):
                raise bad(option, number, "a finite number > 0")
        if self.audit is not None and Path(self.audit).is_dir():
            raise bad("--audit", self.audit, "a file path (it names a folder)")


class Slot:
    """One served bundle and its state: ``loading`` → ``ready`` or ``unavailable`` (with the error)."""

    def __init__(self, path: Path, name: str) -> None:
        self.path, self.name = path, name
        self.state = "loading"
        self.model: Model | None = None
        self.error: MedinferError | None = None
        self.inputs: list[Any] = []
        self.outputs: list[Any] = []

    def ready_model(self) -> Any:
        if self.state == "ready":
            return self.model
        if self.state == "loading":
            raise NotReady(f"model '{self.name}' is loading (integrity check and self-test); retry shortly")
        raise NotReady(f"model '{self.name}' is unavailable: {type(self.error).__name__}: {self.error}")

    def metadata(self) -> dict[str, Any]:
        version = self.model.version if self.model is not None else None
        return {"name": self.name, "versions": [version] if version else [], "platform": "onnxruntime_onnx",
                "inputs": [t.to_json() for t in self.inputs], "outputs": [t.to_json() for t in self.outputs]}


class Registry:
    """The served bundles by model name; :meth:`load_all` verifies, self-tests and publishes them."""

    def __init__(self, config: ServeConfig, audit: AuditLog | None) -> None:
        from ..manifest import load_manifest

        self.config, self.audit = config, audit
        self.slots: dict[str, Slot] = {}
        for arg in config.bundles:
            path = Path(arg)
            try:
                name = load_manifest(path).name
            except MedinferError:
                name = path.name  # loading will report the manifest error on this slot
            if name in self.slots:
                raise UsageError(f"two bundles are named '{name}' ({self.slots[name].path} and {path}); "
                                 "serve each model once")
            self.slots[name] = Slot(path, name)
        self.loaded = threading.Event()

    def load_all(self) -> None:
        """Load every bundle (sha256 of every file, signature policy, golden self-test); never raises."""
        from ..loader import load

        for slot in self.slots.values():
            start = time.perf_counter()
            try:
                model = load(slot.path, self.config.providers, variant=self.config.variant,
                             require_signature=self.config.require_signature,
                             trusted_keys=self.config.trusted_keys)
                slot.inputs, slot.outputs = input_metadata(model.manifest), output_metadata(model)
                # audit and deadline only now, so the golden run above leaves no audit record
                model.configure(audit=self.audit, deadline_ms=self.config.deadline_ms,
                                out_of_domain=self.config.out_of_domain)
                slot.model, slot.state = model, "ready"
                log.info("%s %s ready in %.2f s (verified, self-test passed)", model.name, model.version,
                         time.perf_counter() - start)
            except MedinferError as exc:
                slot.error, slot.state = exc, "unavailable"
                log.error("%s unavailable: %s: %s", slot.path, type(exc).__name__, exc)
            except Exception as exc:  # noqa: BLE001 - a broken bundle must not take the server down
                slot.error, slot.state = MedinferError(f"unexpected {type(exc).__name__}: {exc}"), "unavailable"
                log.exception("%s unavailable", slot.path)
        self.loaded.set()

    @property
    def ready(self) -> bool:
        return all(s.state == "ready" for s in self.slots.values())

    def get(self, name: str, version: str | None = None) -> Slot:
        slot = self.slots.get(name)
        if slot is None:
            raise UnknownModel("model", name, self.slots, "; GET /v2/repository/index lists what this server serves")
        if version is not None and slot.model is not None and version != slot.model.version:
            raise UnknownModel("version", version, [slot.model.version], of=f"model '{name}'")
        return slot


class Gate:
    """At most ``slots`` requests running and ``queue`` waiting; any more are refused at once (503)."""

    def __init__(self, slots: int, queue: int) -> None:
        self.slots, self.queue = slots, queue
        self.waiting = 0
        self._sem = asyncio.Semaphore(slots)  # binds to the server's loop on first use

    async def __aenter__(self) -> None:
        if self._sem.locked() and self.waiting >= self.queue:
            raise NotReady(f"server busy: {self.slots} requests running and {self.waiting} waiting; retry later")
        self.waiting += 1
        try:
            await self._sem.acquire()
        finally:
            self.waiting -= 1

    async def __aexit__(self, *exc: Any) -> None:
        self._sem.release()


def _infer(slot: Slot, body: bytes, header: str | None, arrival: float, server_deadline_ms: float | None
           ) -> tuple[bytes, int | None]:
    """Decode, predict through the library, encode: runs in a worker thread."""
    model = slot.ready_model()
    req = decode_request(body, header)
    names = model.input_names
    sent = list(req.inputs)
    if sorted(sent) != sorted(names):
        raise RequestError(f"model '{slot.name}' takes input(s) {list(names)}; the request sent {sent}")
    x = req.inputs[names[0]] if len(names) == 1 else req.inputs
    deadline = server_deadline_ms
    asked = req.parameters.get("deadline_ms")
    if asked is not None:
        if isinstance(asked, bool) or not isinstance(asked, (int, float)) or not asked > 0:
            raise RequestError(f"parameters.deadline_ms must be a positive number, got {asked!r}")
        deadline = float(asked) if deadline is None else min(deadline, float(asked))
    if deadline is not None:
        # Time spent queueing counts; a request whose time is up still goes through predict so that the audit
        # trail records the refusal.
        deadline = max(deadline - (time.perf_counter() - arrival) * 1e3, 1e-3)
    fhir = fhir_request(req.parameters)
    pred = model.predict(x, deadline_ms=deadline, request_id=req.id)
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
        params["domain_threshold"] = model.manifest.domain.threshold  # type: ignore[union-attr]
        params["out_of_domain"] = int((~pred.in_domain).sum())
    if fhir is not None:
        try:
            params["fhir"] = json.dumps(pred.to_fhir(**fhir), separators=(",", ":"))
        except (UsageError, MissingExtraError) as exc:
            raise RequestError(f"parameters.fhir: {exc}") from None
    return encode_response(slot.name, pred.version, req.id, tensors, binary, params)


def build_app(registry: Registry, config: ServeConfig, pool: ThreadPoolExecutor) -> Any:
    """The starlette application (routes of the Open Inference Protocol)."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    gate = Gate(config.max_concurrency, config.max_queue)

    def error(exc: BaseException) -> Response:
        status = http_status(exc)
        message = f"{type(exc).__name__}: {exc}" if isinstance(exc, MedinferError) else str(exc)
        headers = {"Retry-After": "1"} if status == 503 else None
        return Response(error_body(message), status_code=status, media_type="application/json", headers=headers)

    async def live(_: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(_: Request) -> Response:
        audit = registry.audit
        if audit is not None and not audit.probe():
            return error(NotReady(f"not ready: the audit trail cannot be written ({audit.failed}); no result is "
                                  "returned that could not be recorded"))
        if registry.ready:
            return JSONResponse({"ready": True})
        states = ", ".join(f"{s.name}: {s.state}" for s in registry.slots.values())
        return error(NotReady(f"not ready ({states})"))

    async def server_metadata(_: Request) -> Response:
        return JSONResponse({"name": "medinfer", "version": __version__, "extensions": ["binary_tensor_data"]})

    async def model_metadata(request: Request) -> Response:
        try:
            slot = registry.get(request.path_params["name"], request.path_params.get("version"))
            slot.ready_model()
        except MedinferError as exc:
            return error(exc)
        return JSONResponse(slot.metadata())

    async def model_ready(request: Request) -> Response:
        try:
            registry.get(request.path_params["name"], request.path_params.get("version")).ready_model()
        except MedinferError as exc:
            return error(exc)
        return JSONResponse({"name": request.path_params["name"], "ready": True})

    async def index(_: Request) -> Response:
        return JSONResponse([{"name": s.name, "version": s.model.version if s.model else "",
                              "state": {"ready": "READY", "loading": "LOADING"}.get(s.state, "UNAVAILABLE"),
                              "reason": str(s.error) if s.error else ""} for s in registry.slots.values()])

    async def infer(request: Request) -> Response:
        arrival = time.perf_counter()
        try:
            slot = registry.get(request.path_params["name"], request.path_params.get("version"))
            slot.ready_model()
            body = await read_body(request, config.max_body_bytes)
            async with gate:
                loop = asyncio.get_running_loop()
                out, json_length = await loop.run_in_executor(
                    pool, _infer, slot, body, request.headers.get(HEADER_LENGTH), arrival, config.deadline_ms)
        except MedinferError as exc:
            return error(exc)
        except Exception as exc:  # noqa: BLE001 - answer 500 in the protocol's shape, log the trace
            log.exception("inference failed")
            return error(MedinferError(f"internal error: {type(exc).__name__}: {exc}"))
        if json_length is None:
            return Response(out, media_type="application/json")
        return Response(out, media_type="application/octet-stream",
                        headers={"Inference-Header-Content-Length": str(json_length)})

    async def http_error(_: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        return Response(error_body(str(getattr(exc, "detail", exc))), status_code=status,
                        media_type="application/json")

    model = "/v2/models/{name}"
    versioned = "/v2/models/{name}/versions/{version}"
    routes = [
        Route("/v2", server_metadata), Route("/v2/health/live", live), Route("/v2/health/ready", ready),
        Route("/v2/repository/index", index, methods=["POST"]),
        Route(model, model_metadata), Route(versioned, model_metadata),
        Route(model + "/ready", model_ready), Route(versioned + "/ready", model_ready),
        Route(model + "/infer", infer, methods=["POST"]), Route(versioned + "/infer", infer, methods=["POST"]),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error})


def guarded_protocol(config: ServeConfig) -> type:
    """uvicorn's h11 protocol with two bounds it lacks: a connection must deliver each whole request within
    ``request_timeout`` seconds (from its opening or its previous response), else it is closed — idle or
    trickling sockets cannot pile up; and at most ``max_connections`` are open — more are answered 503 and closed.
    Requests are not limited by uvicorn's ``limit_concurrency`` (idle sockets would then turn every request, health
    checks included, into 503): inference is bounded by the server's own Gate."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    timeout, limit = config.request_timeout, config.max_connections
    body = b'{"error": "too many open connections; retry"}'
    busy = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\n"
            b"retry-after: 1\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)

    class GuardedH11Protocol(H11Protocol):  # type: ignore[misc]
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > limit:
                transport.write(busy)
                transport.close()
                return
            self._arm()

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(timeout, self._expired)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expired(self) -> None:
            self._deadline = None
            waiting = self.cycle is None or self.cycle.response_complete or self.cycle.more_body
            if waiting and not self.transport.is_closing():
                log.info("closing a connection that sent no whole request within %g s", timeout)
                with contextlib.suppress(h11.LocalProtocolError):
                    self.conn.send(h11.ConnectionClosed())
                self.transport.close()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.cycle is not None and not self.cycle.response_complete and not self.cycle.more_body:
                self._disarm()  # the whole request is here: the app's time is bounded by the deadline and the Gate

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return GuardedH11Protocol


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket on ``host:port`` (port 0: any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say TCP, and without it every response
    # (headers and body are two writes) waits ~40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)  # connections made right after the announcement wait in the backlog, not refused
    return sock


def serve(config: ServeConfig, on_listening: Callable[[str, int], None] | None = None) -> int:
    """Run the server until SIGTERM/SIGINT; returns the signal number that stopped it (0 if none).

    Raises:
        MissingExtraError: starlette/uvicorn are not installed (``pip install 'medinfer[serve]'``).
    """
    try:
        import starlette  # noqa: F401
        import uvicorn
    except ImportError as exc:
        raise MissingExtraError("medinfer serve", "serve", getattr(exc, "name", None)) from None
    if not config.bundles:
        raise UsageError("medinfer serve needs at least one bundle")
    audit = AuditLog.shared(config.audit) if config.audit else None
    if audit is not None:  # an unwritable trail is found now, not at the first request (AuditError, exit 12)
        audit.event("serve_started", bundles=[str(b) for b in config.bundles], pid=os.getpid(), medinfer=__version__)
    registry = Registry(config, audit)
    pool = ThreadPoolExecutor(max_workers=config.max_concurrency, thread_name_prefix="medinfer-infer")
    sock = bind(config.host, config.port)
    host, port = sock.getsockname()[:2]
    uv = uvicorn.Config(
        build_app(registry, config, pool), lifespan="off", http=guarded_protocol(config), log_level="warning",
        access_log=config.access_log, timeout_graceful_shutdown=math.ceil(config.shutdown_timeout),
    )
    server = uvicorn.Server(uv)
    stopped: list[int] = []
    main = threading.current_thread() is threading.main_thread()
    # uvicorn re-raises the signal it shut down for; these handlers take it so the clean-up below still runs.
    previous = {s: signal.signal(s, lambda sig, _f: stopped.append(sig)) for s in (signal.SIGINT, signal.SIGTERM)} \
        if main else {}
    threading.Thread(target=registry.load_all, name="medinfer-load", daemon=True).start()
    if on_listening is not None:
        on_listening(host, port)
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        pool.shutdown(wait=True)
        sock.close()
        if audit is not None:
            audit.close()
    log.info("medinfer serve stopped (%s)", signal.Signals(stopped[0]).name if stopped else "no signal")
    return stopped[0] if stopped else 0
