"""The HTTP layer of ``medinfer serve``: uvicorn's protocols with the bounds they lack, the listening sockets, the
event loop, and the JSON log format.

Two HTTP paths, one set of bounds (``tests/fleet/test_hostile_serve.py`` runs against both):

- ``httptools`` (the default when installed, with uvloop): llhttp's C parser on uvloop's libuv event loop;
- ``h11``: uvicorn's pure-Python parser on asyncio (the path before issue 17; ``--http h11``).

Bounds: a connection must deliver each whole request within ``request_timeout`` seconds (from its opening or its
previous response), else it is closed — idle or trickling sockets cannot pile up; the request line and headers of
one request may take at most ``MAX_HEADER_BYTES`` however they arrive (431 and close beyond); at most
``max_connections`` are open per listening port, and ``HEALTH_RESERVE`` more may only ask for health or
``/metrics`` (within ``PROBATION_TIMEOUT``), so that idle sockets never take health checks to 503 — beyond those,
503 and close. Closing lingers (:class:`CorkedTransport`), so a refusal sent before the body was read (413, 503)
reaches the client instead of a TCP reset. uvicorn's own ``limit_concurrency`` is not used (idle sockets would then turn
every request, health checks included, into 503): inference is bounded by the server's Gate.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
from typing import Any

from ..errors import UsageError
from ..timestamps import utc_text

log = logging.getLogger(__name__)

HTTP_PATHS = ("httptools", "h11")
MAX_HEADER_BYTES = 64 << 10  # a request line + headers beyond this are refused (431); h11's own bound is 16 KiB


def available_http() -> str:
    """The fastest HTTP path installed: ``httptools`` (with uvloop when present), else ``h11``."""
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "h11"
    return "httptools"


def event_loop(http: str) -> str:
    """uvicorn's ``loop`` setting: uvloop with httptools when installed, asyncio otherwise."""
    if http == "httptools":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            return "asyncio"
        return "uvloop"
    return "asyncio"


def _reply(status: str, body: bytes) -> bytes:
    return (f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\nconnection: close\r\nretry-after: 1\r\n"
            f"content-length: {len(body)}\r\n\r\n").encode() + body


class CorkedTransport:
    """A transport whose response head waits for the first body write, so that head and body leave in ONE write:
    uvicorn writes them apart, and with TCP_NODELAY that is two segments and two wake-ups of the client per
    response (measured: a third of a small model's serving time). A response without a body (HEAD, 204) leaves
    when it is complete (:meth:`flush`).

    Closing lingers (nginx's ``lingering_close``): the write side is shut (the client reads the whole answer and an
    EOF), what the client still sends is read and dropped for up to ``LINGER_SECONDS`` / ``LINGER_BYTES``, then the
    socket closes. Closing at once with unread request bytes in the kernel's buffer sends a TCP reset, and the
    client loses the answer (a 413 for an oversized body, a 503 before the body was read). Everything else is the
    transport's own."""

    __slots__ = ("_transport", "_head", "lingering", "dropped", "_timer")

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self._head: bytes | None = None
        self.lingering = False
        self.dropped = 0
        self._timer: Any = None

    def write(self, data: bytes) -> None:
        if self.lingering:
            return
        head = self._head
        if head is None and data[:9] == b"HTTP/1.1 " and data[9:12] != b"100" and data[-4:] == b"\r\n\r\n":
            self._head = bytes(data)
            return
        if head is not None:
            self._head = None
            data = head + data
        self._transport.write(data)

    def flush(self) -> None:
        if self._head is not None:
            head, self._head = self._head, None
            self._transport.write(head)

    def close(self) -> None:
        self.flush()
        if self.lingering or self._transport.is_closing():
            return
        can_write_eof = getattr(self._transport, "can_write_eof", None)
        if can_write_eof is None:  # not a stream transport: nothing to linger on
            self._transport.close()
            return
        self.lingering = True
        try:
            if can_write_eof():  # TLS cannot half-close: it lingers with the write side open
                self._transport.write_eof()
        except (OSError, RuntimeError, NotImplementedError):
            self._transport.close()
            return
        import asyncio

        self._timer = asyncio.get_event_loop().call_later(LINGER_SECONDS, self.abort_linger)

    def drop(self, data: bytes) -> None:
        """Data that arrived while lingering: counted and dropped; past ``LINGER_BYTES`` the socket closes."""
        self.dropped += len(data)
        if self.dropped > LINGER_BYTES:
            self.abort_linger()

    def abort_linger(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._transport.close()

    def gone(self) -> None:
        """The connection is lost: nothing more is parsed or written, no timer left."""
        self.lingering = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def is_closing(self) -> bool:
        return self.lingering or bool(self._transport.is_closing())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


LINGER_SECONDS = 2.0
LINGER_BYTES = 1 << 20
HEALTH_RESERVE = 64  # connections beyond --max-connections that may still ask for health or /metrics
RESERVED_PATHS = frozenset({"/v2/health/live", "/v2/health/ready", "/metrics"})
PROBATION_TIMEOUT = 2.0  # seconds a reserve connection has to send its request


def _connection_app(app: Any, cert: dict[str, Any] | None, probation: bool) -> Any:
    """The app as one connection sees it: with its verified client certificate in the scope (ASGI's TLS extension)
    and, for a connection beyond the limit, only the reserved health paths."""
    refusal = b'{"error": "too many open connections: only health checks and /metrics are answered; retry"}'

    async def connection_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if cert is not None:
            scope["extensions"] = {**(scope.get("extensions") or {}), "tls": {"client_cert": cert}}
        if probation and (scope.get("type") != "http" or scope.get("path", "").rstrip("/") not in RESERVED_PATHS):
            await send({"type": "http.response.start", "status": 503, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(refusal)).encode()),
                (b"retry-after", b"1"), (b"connection", b"close")]})
            await send({"type": "http.response.body", "body": refusal})
            return
        await app(scope, receive, send)

    return connection_app


