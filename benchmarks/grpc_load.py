"""A bounded, lean gRPC load generator for KServe v2 ``ModelInfer``: N concurrent callers on one grpc.aio channel
each, one call at a time, the request serialized once (raw bytes in, raw bytes out: the client spends nothing on
protobuf per call). Same :class:`~benchmarks.loadgen.Load` record as the HTTP generator; nothing trimmed."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np

from .loadgen import Load
from .schema import captured

METHOD = "/inference.GRPCInferenceService/ModelInfer"


def infer_request(model: str, inputs: list[tuple[str, np.ndarray, str]]) -> bytes:
    """A serialized ModelInferRequest with the tensors as raw_input_contents (what tritonclient.grpc sends)."""
    from tritonclient.grpc import service_pb2

    req = service_pb2.ModelInferRequest(model_name=model)
    for name, arr, datatype in inputs:
        req.inputs.add(name=name, datatype=datatype, shape=list(arr.shape))
        if datatype == "BYTES":
            import struct

            items = [str(v).encode() for v in arr.reshape(-1)]
            req.raw_input_contents.append(b"".join(struct.pack("<I", len(b)) + b for b in items))
        else:
            req.raw_input_contents.append(np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes())
    return bytes(req.SerializeToString())


async def _drive(target: str, request: bytes, clients: int, seconds: float, metadata: tuple[tuple[str, str], ...],
                 max_requests: int, timeout: float, warmup: int) -> Load:
    import grpc

    channels = [grpc.aio.insecure_channel(target) for _ in range(clients)]
    calls = [ch.unary_unary(METHOD, request_serializer=None, response_deserializer=None) for ch in channels]
    latencies: list[list[int]] = [[] for _ in range(clients)]
    counts = {"sent": 0, "errors": 0}
    errors: list[dict[str, Any]] = []
    first: list[bytes] = []
    for call in calls:  # a server that refuses the request is measured like one that refuses it later: errors
        for _ in range(warmup):
            try:
                await call(request, metadata=metadata, timeout=timeout)
            except grpc.aio.AioRpcError:
                break
    stop = time.perf_counter() + seconds

    async def client(i: int) -> None:
        call, bucket = calls[i], latencies[i]
        while time.perf_counter() < stop and counts["sent"] < max_requests:
            counts["sent"] += 1
            t0 = time.perf_counter_ns()
            try:
                body = await call(request, metadata=metadata, timeout=timeout)
            except grpc.aio.AioRpcError as exc:
                counts["errors"] += 1
                if len(errors) < 3:
                    errors.append(captured(f"{exc.code()}: {(exc.details() or '')[:300]}", exception="AioRpcError"))
                continue
            bucket.append(time.perf_counter_ns() - t0)
            if not first:
                first.append(body)

    start = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    wall = time.perf_counter() - start
    for ch in channels:
        await ch.close()
    lat = np.concatenate([np.asarray(b, dtype=np.int64) for b in latencies]) / 1e3 if clients else np.array([])
    return Load(clients, wall, int(lat.size), counts["errors"], lat, first[0] if first else b"",
                errors[0] if errors else None)


def run_grpc_load(host: str, port: int, request: bytes, clients: int, seconds: float,
                  metadata: dict[str, str] | None = None, max_requests: int = 1_000_000, timeout: float = 10.0,
                  warmup: int = 20) -> Load:
    """``clients`` gRPC callers sending ``request`` back to back for ``seconds`` (at most ``max_requests``)."""
    meta: Any = tuple((metadata or {}).items())
    return asyncio.run(_drive(f"{host}:{port}", request, clients, seconds, meta, max_requests, timeout, warmup))
