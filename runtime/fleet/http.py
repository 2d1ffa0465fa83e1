"""The HTTP layer of ``medinfer serve``: uvicorn's protocols with the bounds they lack, the listening sockets, the
event loop, and the JSON log format.

Two HTTP paths, one set of bounds (``tests/fleet/test_hostile_serve.py`` runs against both):

- ``httptools`` (the default when installed, with uvloop): llhttp's C parser on uvloop's libuv event loop;
- ``h11``: uvicorn's pure-Python parser on asyncio (the path before issue 17; ``--http h11``).

Bounds: a connection must deliver each whole request within ``request_timeout`` seconds (from its opening or its
previous response), else it is closed — idle or trickling sockets cannot pile up; the request line and headers of
one request may take at most ``MAX_HEADER_BYTES`` (431 and close beyond); at most ``max_connections`` are open —
more are answered 503 and closed. uvicorn's own ``limit_concurrency`` is not used (idle sockets would then turn
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
    response (measured: a third of a small model's serving time). Everything else is the transport's own."""

    __slots__ = ("_transport", "_head")

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self._head: bytes | None = None

    def write(self, data: bytes) -> None:
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
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def guarded_protocol(http: str, request_timeout: float, max_connections: int) -> type:
    """uvicorn's ``http`` protocol class (``httptools`` or ``h11``) with the module's bounds."""
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

    class Guarded(Base):  # type: ignore[misc, valid-type]
        _deadline: Any = None
        _head_bytes = 0

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            transport = CorkedTransport(transport)
            super().connection_made(transport)
            if len(self.connections) > limit:
                transport.write(busy)
                transport.close()
                return
            self._arm()

        def _arm(self) -> None:
            self._disarm()
            self._head_bytes = 0
            self._deadline = self.loop.call_later(timeout, self._expired)

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
                log.info("closing a connection that sent no whole request within %g s", timeout)
                if http == "h11":
                    with contextlib.suppress(h11.LocalProtocolError):
                        self.conn.send(h11.ConnectionClosed())
                self.transport.close()

        def data_received(self, data: bytes) -> None:
            heading = self.cycle is None or self.cycle.response_complete  # before: no request under way
            super().data_received(data)
            if self.cycle is not None and not self.cycle.response_complete:
                self._head_bytes = 0
                if not self.cycle.more_body:
                    self._disarm()  # the whole request is here: the app's time is bounded by the deadline
            elif heading:  # still in the request line and headers after this data
                self._head_bytes += len(data)
                if self._head_bytes > MAX_HEADER_BYTES and not self.transport.is_closing():
                    self.transport.write(too_big)
                    self.transport.close()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
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
