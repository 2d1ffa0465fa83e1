"""Hostile clients and bad settings against ``medinfer serve``: idle and trickling sockets, absurd shapes, deep
JSON, multi-member gzip, unrecordable request ids, an unwritable audit trail and impossible options — each gets a
typed answer (4xx/503) or a one-line refusal to start, never a 500, a traceback or a server whose liveness stops."""

from __future__ import annotations

import gzip
import importlib.util
import json
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import medinfer
import pytest

from ..helpers import tiny
from ..helpers.serving import get, http, request, serving

try:
    import resource
except ImportError:  # pragma: no cover - not POSIX
    resource = None  # type: ignore[assignment]

pytest.importorskip("uvicorn")
pytestmark = pytest.mark.hostile("serve: clients and settings")
# Both HTTP paths get the same hostile clients: httptools on uvloop (the default) and uvicorn's h11.
PATHS = [p for p in ("httptools", "h11") if p == "h11" or importlib.util.find_spec(p) is not None]


@pytest.fixture(scope="module", params=PATHS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_bundle_ro: Path):
    root = tmp_path_factory.mktemp(f"hostile_serve_{request.param}")
    bundle = tiny_bundle_ro  # read only: the session's tiny bundle
    with serving([bundle], "--audit", str(root / "audit.jsonl"), "--request-timeout", "2", "--http", request.param,
                 log=root / "server.log") as (url, proc):
        yield url, proc, root


def _infer(url: str, doc: object, headers: dict[str, str] | None = None, raw: bytes | None = None):
    body = raw if raw is not None else json.dumps(doc).encode()
    return http(url, "/v2/models/tiny_logistic/infer", body, {"Content-Type": "application/json", **(headers or {})})


def test_idle_and_trickling_sockets_do_not_stop_liveness_and_are_closed(server) -> None:
    url = server[0]
    host, port = url.split(":")
    socks = []
    for _ in range(140):
        s = socket.create_connection((host, int(port)))
        s.sendall(b"POST /v2/models/tiny_logistic/infer HTTP/1.1\r\nHost: x\r\n")  # never finished
        socks.append(s)
    started = time.monotonic()
    assert get(url, "/v2/health/live")[0] == 200
    assert get(url, "/v2/health/ready")[0] == 200
    status, body = _infer(url, {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]})
    assert status == 200 and body["outputs"]
    assert time.monotonic() - started < 5
    time.sleep(3)  # past --request-timeout 2: the server closed them
    pending, end = set(socks), time.monotonic() + 5
    while pending and time.monotonic() < end:  # a closed connection reads as EOF (or a reset); an open one waits
        ready, _, _ = select.select(list(pending), [], [], 0.5)
        for s in ready:
            try:
                data = s.recv(4096)
            except OSError:  # reset by the server: closed
                data = b""
            if data == b"":
                pending.discard(s)
    for s in socks:
        s.close()
    assert not pending, f"{len(pending)} of {len(socks)} idle connections are still open past --request-timeout"


def test_endless_headers_are_cut_off_and_liveness_stays(server) -> None:
    url = server[0]
    host, port = url.split(":")
    with socket.create_connection((host, int(port))) as s:
        s.settimeout(10)
        s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n")
        answer = b""
        try:
            for _ in range(400):  # 400 x 4 KiB of headers that never end
                s.sendall(b"X-Pad: " + b"a" * 4089 + b"\r\n")
            answer = s.recv(200)
        except (ConnectionResetError, BrokenPipeError):
            pass
        assert answer == b"" or answer.split(b" ")[1] in (b"400", b"431"), answer
    assert get(url, "/v2/health/live")[0] == 200


@pytest.mark.parametrize(("doc", "status", "words"), [
    ({"inputs": [{"name": "x", "shape": [2**62, 4], "datatype": "FP32", "data": []}]}, 400, "elements"),
    ({"inputs": [{"name": "x", "shape": [1] * 65, "datatype": "FP32", "data": [1]}]}, 400, "dimensions"),
    ({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}], "id": "\ud800"}, 400,
     "request_id"),
    ({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [True, 2, 3]}]}, 400, "booleans"),
])
def test_absurd_requests_are_4xx(server, doc, status: int, words: str) -> None:
    got, body = _infer(server[0], doc)
    assert got == status and words in body["error"], body


def test_json_nested_50_000_deep_is_400(server) -> None:
    raw = b'{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": ' + b"[" * 50_000 + \
        b"]" * 50_000 + b"}]}"
    got, body = _infer(server[0], None, raw=raw)
    assert got == 400 and "deeper" in body["error"]