def guarded_protocol(http: str, request_timeout: float, max_connections: int) -> type:
    """uvicorn's ``http`` protocol class (``httptools`` or ``h11``) with the module's bounds."""
    from .tls import peer_certificate

    if http == "h11":
        import h11
        from uvicorn.protocols.http.h11_impl import H11Protocol as Base
    elif http == "httptools":
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Base  # type: ignore[assignment]
    else:
        raise UsageError(f"--http {http!r}: expected one of {', '.join(HTTP_PATHS)}")
    timeout, limit = request_timeout, max_connections
    busy = _reply("503 Service Unavailable", b'{"error": "too many open connections; retry"}')
    too_big = _reply("431 Request Header Fields Too Large",
                     b'{"error": "request line and headers exceed %d bytes"}' % MAX_HEADER_BYTES)
    open_per_port: dict[int, int] = {}  # connections are limited per listening port: the metrics port has its own

    class Guarded(Base):  # type: ignore[misc, valid-type]
        _deadline: Any = None
        _head_bytes = 0
        _port = 0
        _timeout = timeout

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            corked = CorkedTransport(transport)
            super().connection_made(corked)  # type: ignore[arg-type]
            sockname = transport.get_extra_info("sockname")
            self._port = sockname[1] if isinstance(sockname, tuple) and len(sockname) > 1 else 0
            count = open_per_port[self._port] = open_per_port.get(self._port, 0) + 1
            if count > limit + HEALTH_RESERVE:
                corked.write(busy)
                corked.close()
                return
            probation = count > limit
            cert = peer_certificate(transport)
            if probation or cert is not None:
                self.app = _connection_app(self.app, cert, probation)
            if probation:
                self._timeout = min(timeout, PROBATION_TIMEOUT)
            self._arm()

        def _arm(self) -> None:
            self._disarm()
            self._head_bytes = 0
            self._deadline = self.loop.call_later(self._timeout, self._expired)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _waiting(self) -> bool:
            """No whole request is here yet (between requests, in its headers, or in its body)."""
            return self.cycle is None or self.cycle.response_complete or self.cycle.more_body

        def _expired(self) -> None:
            self._deadline = None
            if self._waiting() and not self.transport.is_closing():
                log.info("closing a connection that sent no whole request within %g s", self._timeout)
                if http == "h11":
                    with contextlib.suppress(h11.LocalProtocolError):
                        self.conn.send(h11.ConnectionClosed())
                self.transport.close()

        def data_received(self, data: bytes) -> None:
            transport: Any = self.transport
            if transport.lingering:
                transport.drop(data)
                return
            heading = self.cycle is None or self.cycle.response_complete  # before: no request under way
            if heading:
                # The head's size counts however it arrives: in one read or in many.
                end = data.find(b"\r\n\r\n")
                if self._head_bytes + (len(data) if end < 0 else end + 4) > MAX_HEADER_BYTES:
                    transport.write(too_big)
                    transport.close()
                    return
            super().data_received(data)
            if self.cycle is not None and not self.cycle.response_complete:
                self._head_bytes = 0
                if not self.cycle.more_body:
                    self._disarm()  # the whole request is here: the app's time is bounded by the deadline
            elif heading:  # still in the request line and headers after this data
                self._head_bytes += len(data)

        def on_response_complete(self) -> None:
            self.transport.flush()  # type: ignore[attr-defined]  # a response without a body (HEAD) leaves now, not at the next write
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if self._port in open_per_port:
                open_per_port[self._port] -= 1
            transport = self.transport
            if isinstance(transport, CorkedTransport):
                transport.gone()
            super().connection_lost(exc)

    Guarded.__name__ = f"Guarded{Base.__name__}"
    return Guarded


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now: for a second listener (a metrics port, a peer server in a benchmark
    or a test) started by the caller; ``bind(host, 0)`` is the race-free way for a socket this process keeps."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


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


class JsonFormatter(logging.Formatter):
    """One JSON object per log record: time, level, logger, message — and an access record's own fields."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {"time": utc_text(record.created, digits=3), "level": record.levelname,
                               "logger": record.name}
        fields = getattr(record, "access", None)
        if isinstance(fields, dict):
            doc.update(fields)
        else:
            doc["message"] = record.getMessage()
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, separators=(",", ":"), default=str)


class AccessFormatter(logging.Formatter):
    """Text logs with access records as one JSON object on the line (``--access-log`` without ``--log-format``)."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "access", None)
        if isinstance(fields, dict):
            return json.dumps(fields, separators=(",", ":"), default=str)
        return super().format(record)


def configure_logging(log_format: str = "text", access_log: bool = False) -> None:
    """serve's logging (the CLI's and each ``--workers`` process's): INFO on stderr, one JSON object per line in
    ``json``, access records as JSON with ``access_log``; Python warnings go through it too."""
    import os
    import sys

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if log_format == "json" or access_log:
        formatter = JsonFormatter() if log_format == "json" else \
            AccessFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        for handler in logging.getLogger().handlers:
            handler.setFormatter(formatter)
    logging.captureWarnings(True)  # Python warnings become log records (JSON in --log-format json)
    if log_format == "json":
        # grpcio's C core writes its own text lines to stderr (e.g. a refused client certificate): not JSON, and
        # not routable through logging; in JSON mode they are off unless GRPC_VERBOSITY asks for them.
        os.environ.setdefault("GRPC_VERBOSITY", "NONE")
