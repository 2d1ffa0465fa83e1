"""A bounded, lean HTTP/1.1 load generator: N keep-alive connections, each sending one request at a time.

The client must cost far less than the servers it measures (they share the machine): one asyncio loop (uvloop when
installed), pre-built request bytes, a Protocol that only finds the status and Content-Length. Bounded in count,
time and per-request wait; it stops by itself and reports every latency, nothing trimmed.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .schema import captured, from_exception


def http_request(host: str, port: int, path: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    """One keep-alive POST as raw bytes."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json",
             f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.need = -1
        self.status = 0
        self.length = 0
        self.transport: Any = None
        self.lost = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        if self.need < 0:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).lower() + b"\r\n"
            at = head.find(b"\r\ncontent-length:")
            try:
                if not head.startswith(b"http/1.1 ") or at < 0:
                    raise ValueError(f"not an HTTP/1.1 response with a Content-Length: {head[:80]!r}")
                self.status = int(head[9:12])
                self.length = int(head[at + 17:head.find(b"\r\n", at + 2)])
            except ValueError as exc:
                if self.waiter is not None and not self.waiter.done():
                    self.waiter.set_exception(ConnectionError(str(exc)))
                self.transport.close()
                return
            self.need = end + 4 + self.length
        if len(buf) >= self.need:
            body = bytes(buf[self.need - self.length:self.need])
            del buf[:self.need]
            self.need = -1
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result((self.status, body))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("the server closed the connection"))


@dataclass
class Load:
    """What one run measured."""

    clients: int
    seconds: float
    ok: int
    errors: int
    latencies_us: np.ndarray
    first_body: bytes
    error_sample: dict[str, Any] | None  # the first failure, captured (benchmarks.schema)

    def summary(self) -> dict[str, Any]:
        lat = self.latencies_us
        pct = (lambda q: float(np.percentile(lat, q))) if lat.size else (lambda q: None)
        return {"clients": self.clients, "seconds": round(self.seconds, 4), "requests": self.ok,
                "errors": self.errors, "req_per_s": self.ok / self.seconds if self.seconds else 0.0,
                "p50_us": pct(50), "p90_us": pct(90), "p99_us": pct(99), "max_us": float(lat.max()) if lat.size
                else None, "mean_us": float(lat.mean()) if lat.size else None, "error_sample": self.error_sample}


async def _drive(host: str, port: int, request: bytes, clients: int, seconds: float, max_requests: int,
                 timeout: float, warmup: int) -> Load:
    loop = asyncio.get_running_loop()
    conns = [(await loop.create_connection(_Connection, host, port))[1] for _ in range(clients)]
    latencies: list[list[int]] = [[] for _ in range(clients)]
    counts = {"sent": 0, "errors": 0}
    first: list[bytes] = []
    errors: list[dict[str, Any]] = []

    async def one(conn: _Connection) -> tuple[int, bytes]:
        conn.waiter = loop.create_future()
        conn.transport.write(request)
        return await asyncio.wait_for(conn.waiter, timeout)

    for conn in conns:  # warm-up: connections open, server paths hot
        for _ in range(warmup):
            await one(conn)
    stop = time.perf_counter() + seconds

    async def client(i: int) -> None:
        conn, bucket = conns[i], latencies[i]
        while time.perf_counter() < stop and counts["sent"] < max_requests and not conn.lost:
            counts["sent"] += 1
            t0 = time.perf_counter_ns()
            try:
                status, body = await one(conn)
            except (ConnectionError, asyncio.TimeoutError) as exc:
                counts["errors"] += 1
                errors.append(from_exception(exc))
                return
            if status != 200:
                counts["errors"] += 1
                if len(errors) < 3:
                    errors.append(captured(repr(body[:300]), http_status=status))
                continue
            bucket.append(time.perf_counter_ns() - t0)
            if not first:
                first.append(body)

    start = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    wall = time.perf_counter() - start
    for conn in conns:
        conn.transport.close()
    lat = np.concatenate([np.asarray(b, dtype=np.int64) for b in latencies]) / 1e3 if clients else np.array([])
    return Load(clients, wall, int(lat.size), counts["errors"], lat, first[0] if first else b"",
                errors[0] if errors else None)


def run_load(host: str, port: int, request: bytes, clients: int, seconds: float, max_requests: int = 1_000_000,
             timeout: float = 10.0, warmup: int = 20) -> Load:
    """``clients`` connections sending ``request`` back to back for ``seconds`` (at most ``max_requests``)."""
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    return runner(_drive(host, port, request, clients, seconds, max_requests, timeout, warmup))  # type: ignore[no-any-return]
