"""KServe v2 / Triton gRPC for ``medinfer serve`` (``--grpc-port``), on grpcio.

The service is Triton's ``inference.GRPCInferenceService`` (grpc_service.proto, whose KServe v2 core is the
Open Inference Protocol's gRPC API); its messages are the generated modules that NVIDIA ships in
``tritonclient[grpc]`` (``tritonclient.grpc.service_pb2``, ``model_config_pb2``), so the server and every
Triton/KServe client speak one compiled copy of the proto. It runs on grpc.aio in the HTTP server's own event
loop and shares everything with HTTP: the model slots, the gate, the worker pool and the dynamic batchers (so
gRPC and HTTP requests that wait at the same time run as one batch, and a model fast enough runs on the loop with
no thread hand-off), the request path (:func:`medinfer.fleet.infer.predict_request`: ids, element bound, deadline,
``Model.predict``, audit record), the statistics and Prometheus counters, and the auth policy (tokens as
``authorization`` metadata, client certificates through grpcio's mutual TLS).

Bounds: messages above ``--max-body-mb`` are refused by grpcio (RESOURCE_EXHAUSTED) before they are handed over;
inference runs at most ``--max-concurrency`` at once with ``--max-queue`` waiting (HTTP's gate: the bound holds for
both protocols together), more are refused at once (UNAVAILABLE, retryable); a few calls beyond those stay free
for health and metadata; idle connections close after ``--request-timeout``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import numpy as np

from .._version import __version__
from ..errors import (
    AuthError,
    InputTypeError,
    MedinferError,
    RequestError,
    grpc_status,
)
from ..extras import optional_import
from .infer import Call, predict_request
from .protocol import NUMPY, InferRequest, from_binary, tensor_head, to_binary

log = logging.getLogger(__name__)

HEALTH_CALLS = 4  # calls beyond inference's running + waiting, kept free for health and metadata
# datatype -> the InferTensorContents field that carries it
CONTENTS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
            "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
            "UINT32": "uint_contents", "UINT64": "uint64_contents", "FP32": "fp32_contents",
            "FP64": "fp64_contents", "BYTES": "bytes_contents"}
GROUP_OF = {"ServerLive": "health", "ServerReady": "health", "ModelReady": "metadata",
            "ServerMetadata": "metadata", "ModelMetadata": "metadata", "ModelConfig": "metadata",
            "RepositoryIndex": "metadata", "ModelInfer": "infer", "ModelStatistics": "metrics",
            "RepositoryModelLoad": "admin", "RepositoryModelUnload": "admin"}


def _modules() -> tuple[Any, Any, Any, Any]:
    feature = "medinfer serve --grpc-port"
    grpc = optional_import("grpc", "serve", feature)
    json_format = optional_import("google.protobuf.json_format", "serve", feature)
    service_pb2 = optional_import("tritonclient.grpc.service_pb2", "serve", feature)
    service_pb2_grpc = optional_import("tritonclient.grpc.service_pb2_grpc", "serve", feature)
    return grpc, service_pb2, service_pb2_grpc, json_format


def status_code(grpc: Any, exc: BaseException) -> Any:
    """The gRPC status of an error: its code's row of :data:`medinfer.errors.OUTWARD` (HTTP's twin)."""
    return getattr(grpc.StatusCode, grpc_status(exc))


def decode_grpc_request(request: Any) -> InferRequest:
    """A ModelInferRequest as the protocol's :class:`InferRequest` (the same checks as JSON: names, shapes,
    datatypes, element counts, byte counts)."""
    inputs: dict[str, np.ndarray] = {}
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise RequestError(f"raw_input_contents holds {len(raw)} tensors for {len(request.inputs)} inputs")
    for i, tensor in enumerate(request.inputs):
        name, shape, datatype = tensor_head({"name": tensor.name, "shape": list(tensor.shape),
                                              "datatype": tensor.datatype}, f"inputs[{i}]")
        if name in inputs:
            raise RequestError(f"input '{name}' appears twice in the request")
        if raw:
            inputs[name] = from_binary(raw[i], name, shape, datatype)
            continue
        values = getattr(tensor.contents, CONTENTS.get(datatype, "fp32_contents"))
        n = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if len(values) != n:
            raise RequestError(f"input '{name}' has {len(values)} values in contents but shape {list(shape)} needs {n}")
        if datatype == "BYTES":
            inputs[name] = np.array(list(values), dtype=object).reshape(shape)
        else:
            try:
                with np.errstate(over="raise", invalid="ignore"):
                    inputs[name] = np.array(values, dtype=np.dtype(NUMPY[datatype]).newbyteorder("=")).reshape(shape)
            except (OverflowError, FloatingPointError, ValueError):
                raise RequestError(f"input '{name}' holds values that do not fit {datatype}") from None
    params = {k: getattr(v, v.WhichOneof("parameter_choice") or "bool_param") for k, v in request.parameters.items()}
    outputs = [o.name for o in request.outputs] or None
    return InferRequest(request.id or None, inputs, outputs, {}, True, params)


class Servicer:
    """The GRPCInferenceService methods (grpc.aio coroutines on the HTTP server's event loop), over the server's
    registry and the HTTP app's gate, worker pool and dynamic batchers (built by :func:`start_grpc`)."""

    def __init__(self, registry: Any, config: Any, auth: Any, pb: Any, json_format: Any, grpc: Any,
                 app: Any) -> None:
        self.registry, self.config, self.pb, self.json_format, self.grpc = registry, config, pb, json_format, grpc
        self.app = app  # the HTTP app: its gate, worker pool and dynamic batchers serve gRPC requests too
        self.auth = auth if auth is not None and auth.enabled else None
        self.audited = registry.audit is not None

    async def _guard(self, method: str, context: Any) -> None:
        if self.auth is None:
            return
        metadata = dict(context.invocation_metadata() or ())
        cert = None
        names = context.auth_context().get("x509_common_name") if context.auth_context() else None
        if names:
            cert = {"subject": ((("commonName", names[0].decode("utf-8", "replace")),),)}
        try:
            self.auth.check(GROUP_OF[method], metadata.get("authorization"), cert, client=context.peer()[:100],
                            path=method, protocol="grpc")
        except AuthError as exc:
            await context.abort(status_code(self.grpc, exc), f"{type(exc).__name__}: {exc}")

    async def _fail(self, context: Any, exc: BaseException) -> Any:
        message = f"{type(exc).__name__}: {exc}" if isinstance(exc, MedinferError) else "internal error"
        await context.abort(status_code(self.grpc, exc), message)

    # -- health and metadata -----------------------------------------------------------------------------------
    async def ServerLive(self, request: Any, context: Any) -> Any:  # noqa: N802 - the proto's names
        await self._guard("ServerLive", context)
        return self.pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: Any) -> Any:  # noqa: N802
        await self._guard("ServerReady", context)
        audit = self.registry.audit
        return self.pb.ServerReadyResponse(ready=self.registry.ready and (audit is None or audit.probe()))

    async def ModelReady(self, request: Any, context: Any) -> Any:  # noqa: N802
        await self._guard("ModelReady", context)
        try:
            slot = self.registry.get(request.name, request.version or None)
        except MedinferError as exc:
            return await self._fail(context, exc)
        return self.pb.ModelReadyResponse(ready=slot.state == "ready")

    async def ServerMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
        from .app import EXTENSIONS

        await self._guard("ServerMetadata", context)
        return self.pb.ServerMetadataResponse(name="medinfer", version=__version__, extensions=EXTENSIONS)

    async def ModelMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
        await self._guard("ModelMetadata", context)
        try:
            slot = self.registry.get(request.name, request.version or None)
            slot.ready_model()
        except MedinferError as exc:
            return await self._fail(context, exc)
        doc = slot.metadata()
        meta = self.pb.ModelMetadataResponse.TensorMetadata
        return self.pb.ModelMetadataResponse(
            name=doc["name"], versions=doc["versions"], platform=doc["platform"],
            inputs=[meta(name=t["name"], datatype=t["datatype"], shape=t["shape"]) for t in doc["inputs"]],
            outputs=[meta(name=t["name"], datatype=t["datatype"], shape=t["shape"]) for t in doc["outputs"]])

    async def ModelConfig(self, request: Any, context: Any) -> Any:  # noqa: N802
        from tritonclient.grpc import model_config_pb2

        await self._guard("ModelConfig", context)
        try:
            slot = self.registry.get(request.name, request.version or None)
            doc = slot.config(self.config)
        except MedinferError as exc:
            return await self._fail(context, exc)
        config = self.json_format.ParseDict(doc, model_config_pb2.ModelConfig(), ignore_unknown_fields=True)
        return self.pb.ModelConfigResponse(config=config)

    async def ModelStatistics(self, request: Any, context: Any) -> Any:  # noqa: N802
        await self._guard("ModelStatistics", context)
        try:
            slots = [self.registry.get(request.name, request.version or None)] if request.name else \
                list(self.registry.slots.values())
        except MedinferError as exc:
            return await self._fail(context, exc)
        return self.json_format.ParseDict({"model_stats": [s.stats.triton() for s in slots]},
                                          self.pb.ModelStatisticsResponse(), ignore_unknown_fields=True)

    async def RepositoryIndex(self, request: Any, context: Any) -> Any:  # noqa: N802
        await self._guard("RepositoryIndex", context)
        index = self.pb.RepositoryIndexResponse.ModelIndex
        return self.pb.RepositoryIndexResponse(models=[index(**m) for m in self.registry.index()])

    async def RepositoryModelLoad(self, request: Any, context: Any) -> Any:  # noqa: N802
        await self._guard("RepositoryModelLoad", context)
        try:  # a load reads and checks a bundle: in a thread, the loop keeps answering
            await asyncio.to_thread(self.registry.load_model, request.model_name)
        except MedinferError as exc:
            return await self._fail(context, exc)
        return self.pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(self, request: Any, context: Any) -> Any:  # noqa: N802
        await self._guard("RepositoryModelUnload", context)
        try:
            await asyncio.to_thread(self.registry.unload_model, request.model_name)
        except MedinferError as exc:
            return await self._fail(context, exc)
        return self.pb.RepositoryModelUnloadResponse()

    # -- inference ---------------------------------------------------------------------------------------------
    async def ModelInfer(self, request: Any, context: Any) -> Any:  # noqa: N802
        await self._guard("ModelInfer", context)
        begin = time.perf_counter_ns()
        stats = None
        try:
            slot = self.registry.get(request.model_name, request.model_version or None)
            stats = slot.stats
            slot.ready_model()
            call = Call(slot, b"", None, None, begin)
            answer = await self._infer(call, request)
            encoded = time.perf_counter_ns()
            response = self._response(slot.name, answer, call.rid)
        except MedinferError as exc:
            if stats is not None:
                stats.record(time.perf_counter_ns() - begin, reason=exc.code)
            return await self._fail(context, exc)
        except Exception as exc:  # noqa: BLE001 - INTERNAL with the type only (the message may quote content)
            log.error("gRPC inference failed: %s", type(exc).__name__)
            if stats is not None:
                stats.record(time.perf_counter_ns() - begin, reason="internal")
            return await self._fail(context, exc)
        call.phases = (*call.phases[:3], call.phases[3] + time.perf_counter_ns() - encoded)
        stats.record(time.perf_counter_ns() - begin, call.phases, call.batch, executions=call.executions)
        return response

    async def _infer(self, call: Call, request: Any) -> Any:
        """Like HTTP (:meth:`medinfer.fleet.app.App.gated`): inside the gate, a batched model's request is decoded
        and leaves it to wait for its batch; a model fast enough for the event loop runs here; the others (and
        large requests) run in the worker pool."""
        from .app import BATCH_BODY_BYTES, INLINE_BODY_BYTES, batcher_for
        from .infer import begin_request, finish_request, http_remedy

        app, slot, audited, deadline_ms = self.app, call.slot, self.audited, self.config.deadline_ms
        size = request.ByteSize()
        stats = slot.stats
        stats.enter(queued=True)
        queued = True
        batched: Any = None
        try:
            async with app.gate:
                stats.leave(queued=True)
                stats.enter(queued=False)
                queued = False
                model = slot.ready_model()
                batcher = batcher_for(app, slot) if size <= BATCH_BODY_BYTES else None
                if batcher is None and slot.inline and size <= INLINE_BODY_BYTES:
                    return predict_request(call, model, decode_grpc_request(request), time.perf_counter_ns(),
                                           deadline_ms, audited)
                if batcher is None:
                    return await asyncio.get_running_loop().run_in_executor(app.pool, _decode_predict, call, model,
                                                                            request, deadline_ms, audited)
                start = time.perf_counter_ns()
                req = decode_grpc_request(request)
                pending = begin_request(call, model, req, start, deadline_ms)
                if pending.explicit_deadline or pending.explain or pending.per_item:  # it runs alone
                    if slot.inline:
                        return predict_request(call, model, req, start, deadline_ms, audited)
                    return await asyncio.get_running_loop().run_in_executor(
                        app.pool, predict_request, call, model, req, start, deadline_ms, audited)
                batched = (model, req, pending)
        finally:
            stats.leave(queued=queued)
        model, req, pending = batched
        rid = call.rid if audited else pending.sent_id
        try:
            pred, first = await batcher.predict(model, pending.x, rid, pending.deadline_ms)
        except InputTypeError as exc:
            raise http_remedy(exc, slot, req.inputs) from None
        call.executions = 1 if first else 0
        return finish_request(call, model, req, pred, pending, pending.started, time.perf_counter_ns())

    def _response(self, name: str, answer: Any, rid: str | None) -> Any:
        out = self.pb.ModelInferResponse(model_name=name, model_version=answer.version, id=rid or "")
        for key, value in answer.parameters.items():
            param = out.parameters[key]
            if isinstance(value, bool):
                param.bool_param = value
            elif isinstance(value, int):
                param.int64_param = value
            elif isinstance(value, float):
                param.double_param = value
            else:
                param.string_param = str(value)
        for tensor_name, arr in answer.tensors.items():
            from .protocol import datatype_of

            out.outputs.add(name=tensor_name, datatype=datatype_of(arr), shape=list(arr.shape))
            out.raw_output_contents.append(to_binary(arr))
        return out


