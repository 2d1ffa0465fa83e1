"""The issue-29 attacks on ``medinfer serve``, each on both HTTP stacks (httptools on uvloop, and h11): oversized
and unfinished bodies, sequences of any length, idle sockets beyond the connection limit, hostile numbers, times and
ids, HEAD, logs in JSON mode and logs free of request content. gRPC's twins are in ``test_serve_grpc.py``."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import socket
import time

import pytest
from medinfer.fleet.http import free_port

from ..helpers import tiny
from ..helpers.serving import http, request, serving

pytest.importorskip("uvicorn")
pytestmark = pytest.mark.hostile("serve: bounds on every stack")
PATHS = [p for p in ("httptools", "h11") if p == "h11" or importlib.util.find_spec(p) is not None]
GLUCOSE_FACTS = {"horizon_minutes": 30, "step_minutes": 5}
SECRET_PATIENT = "Patient/SECRET-4711"
SECRET_VALUE = 987.654321


@pytest.fixture(scope="module", params=PATHS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp(f"bounds_{request.param}")
    logistic = tiny.build(root / "tiny_logistic")
    glucose = tiny.build_sequence(root / "glucose", name="glucose_lstm", units="mg/dL", facts=GLUCOSE_FACTS)
    metrics = free_port()
    log = root / "server.log"
    with serving([logistic, glucose], "--http", request.param, "--max-elements", "1000", "--max-connections", "8",
                 "--request-timeout", "3", "--max-body-mb", "1", "--max-concurrency", "1", "--max-queue", "1",
                 "--access-log", "--log-format", "json", "--audit", str(root / "audit.jsonl"),
                 "--metrics-port", str(metrics), log=log) as (url, _):
        yield {"url": url, "log": log, "metrics": f"127.0.0.1:{metrics}", "root": root}


def _infer(url: str, model: str, doc: object, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    return http(url, f"/v2/models/{model}/infer", json.dumps(doc).encode(),
                {"Content-Type": "application/json", **(headers or {})})


def _raw(url: str, data: bytes, wait: float = 5.0, head_only: bool = False) -> bytes:
    host, port = url.split(":")
    with socket.create_connection((host, int(port))) as s:
        s.settimeout(wait)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(data)
        out = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
                if b"\r\n\r\n" in out and (head_only or len(out) > out.index(b"\r\n\r\n") + 4):
                    break
        except TimeoutError:
            pass
        return out


X1 = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}


def test_an_oversized_body_gets_413_not_a_reset(server) -> None:
    url = server["url"]
    head = (f"POST /v2/models/tiny_logistic/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {50 << 20}\r\n\r\n").encode()
    answer = _raw(url, head + b"[" * (512 << 10))  # half a MiB of the 50 MiB sent before reading the answer
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    chunked = (b"POST /v2/models/tiny_logistic/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
               (b"100000\r\n" + b" " * 0x100000 + b"\r\n") * 2)  # 2 MiB without a declared length
    assert _raw(url, chunked).startswith(b"HTTP/1.1 413")


def test_an_unfinished_upload_holds_a_gate_slot_and_others_are_refused_at_once(server) -> None:
    url = server["url"]
    host, port = url.split(":")
    head = (b"POST /v2/models/tiny_logistic/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 900000\r\n\r\n")
    uploads = []
    for _ in range(2):  # --max-concurrency 1, --max-queue 1: one reads its body, one waits
        s = socket.create_connection((host, int(port)))
        s.sendall(head + b" " * 1000)
        uploads.append(s)
    time.sleep(0.3)
    started = time.monotonic()
    status, body = _infer(url, "tiny_logistic", X1)
    assert status == 503 and "busy" in body["error"], body
    assert time.monotonic() - started < 2
    assert request(url, "/v2/health/live")[0] == 200
    for s in uploads:
        s.close()
    end = time.monotonic() + 10  # the server sees the uploads go and frees their slots
    while _infer(url, "tiny_logistic", X1)[0] != 200 and time.monotonic() < end:
        time.sleep(0.05)


def test_a_sequence_beyond_the_element_bound_is_400(server) -> None:
    url = server["url"]
    ok = {"inputs": [{"name": "x", "shape": [1, 100, 2], "datatype": "FP32", "data": [0.5] * 200}]}
    assert _infer(url, "glucose_lstm", ok)[0] == 200
    long = {"inputs": [{"name": "x", "shape": [1, 600, 2], "datatype": "FP32", "data": [0.5] * 1200}]}
    status, body = _infer(url, "glucose_lstm", long)
    assert status == 400 and "at most 1000 per input per call" in body["error"], body


def test_idle_sockets_beyond_the_limit_never_take_health_or_metrics_to_503(server) -> None:
    url = server["url"]
    host, port = url.split(":")
    idle = [socket.create_connection((host, int(port))) for _ in range(20)]  # 8 allowed
    time.sleep(0.3)
    try:
        assert request(url, "/v2/health/live")[0] == 200
        assert request(url, "/v2/health/ready")[0] == 200
        assert request(url, "/metrics")[0] == 200
        assert request(server["metrics"], "/metrics")[0] == 200  # the metrics port has its own limit
        status, _, raw = request(url, "/v2/models/tiny_logistic/infer", json.dumps(X1).encode())
        assert status == 503 and b"only health checks" in raw
    finally:
        for s in idle:
            s.close()
    time.sleep(0.3)
    assert _infer(url, "tiny_logistic", X1)[0] == 200


BIG = "9" * 5000


@pytest.mark.parametrize("where", ["data", "shape", "parameters", "binary_data_size", "deadline", "id"])
def test_a_5000_digit_integer_anywhere_in_the_json_is_400(server, where: str) -> None:
    item = '{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}'
    doc = {"data": item.replace("[1, 2, 3]", f"[1, {BIG}, 3]"), "shape": item.replace("[1, 3]", f"[1, {BIG}]"),
           "binary_data_size": item.replace('"data": [1, 2, 3]', f'"parameters": {{"binary_data_size": {BIG}}}')
           }.get(where, item)
    extra = {"parameters": f', "parameters": {{"priority": {BIG}}}',
             "deadline": f', "parameters": {{"timeout": {BIG}}}', "id": f', "id": {BIG}'}.get(where, "")
    raw = f'{{"inputs": [{doc}]{extra}}}'.encode()
    status, _, body = request(server["url"], "/v2/models/tiny_logistic/infer", raw,
                              {"Content-Type": "application/json"})
    assert 400 <= status < 500, (status, body[:300])
    assert BIG[:50] not in body.decode()


@pytest.mark.parametrize("when", ["9999-12-31T23:50:00+00:00", "0001-01-01T00:00:00+05:00", "1e400"])
def test_a_fhir_time_at_the_edge_of_the_calendar_is_400(server, when: str) -> None:
    pytest.importorskip("fhir.resources")
    doc = {"inputs": [{"name": "x", "shape": [1, 4, 2], "datatype": "FP32", "data": [0.5] * 8}],
           "parameters": {"fhir": True, "fhir_subject": "Patient/1", "fhir_time": when}}
    status, body = _infer(server["url"], "glucose_lstm", doc)
    assert status == 400, body


@pytest.mark.parametrize("deadline", [1e308, -1, 0])
def test_absurd_deadlines_are_400(server, deadline: float) -> None:
    status, body = _infer(server["url"], "tiny_logistic", {**X1, "parameters": {"deadline_ms": deadline}})
    assert status == 400 and "deadline_ms" in body["error"]


def test_a_100_kb_request_id_is_refused_and_never_echoed(server) -> None:
    url, rid = server["url"], "r" * 100_000
    status, headers, raw = request(url, "/v2/models/tiny_logistic/infer", json.dumps({**X1, "id": rid}).encode(),
                                   {"Content-Type": "application/json"})
    assert status == 400 and "x-request-id" not in headers and rid[:300] not in raw.decode()
    # in a header: the head is 100 KB in ONE read, and the 64 KiB bound holds
    head = (f"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Request-ID: {rid}\r\n\r\n").encode()
    answer = _raw(url, head)
    assert answer == b"" or answer.split(b" ")[1] == b"431", answer[:100]
    assert request(url, "/v2/health/live")[0] == 200


def test_head_is_answered_at_once(server) -> None:
    url = server["url"]
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/tiny_logistic"):
        started = time.monotonic()
        answer = _raw(url, f"HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode(), wait=10, head_only=True)
        assert answer.startswith(b"HTTP/1.1 200") and time.monotonic() - started < 1.0, (path, answer)


def test_every_log_line_is_json_and_no_request_content_is_logged(server) -> None:
    url = server["url"]
    _raw(url, b"NOT HTTP AT ALL\r\n\r\n")  # the server's own warning about an invalid request
    _infer(url, "tiny_logistic", {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32",
                                              "data": [1, SECRET_VALUE, 3]}], "id": "req-77"})
    _infer(url, "tiny_logistic", {**X1, "parameters": {"fhir": True, "fhir_subject": SECRET_PATIENT}})
    _infer(url, "glucose_lstm", {"inputs": [{"name": "x", "shape": [1, 2, 2], "datatype": "FP32",
                                             "data": [1, 2, 3, SECRET_VALUE]}],
                                 "parameters": {"fhir": True, "fhir_subject": SECRET_PATIENT}})
    request(url, f"/v2/models/{SECRET_PATIENT}/infer?subject={SECRET_PATIENT}", b"{}")
    time.sleep(0.5)
    text = server["log"].read_text()
    lines = text.splitlines()
    assert any('"req-77"' in line for line in lines)  # ids, sizes and codes are logged ...
    for line in lines:
        json.loads(line)
    assert "SECRET-4711" not in text and "987.65" not in text  # ... request content never
    audit = (server["root"] / "audit.jsonl").read_text()
    assert "SECRET-4711" not in audit and "987.65" not in audit
