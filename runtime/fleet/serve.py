"""``medinfer serve``: bundles behind the Open Inference Protocol (KServe v2 / Triton HTTP). Extra ``[serve]``.

    medinfer serve bundles/drug_activity_rf bundles/clinical_notes_tfidf --port 8000 --audit audit.jsonl

Routes (:mod:`.app`): health, server and model metadata, inference, and Triton's repository index, statistics and
model configuration extensions, plus Prometheus ``/metrics`` (:mod:`.metrics`). Requests go through the very
``Model.predict`` of the library (validation, deadline, audit record), so a request that the library refuses is
refused here with the same message: HTTP 400 for input errors, 404 for an unknown model, 503 while not ready (or
too busy), 504 past the deadline, 413 for an oversized body, 500 for a runtime failure; the body is the protocol's
``{"error": "..."}``.

Speed: uvicorn on httptools + uvloop (:mod:`.http`; ``--http h11`` for the pure-Python path), a plain ASGI app,
and models whose batch-1 prediction takes less than ``inline_below_ms`` run on the event loop itself (no hand-off
to a worker thread: for small models the hand-off cost more than the inference); larger models and large requests
go to a bounded worker pool.

Safety by default: binds 127.0.0.1; the body size, the header size, open connections and the number of requests
running and waiting are bounded (a request beyond them is answered 503 at once instead of queueing without end);
``/v2/health/ready`` turns true only after every bundle passed its sha256 integrity check and golden self-test
(bundles load in the background, so liveness answers at once); SIGTERM/SIGINT stop accepting, let running
requests finish (bounded by ``shutdown_timeout``), then close the audit trail.

FHIR (extra ``[fhir]``): a request with ``"parameters": {"fhir": true, "fhir_subject": "Patient/123"}`` gets the
result as a FHIR R4 transaction Bundle too, a JSON string in the response's ``parameters.fhir`` (see
:func:`medinfer.fleet.infer.fhir_request`); a model without a patient-facing mapping answers 400 unless
``"fhir_generic": true``.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._version import __version__
from ..audit import AuditLog
from ..audit.rotation import check_retention
from ..errors import MedinferError, NotReady, UnknownModel, UsageError, http_status
from ..extras import optional_import
from ..model import Model
from .app import App, Gate
from .http import HTTP_PATHS, available_http, bind, event_loop, guarded_protocol
from .metrics import ModelStats
from .protocol import input_metadata, output_metadata
from .repository import RepositoryMixin, expand_bundles
from .shared_weights import SharedGraph

log = logging.getLogger(__name__)

__all__ = ["ServeConfig", "Registry", "Slot", "serve", "http_status"]

# Triton numbers versions 1, 2, ...; a served bundle has one version, which also answers to "1" (export-triton
# writes it as version 1), so a Triton client asking for model_version="1" gets the bundle's version.
TRITON_VERSION = "1"
MAX_WORKERS = 64
GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider", "ROCMExecutionProvider",
                 "MIGraphXExecutionProvider")


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
    audit_key: str | None = None  # keyed chain (HMAC) under this device key file
    audit_head: bool = False  # anchored: LOG.head and its counter after each append
    audit_rotate_mb: float | None = None  # rotate the audit trail's active file past this size
    audit_retain_days: float | None = None  # delete rotated files older than this (>= 183 days)
    providers: Sequence[str] | None = None
    variant: str | None = None
    require_signature: bool = False
    trusted_keys: tuple[str, ...] = ()
    shutdown_timeout: float = 30.0
    access_log: bool = False
    out_of_domain: str = "flag"  # "no_result": a request with a sample outside the domain is answered 422
    request_timeout: float = 30.0  # a connection must deliver a whole request (headers + body) within this
    max_connections: int = 1024  # open connections; more are closed at once (liveness stays answerable)
    http: str = field(default_factory=available_http)  # "httptools" (with uvloop) or "h11"
    metrics_port: int | None = None  # also serve /metrics alone on this port (Triton's 8002 habit)
    inline_below_ms: float = 1.0  # models whose batch-1 prediction is faster run on the event loop (0: never)
    # Who may call what (medinfer.fleet.auth) and TLS (medinfer.fleet.tls); see serve_security.check_exposure.
    token_file: str | None = None
    auth_open: tuple[str, ...] = ("health",)
    client_cert_scopes: tuple[str, ...] | None = None  # None: infer, metadata, metrics with a client CA
    require_client_cert: tuple[str, ...] | None = None  # None: every group not open, with a client CA
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    insecure: bool = False  # bind a non-loopback address without authentication
    grpc_port: int | None = None  # also speak KServe v2 gRPC on this port
    max_elements: int = 1 << 20  # elements per input of a call, for inputs with a free axis besides the batch
    dynamic_batching: str = "auto"  # "auto": every batchable model; "pool": those in the worker pool; "off"
    max_batch: int = 64  # requests per dynamic batch (and the bundle's profile.max_batch)
    workers: int = 1  # processes behind the port (medinfer.fleet.workers)
    share_weights: bool = True  # with workers > 1: one mapped copy of each graph's weights (.shared_weights)
    log_format: str = "text"  # what the workers' logs are (the CLI sets up its own)

    def __post_init__(self) -> None:
        """Refuse settings that would start a server that cannot work (typed UsageError, exit code 2)."""
        def bad(option: str, value: Any, expected: str) -> UsageError:
            return UsageError(f"{option} {value!r}: expected {expected}")

        for option, port in (("--port", self.port), ("--metrics-port", self.metrics_port)):
            if port is not None and (not isinstance(port, int) or not 0 <= port <= 65535):
                raise bad(option, port, "0 (any free port) to 65535")
        if self.metrics_port is not None and self.metrics_port == self.port != 0:
            raise bad("--metrics-port", self.metrics_port, "a port other than --port")
        for option, value, low in (("--max-concurrency", self.max_concurrency, 1), ("--max-queue", self.max_queue, 0),
                                   ("--max-connections", self.max_connections, 1),
                                   ("--max-body-mb", self.max_body_bytes, 1)):
            if not isinstance(value, int) or value < low:
                raise bad(option, value, f"an integer >= {low}")
        for option, number in (("--deadline-ms", self.deadline_ms), ("--shutdown-timeout", self.shutdown_timeout),
                               ("--request-timeout", self.request_timeout)):
            if number is not None and not (isinstance(number, (int, float)) and math.isfinite(number) and number > 0):
                raise bad(option, number, "a finite number > 0")
        if not (isinstance(self.inline_below_ms, (int, float)) and math.isfinite(self.inline_below_ms)
                and self.inline_below_ms >= 0):
            raise bad("--inline-below-ms", self.inline_below_ms, "a finite number >= 0")
        if self.http not in HTTP_PATHS:
            raise bad("--http", self.http, f"one of {', '.join(HTTP_PATHS)}")
        if self.audit is not None and Path(self.audit).is_dir():
            raise bad("--audit", self.audit, "a file path (it names a folder)")
        if self.audit is not None and not Path(self.audit).parent.is_dir():
            raise bad("--audit", self.audit, f"a file in an existing folder ({Path(self.audit).parent} is none; "
                                             "create it first)")
        if self.audit_rotate_mb is not None and not (isinstance(self.audit_rotate_mb, (int, float))
                                                     and 0 < self.audit_rotate_mb < math.inf):
            raise bad("--audit-rotate-mb", self.audit_rotate_mb, "a number of MiB > 0")
        check_retention(self.audit_retain_days)  # at least 183 days (UsageError)
        if self.grpc_port is not None and (not isinstance(self.grpc_port, int) or not 0 <= self.grpc_port <= 65535
                                           or self.grpc_port in (self.port, self.metrics_port) and self.grpc_port):
            raise bad("--grpc-port", self.grpc_port, "0 (any free port) to 65535, not --port or --metrics-port")
        if not isinstance(self.max_elements, int) or self.max_elements < 1:
            raise bad("--max-elements", self.max_elements, "an integer >= 1")
        if self.dynamic_batching not in ("auto", "pool", "off"):
            raise bad("--dynamic-batching", self.dynamic_batching, "auto, pool or off")
        if not isinstance(self.max_batch, int) or self.max_batch < 1:
            raise bad("--max-batch", self.max_batch, "an integer >= 1")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or not 1 <= self.workers <= MAX_WORKERS:
            raise bad("--workers", self.workers, f"an integer from 1 to {MAX_WORKERS}")
        if self.log_format not in ("text", "json"):
            raise bad("--log-format", self.log_format, "text or json")
        from .security import check_exposure

        check_exposure(self)


class Slot:
    """One served bundle and its state: ``loading`` → ``ready`` or ``unavailable`` (with the error)."""

    def __init__(self, path: Path, name: str) -> None:
        self.path, self.name = path, name
        self.state = "loading"
        self.model: Model | None = None
        self.error: MedinferError | None = None
        self.inputs: list[Any] = []
        self.outputs: list[Any] = []
        self.stats = ModelStats(name)
        self.inline = False  # run on the event loop (measured fast enough at load)
        self.batch1_ms: float | None = None
        self.max_elements: int | None = None  # per input per call, for inputs of free length (serve's bound)

    def ready_model(self) -> Any:
        model = self.model
        if self.state == "ready" and model is not None:
            return model
        if self.state == "unloaded":
            raise NotReady(f"model '{self.name}' is unloaded; POST /v2/repository/models/{self.name}/load serves it "
                           "again")
        if self.state == "loading":
            raise NotReady(f"model '{self.name}' is loading (integrity check and self-test); retry shortly")
        raise NotReady(f"model '{self.name}' is unavailable: {type(self.error).__name__}: {self.error}")

    def publish(self, other: Slot) -> None:
        """Serve ``other``'s loaded model from now on (a swap: requests running keep the model they started with)."""
        self.inputs, self.outputs, self.batch1_ms, self.inline = other.inputs, other.outputs, other.batch1_ms, \
            other.inline
        self.path, self.error = other.path, None
        self.stats.version = other.stats.version
        self.model = other.model
        self.state = "ready"

    def metadata(self) -> dict[str, Any]:
        version = self.model.version if self.model is not None else None
        return {"name": self.name, "versions": [version] if version else [], "platform": "onnxruntime_onnx",
                "inputs": [t.to_json() for t in self.inputs], "outputs": [t.to_json() for t in self.outputs]}

    def config(self, config: ServeConfig) -> dict[str, Any]:
        """Triton's model configuration (JSON) of this model as served: the config that ``export-triton --backend
        python`` writes for the bundle, with this server's scheduling (no dynamic batching: one request, one run)."""
        from .triton.repository import TritonOptions, model_config

        model = self.ready_model()
        kind = "gpu" if model.providers[0] in GPU_PROVIDERS else "cpu"
        options = TritonOptions(backend="python", max_batch_size=model.manifest.profile.max_batch,
                                instances=config.max_concurrency, instance_kind=kind, warmup=False)
        doc = model_config(model.manifest, options, outputs=self.outputs, variant=model.variant)
        doc.pop("dynamic_batching", None)
        doc["backend"] = "medinfer"
        doc["platform"] = "onnxruntime_onnx"
        doc["version_policy"] = {"specific": {"versions": [int(TRITON_VERSION)]}}
        doc["parameters"].update({k: {"string_value": str(v)} for k, v in (
            ("model_version", model.version), ("model_sha256", model.model_sha256),
            ("manifest_sha256", model.manifest_sha256), ("variant", model.variant),
            ("provider", model.providers[0]), ("inline", str(self.inline).lower()))})
        return doc