def _decode_predict(call: Call, model: Any, request: Any, deadline_ms: float | None, audited: bool) -> Any:
    """Decode and predict in a worker thread (a model too slow for the event loop, or a large request)."""
    return predict_request(call, model, decode_grpc_request(request), time.perf_counter_ns(), deadline_ms, audited)


async def start_grpc(registry: Any, config: Any, auth: Any, tls: Any, host: str, app: Any) -> tuple[Any, int]:
    """Start the gRPC server on ``host:config.grpc_port`` on the running event loop (the HTTP server's);
    returns (server, bound port). Stop it with ``await server.stop(grace)``.

    Raises:
        MissingExtraError: grpcio or tritonclient[grpc] is not installed.
        UsageError: the port cannot be bound.
    """
    from ..errors import UsageError

    grpc, pb, pb_grpc, json_format = _modules()
    rpcs = config.max_concurrency + config.max_queue + HEALTH_CALLS
    options = [("grpc.max_receive_message_length", config.max_body_bytes),
               ("grpc.max_send_message_length", max(config.max_body_bytes, 64 << 20)),
               ("grpc.max_concurrent_streams", max(16, config.max_concurrency + config.max_queue)),
               ("grpc.max_connection_idle_ms", int(config.request_timeout * 1000)),
               ("grpc.so_reuseport", 1 if config.workers > 1 else 0)]  # --workers: each binds the port
    server = grpc.aio.server(options=options, maximum_concurrent_rpcs=rpcs)
    servicer = type("MedinferServicer", (Servicer, pb_grpc.GRPCInferenceServiceServicer), {})(
        registry, config, auth, pb, json_format, grpc, app)
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
    address = f"[{host}]:{config.grpc_port}" if ":" in host else f"{host}:{config.grpc_port}"
    try:
        port = server.add_secure_port(address, tls.grpc_credentials()) if tls is not None else \
            server.add_insecure_port(address)
    except RuntimeError as exc:
        raise UsageError(f"cannot listen for gRPC on {address}: {exc}") from None
    if not port:
        raise UsageError(f"cannot listen for gRPC on {address}")
    await server.start()
    log.info("gRPC (KServe v2 / Triton GRPCInferenceService) on %s:%d%s", host, port, " with TLS" if tls else "")
    return server, port
