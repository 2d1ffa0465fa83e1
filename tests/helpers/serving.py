"""Running ``medinfer serve`` as a real subprocess in tests, and plain HTTP calls to it."""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from .procs import stop


@contextlib.contextmanager
def serving(bundles: list[Path], *args: str, log: Path, wait_ready: bool = True, timeout: float = 120
            ) -> Iterator[tuple[str, subprocess.Popen]]:
    """Start ``medinfer serve`` on port 0; yield ("127.0.0.1:PORT", process); SIGTERM it afterwards. (Over TLS the
    caller waits for readiness itself: it holds the client certificate.)"""
    cmd = [sys.executable, "-m", "medinfer", "serve", *map(str, bundles), "--port", "0", *args]
    with open(log, "wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        line = proc.stdout.readline().decode() if ready else ""
        assert "listening on http" in line and "://127.0.0.1:" in line, \
            f"no listening line: {line!r}; log: {log.read_text()}"
        url = line.split("://", 1)[1].split()[0]
        proc.grpc_url = line.split("gRPC on ", 1)[1].split(")")[0] if "gRPC on " in line else None  # type: ignore
        if wait_ready and "listening on https://" not in line:
            wait_for(url, "/v2/health/ready", timeout)
        yield url, proc
    finally:
        stop(proc, 30)


def wait_for(url: str, path: str, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if get(url, path)[0] == 200:
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} not 200 within {timeout} s: {get(url, path)}")


def get(url: str, path: str) -> tuple[int, dict]:
    return http(url, path, None)


def http(url: str, path: str, body: bytes | None, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    status, _, raw = request(url, path, body, headers)
    return status, json.loads(raw or b"{}")


def request(url: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
            ) -> tuple[int, dict[str, str], bytes]:
    """(status, headers with lower-case names, raw body); status 0 when nothing answers."""
    req = urllib.request.Request(f"http://{url}{path}", data=body, headers=headers or {},
                                 method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()
    except (ConnectionError, urllib.error.URLError):
        return 0, {}, b""