class Registry(RepositoryMixin):
    """The served bundles by model name; :meth:`load_all` verifies, self-tests and publishes them; the repository
    extension (:mod:`.repository`) loads, re-loads and unloads them while serving."""

    def __init__(self, config: ServeConfig, audit: AuditLog | None,
                 shared: dict[str, SharedGraph] | None = None) -> None:
        from ..manifest import load_manifest

        self.config, self.audit = config, audit
        self.shared = shared or {}  # bundle path -> its graph with shared weights (--workers: .shared_weights)
        self.slots: dict[str, Slot] = {}
        self._swap_lock = threading.Lock()
        bundles, self.roots = expand_bundles(config.bundles)
        for path in bundles:
            try:
                name = load_manifest(path).name
            except MedinferError:
                name = path.name  # loading will report the manifest error on this slot
            if name in self.slots:
                raise UsageError(f"two bundles are named '{name}' ({self.slots[name].path} and {path}); "
                                 "serve each model once")
            self.slots[name] = self._new_slot(path, name)
        self.loaded = threading.Event()

    def _new_slot(self, path: Path, name: str) -> Slot:
        slot = Slot(path, name)
        slot.max_elements = self.config.max_elements
        return slot

    def load_all(self) -> None:
        """Load every bundle (sha256 of every file, signature policy, golden self-test); never raises."""
        for slot in list(self.slots.values()):
            self._load_slot(slot, slot.path)
        self.loaded.set()

    def _load_slot(self, slot: Slot, path: Path) -> None:
        """Load one bundle into ``slot`` (ready, or unavailable with the error); never raises."""
        from ..loader import load

        start = time.perf_counter()
        try:
            model = load(path, self.config.providers, variant=self.config.variant,
                         require_signature=self.config.require_signature,
                         trusted_keys=self.config.trusted_keys)
            slot.inputs, slot.outputs = input_metadata(model.manifest), output_metadata(model)
            self._share_weights(model, path)
            slot.batch1_ms = batch1_ms(model)
            slot.inline = slot.batch1_ms < self.config.inline_below_ms
            # audit and deadline only now, so the golden runs above leave no audit record
            model.configure(audit=self.audit, deadline_ms=self.config.deadline_ms,
                            out_of_domain=self.config.out_of_domain)
            slot.stats.version = model.version
            slot.model, slot.state = model, "ready"
            log.info("%s %s ready in %.2f s (verified, self-test passed; batch 1 in %.3f ms: %s)", model.name,
                     model.version, time.perf_counter() - start, slot.batch1_ms,
                     "on the event loop" if slot.inline else "in the worker pool")
        except MedinferError as exc:
            slot.error, slot.state = exc, "unavailable"
            log.error("%s unavailable: %s: %s", slot.path, type(exc).__name__, exc)
        except Exception as exc:  # noqa: BLE001 - a broken bundle must not take the server down
            slot.error, slot.state = MedinferError(f"unexpected {type(exc).__name__}: {exc}"), "unavailable"
            log.exception("%s unavailable", slot.path)

    def _share_weights(self, model: Model, path: Path) -> None:
        """Serve ``model`` from the shared weights the parent prepared for ``path`` (``--workers``), if any; a
        refusal is logged and the model keeps its own sessions."""
        shared = self.shared.get(str(path))
        if shared is None:
            return
        from .shared_weights import adopt

        try:
            adopt(model, shared)
        except MedinferError as exc:
            log.warning("%s: serving from this worker's own copy of the weights: %s", model.name, exc)
            return
        log.info("%s: %d weight tensor(s), %.1f MiB, mapped from the one shared copy (golden self-test passed on "
                 "it)", model.name, shared.tensors, shared.weights_bytes / 2**20)

    @property
    def ready(self) -> bool:
        return all(s.state in ("ready", "unloaded") for s in list(self.slots.values()))

    def get(self, name: str, version: str | None = None) -> Slot:
        """The slot of ``name``; ``version`` must be the bundle's version or Triton's ``"1"``."""
        slot = self.slots.get(name)
        if slot is None:
            raise UnknownModel("model", name, self.slots, "; GET /v2/repository/index lists what this server serves")
        if version is not None and slot.model is not None and version not in (slot.model.version, TRITON_VERSION):
            raise UnknownModel("version", version, [slot.model.version], f"; version {TRITON_VERSION} (Triton's "
                               "numbering) also names it", of=f"model '{name}'")
        return slot