def test_a_second_gzip_member_is_refused_not_ignored(server) -> None:
    good = json.dumps({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}).encode()
    raw = gzip.compress(good) + gzip.compress(b"smuggled")
    got, body = _infer(server[0], None, {"Content-Encoding": "gzip"}, raw=raw)
    assert got == 400 and "after its first stream" in body["error"]


def test_a_refused_request_id_is_still_audited(server) -> None:
    url, _, root = server
    _infer(url, {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}], "id": "\ud800"})
    records = [json.loads(x) for x in (root / "audit.jsonl").read_text().splitlines()]
    assert any(r.get("request_id", "").startswith("refused-id:") and r["status"] == "no_result" for r in records)


@pytest.mark.parametrize(("args", "words"), [
    (["--max-concurrency", "0"], "--max-concurrency 0"), (["--port", "99999"], "--port 99999"),
    (["--deadline-ms", "0"], "--deadline-ms"), (["--deadline-ms", "-5"], "--deadline-ms"),
    (["--deadline-ms", "nan"], "--deadline-ms"), (["--max-queue", "-1"], "--max-queue"),
    (["--request-timeout", "0"], "--request-timeout"), (["--audit", "."], "--audit"),
])
def test_impossible_settings_refuse_to_start(tiny_bundle_ro: Path, args: list[str], words: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "medinfer", "serve", str(tiny_bundle_ro), *args],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2 and words in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_an_unwritable_audit_trail_stops_the_start(tiny_bundle_ro: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "medinfer", "serve", str(tiny_bundle_ro), "--audit", "/dev/full",
                           "--port", "0"], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 12 and "AuditError" in proc.stderr and "Traceback" not in proc.stderr


def test_an_unwritable_audit_trail_stops_the_start_with_workers_too(tiny_bundle_ro: Path) -> None:
    """--workers: the parent writes its start record before any worker runs (same exit 12, not a worker failure)."""
    proc = subprocess.run([sys.executable, "-m", "medinfer", "serve", str(tiny_bundle_ro), "--audit", "/dev/full",
                           "--port", "0", "--workers", "2"], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 12 and "AuditError" in proc.stderr and "Traceback" not in proc.stderr
    assert "worker" not in proc.stderr.lower(), proc.stderr  # refused before any worker started


def test_settings_are_checked_by_the_library_too() -> None:
    from medinfer.fleet.serve import ServeConfig

    with pytest.raises(medinfer.UsageError, match="--max-concurrency"):
        ServeConfig(bundles=("x",), max_concurrency=0)


@pytest.mark.skipif(resource is None or not hasattr(resource, "prlimit"), reason="needs resource.prlimit (Linux)")
def test_a_trail_that_stops_taking_writes_later_gives_503_and_not_ready_until_it_works_again(tmp_path: Path) -> None:
    """The disk fills after the start: the server's file-size limit is set (prlimit, from outside) to the log's
    current size, so its next append fails like on a full disk (EFBIG instead of ENOSPC), deterministically. Then
    inference answers 503 AuditError (no unrecorded answer), /v2/health/ready is not 200 while liveness stays, and
    once the limit is lifted ready probes the trail (its recovery record is the write that succeeds) and inference
    answers again; the chain stays valid throughout."""
    from medinfer.audit import verify_log

    bundle, log = tiny.build(tmp_path / "tiny_logistic"), tmp_path / "audit.jsonl"
    doc = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}
    with serving([bundle], "--audit", str(log), log=tmp_path / "server.log") as (url, proc):
        assert _infer(url, doc)[0] == 200
        unlimited = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (log.stat().st_size, unlimited[1]))
        try:
            for _ in range(2):
                status, body = _infer(url, doc)
                assert status == 503 and "AuditError" in body.get("error", "") + str(body), (status, body)
            status, headers, _ = request(url, "/v2/health/ready")
            assert status != 200 and "audit trail cannot be written" in headers.get("x-medinfer-not-ready", "")
            assert get(url, "/v2/health/live")[0] == 200
        finally:
            resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, unlimited)
        assert get(url, "/v2/health/ready")[0] == 200
        assert _infer(url, doc)[0] == 200
    report = verify_log(log)
    events = [json.loads(x).get("event") for x in log.read_text().splitlines()]
    statuses = [json.loads(x).get("status") for x in log.read_text().splitlines()]
    assert report.ok and "audit_recovered" in events and statuses.count("ok") == 2, (report, events, statuses)