def batch1_ms(model: Model, runs: int = 7, budget_s: float = 0.25) -> float:
    """The fastest of a few batch-1 predictions of the golden input's first sample, in ms: at most ``runs``, and
    no more once ``budget_s`` is spent (a slow model goes to the worker pool whatever its best run; measuring it
    seven times only delayed its readiness)."""
    inputs, _ = model.golden()
    one = {k: v[:1] for k, v in inputs.items()} if model.manifest.inputs[0].shape and \
        isinstance(model.manifest.inputs[0].shape[0], str) else inputs
    x = model.as_input(one)
    best, began = math.inf, time.perf_counter()
    for _ in range(runs):
        start = time.perf_counter()
        model.predict(x)
        best = min(best, time.perf_counter() - start)
        if time.perf_counter() - began > budget_s:
            break
    return best * 1e3


@dataclass
class Inherited:
    """What a worker process of ``--workers`` gets from the parent: the listening sockets (HTTP, then the metrics
    port's if any) and the shared graphs by bundle path."""

    sockets: list[Any]
    shared: dict[str, SharedGraph]


def serve(config: ServeConfig, on_listening: Callable[..., None] | None = None, *,
          inherited: Inherited | None = None) -> int:
    """Run the server until SIGTERM/SIGINT; returns the signal number that stopped it (0 if none). With
    ``config.workers`` > 1 this process supervises that many worker processes (:mod:`.workers`); ``inherited`` is
    what such a worker got from it.

    Raises:
        MissingExtraError: uvicorn or prometheus-client is not installed (``pip install 'medinfer[serve]'``).
    """
    optional_import("prometheus_client", "serve", "medinfer serve")
    uvicorn = optional_import("uvicorn", "serve", "medinfer serve")
    from .metrics import Metrics

    if not config.bundles:
        raise UsageError("medinfer serve needs at least one bundle")
    if config.workers > 1 and inherited is None:
        from .workers import serve_workers

        return serve_workers(config, on_listening)
    audit = AuditLog.shared(config.audit, key=config.audit_key, head=config.audit_head,
                            rotate_mb=config.audit_rotate_mb, retain_days=config.audit_retain_days) \
        if config.audit else None
    if audit is not None:  # an unwritable trail is found now, not at the first request (AuditError, exit 12)
        audit.event("serve_started", bundles=[str(b) for b in config.bundles], pid=os.getpid(), medinfer=__version__)
    from .auth import Authorizer
    from .security import auth_policy, tls_config

    tls = tls_config(config)
    auth = Authorizer(auth_policy(config), audit)
    registry = Registry(config, audit, inherited.shared if inherited is not None else None)
    pool = ThreadPoolExecutor(max_workers=config.max_concurrency, thread_name_prefix="medinfer-infer")
    if inherited is not None:
        sockets = list(inherited.sockets)
    else:
        sockets = [bind(config.host, config.port)]
        if config.metrics_port is not None:
            sockets.append(bind(config.host, config.metrics_port))
    host, port = sockets[0].getsockname()[:2]
    metrics_port = sockets[1].getsockname()[1] if len(sockets) > 1 else None
    metrics = Metrics(lambda: [(s.stats, s.state == "ready") for s in registry.slots.values()])
    app = App(registry, config, pool, Gate(config.max_concurrency, config.max_queue), metrics, metrics_port, auth)
    uv = uvicorn.Config(
        app, lifespan="off", http=guarded_protocol(config.http, config.request_timeout, config.max_connections),
        loop=event_loop(config.http), log_level="warning", access_log=False,
        timeout_graceful_shutdown=math.ceil(config.shutdown_timeout),
        log_config=None,  # uvicorn's records go through the root logger: JSON in --log-format json
        ssl_context_factory=tls.uvicorn_factory() if tls is not None else None,
        ssl_certfile=tls.cert if tls is not None else None,
    )
    grpc_server: list[Any] = []  # (server, port) once listening

    class Server(uvicorn.Server):  # type: ignore[misc,name-defined]
        async def startup(self, sockets: Any = None) -> None:
            import asyncio

            app.loop = asyncio.get_running_loop()
            if config.grpc_port is not None:  # grpc.aio on this loop: its calls share the gate, pool and batchers
                from .grpc_server import start_grpc

                grpc_server[:] = await start_grpc(registry, config, auth, tls, config.host, app)
            await super().startup(sockets=sockets)
            if self.should_exit and grpc_server:  # stopped while starting: uvicorn returns without shutdown()
                await grpc_server[0].stop(0)
            elif on_listening is not None:
                on_listening(host, port, grpc_server[1]) if grpc_server else on_listening(host, port)

        async def shutdown(self, sockets: Any = None) -> None:
            if grpc_server:  # gRPC first, while this loop still runs the batches its calls wait for
                await grpc_server[0].stop(config.shutdown_timeout)
            await super().shutdown(sockets=sockets)

    server = Server(uv)
    stopped: list[int] = []
    main = threading.current_thread() is threading.main_thread()
    # uvicorn re-raises the signal it shut down for; these handlers take it so the clean-up below still runs.
    previous = {s: signal.signal(s, lambda sig, _f: stopped.append(sig)) for s in (signal.SIGINT, signal.SIGTERM)} \
        if main else {}
    if inherited is not None:  # a --workers process takes connections only once its models are ready: one that
        registry.load_all()    # starts or restarts beside the others never answers 503 "loading" for them
        server.should_exit = bool(stopped)  # SIGTERM while loading: start and stop at once (no request taken)
    else:
        threading.Thread(target=registry.load_all, name="medinfer-load", daemon=True).start()
    log.info("HTTP path: %s on %s; metrics at /metrics%s", config.http, event_loop(config.http),
             f" and on port {metrics_port}" if metrics_port is not None else "")
    try:
        server.run(sockets=sockets)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        pool.shutdown(wait=True)
        for sock in sockets:
            sock.close()
        if audit is not None:
            audit.close()
    log.info("medinfer serve stopped (%s)", signal.Signals(stopped[0]).name if stopped else "no signal")
    return stopped[0] if stopped else 0
