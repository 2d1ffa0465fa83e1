"""Operating ``medinfer serve`` like Triton: model configuration and statistics through tritonclient, a Prometheus
scrape (main port and ``--metrics-port``), request ids matched to audit records, JSON access logs, Triton's
version numbering and ``timeout`` parameter, and errors that name what an HTTP client can do."""

from __future__ import annotations

import json
import time
from pathlib import Path

import medinfer
import numpy as np
import pytest

from ..helpers import tiny
from ..helpers.serving import get, http, request, serving
from ..helpers.wire import infer

pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")
th = pytest.importorskip("tritonclient.http")
from medinfer.fleet.http import free_port  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

X = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 4.5], [0.0, 0.0, 0.0]], dtype=np.float32)


@pytest.fixture(scope="module")
def ops(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("serve_ops")
    bundle = tiny.build(root / "tiny_logistic")
    slow = tiny.build(root / "tiny_slow", name="tiny_slow", slow=150)
    metrics_port = free_port()
    with serving([bundle, slow], "--audit", str(root / "audit.jsonl"), "--access-log", "--metrics-port",
                 str(metrics_port), log=root / "server.log") as (url, _):
        yield {"url": url, "bundle": bundle, "root": root, "metrics": f"127.0.0.1:{metrics_port}"}


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, headers, body = request(url, "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain"), (status, headers)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode()) for s in family.samples}


def test_model_config_through_tritonclient(ops) -> None:
    client = th.InferenceServerClient(ops["url"])
    config = client.get_model_config("tiny_logistic")
    assert config["name"] == "tiny_logistic" and config["backend"] == "medinfer"
    assert config["input"] == [{"name": "x", "data_type": "TYPE_FP32", "dims": [3]}]
    assert [o["name"] for o in config["output"]] == ["labels", "scores", "probabilities"]
    assert config["output"][0]["data_type"] == "TYPE_STRING"
    assert config["parameters"]["decision_threshold"] == {"string_value": "0.5"}
    assert config["parameters"]["model_sha256"]["string_value"] == medinfer.load(ops["bundle"]).model_sha256
    assert config["instance_group"][0]["kind"] == "KIND_CPU" and "dynamic_batching" not in config
    assert client.get_model_config("tiny_logistic", "1") == config  # Triton's version numbering
    with pytest.raises(InferenceServerException, match="unknown model") as info:
        client.get_model_config("nope")
    assert info.value.status() == "404"


def test_statistics_through_tritonclient(ops) -> None:
    client = th.InferenceServerClient(ops["url"])
    before = client.get_inference_statistics("tiny_logistic")["model_stats"][0]
    for rows in (1, 1, 3):
        infer(client, "tiny_logistic", X[:rows])
    with pytest.raises(InferenceServerException):
        infer(client, "tiny_logistic", np.full((1, 3), 99, np.float32))  # outside the declared range: 400
    stats = client.get_inference_statistics("tiny_logistic")["model_stats"][0]
    assert stats["name"] == "tiny_logistic" and stats["version"] == "0.0.1"
    done = stats["inference_stats"]
    assert done["success"]["count"] - before["inference_stats"]["success"]["count"] == 3
    assert done["fail"]["count"] - before["inference_stats"]["fail"]["count"] == 1
    assert stats["inference_count"] - before["inference_count"] == 5  # samples
    assert stats["execution_count"] - before["execution_count"] == 3
    for phase in ("queue", "compute_input", "compute_infer", "compute_output"):
        assert done[phase]["count"] == done["success"]["count"] and done[phase]["ns"] > 0
    sizes = {b["batch_size"]: b["compute_infer"]["count"] for b in stats["batch_stats"]}
    assert sizes[3] >= 1 and sizes[1] >= 2
    assert stats["last_inference"] > (time.time() - 60) * 1e3
    every = client.get_inference_statistics()["model_stats"]
    assert {s["name"] for s in every} == {"tiny_logistic", "tiny_slow"}
    assert client.get_inference_statistics("tiny_logistic", "1")["model_stats"][0]["name"] == "tiny_logistic"


def test_prometheus_scrape(ops) -> None:
    url = ops["url"]
    client = th.InferenceServerClient(url)
    at = (("model", "tiny_logistic"), ("version", "0.0.1"))
    first = _scrape(url)
    infer(client, "tiny_logistic", X)
    with pytest.raises(InferenceServerException):
        infer(client, "tiny_logistic", np.ones((1, 4), np.float32))
    after = _scrape(url)

    def grew(name: str, labels: tuple = at) -> float:
        key = (name, tuple(sorted(labels)))
        return after.get(key, 0.0) - first.get(key, 0.0)

    assert grew("medinfer_inference_request_success_total") == 1
    assert grew("medinfer_inference_count_total") == len(X)
    assert grew("medinfer_inference_exec_count_total") == 1
    assert grew("medinfer_inference_request_failure_total", (*at, ("reason", "input"))) == 1
    assert grew("medinfer_no_result_total", (*at, ("reason", "input"))) == 1
    assert grew("medinfer_inference_request_duration_seconds_count") == 2
    assert grew("medinfer_inference_compute_infer_duration_us_total") > 0
    assert after[("medinfer_model_ready", at)] == 1.0
    assert after[("medinfer_audit_write_failures_total", at)] == 0.0
    assert after[("medinfer_inference_pending_request_count", at)] == 0.0
    assert after[("process_resident_memory_bytes", ())] > 10e6
    # the separate metrics port serves the same metrics, and nothing but metrics and health
    assert ("medinfer_inference_request_success_total", at) in _scrape(ops["metrics"])
    assert get(ops["metrics"], "/v2/health/live")[0] == 200
    status, body = http(ops["metrics"], "/v2/models/tiny_logistic/infer", b"{}")
    assert status == 404 and "metrics" in body["error"]


def test_server_metadata_lists_every_extension_and_ignores_a_trailing_slash(ops) -> None:
    status, doc = get(ops["url"], "/v2")
    assert status == 200 and get(ops["url"], "/v2/") == (status, doc)
    assert {"binary_tensor_data", "model_repository", "statistics", "model_configuration"} <= set(doc["extensions"])
    assert http(ops["url"], "/v2/repository/index/", b"{}")[0] == 200  # listed and served
    assert get(ops["url"], "/v2/models/tiny_logistic/")[1]["name"] == "tiny_logistic"
    assert get(ops["url"], "/v2/models/stats")[0] == 200
    assert get(ops["url"], "/v2/health/live")[0] == 200


def test_request_ids_match_the_audit_record(ops) -> None:
    url, root = ops["url"], ops["root"]
    path = "/v2/models/tiny_logistic/infer"
    doc = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}
    status, headers, raw = request(url, path, json.dumps(doc).encode(), {"X-Request-ID": "hdr-7"})
    assert status == 200 and headers["x-request-id"] == "hdr-7" and json.loads(raw)["id"] == "hdr-7"
    status, headers, raw = request(url, path, json.dumps({**doc, "id": "body-8"}).encode())
    assert status == 200 and headers["x-request-id"] == "body-8" and json.loads(raw)["id"] == "body-8"
    status, headers, raw = request(url, path, json.dumps(doc).encode())  # no id: the server's, the audit record's
    given = json.loads(raw)["id"]
    assert status == 200 and headers["x-request-id"] == given and len(given) == 32
    status, headers, raw = request(url, path, json.dumps({"inputs": []}).encode(), {"X-Request-ID": "bad-9"})
    assert status == 400 and headers["x-request-id"] == "bad-9"  # errors carry the id too
    records = {r.get("request_id"): r for r in map(json.loads, (root / "audit.jsonl").read_text().splitlines())}
    assert records["hdr-7"]["status"] == records["body-8"]["status"] == records[given]["status"] == "ok"


def test_access_log_is_one_json_object_per_request(ops) -> None:
    client = th.InferenceServerClient(ops["url"])
    infer(client, "tiny_logistic", X, request_id="logged-1")
    time.sleep(0.2)
    lines = [json.loads(line) for line in (ops["root"] / "server.log").read_text().splitlines()
             if line.startswith("{")]
    entry = next(e for e in lines if e.get("id") == "logged-1")
    assert entry["model"] == "tiny_logistic" and entry["version"] == "0.0.1" and entry["status"] == 200
    assert entry["batch"] == len(X) and entry["duration_ms"] > 0 and entry["infer_ms"] > 0
    # the route and the path's size, never the path (a client-made path is content too)
    assert entry["route"] == "infer" and entry["method"] == "POST" and entry["path_bytes"] == 30
    assert any(e.get("route") == "ready" for e in lines)


def test_triton_version_alias_and_timeout_parameter(ops) -> None:
    client = th.InferenceServerClient(ops["url"])
    result = infer(client, "tiny_logistic", X, model_version="1")
    assert result.get_response()["model_version"] == "0.0.1"  # the bundle's version answers to "1"
    assert client.is_model_ready("tiny_logistic", "1")
    assert client.get_model_metadata("tiny_logistic", "1")["versions"] == ["0.0.1"]
    with pytest.raises(InferenceServerException, match=r"unknown version '2'.*version 1 \(Triton's numbering\)"):
        infer(client, "tiny_logistic", X, model_version="2")
    with pytest.raises(InferenceServerException, match="DeadlineExceeded") as info:
        infer(client, "tiny_slow", X, timeout=1000)  # Triton's request timeout, µs: 1 ms for a ~50 ms model
    assert info.value.status() == "504"
    assert infer(client, "tiny_slow", X[:1], timeout=60_000_000).as_numpy("scores").shape == (1,)
    doc = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}],
           "parameters": {"timeout": -1}}
    status, body = http(ops["url"], "/v2/models/tiny_logistic/infer", json.dumps(doc).encode())
    assert status == 400 and "parameters.timeout must be a positive number of microseconds" in body["error"]


def test_a_dtype_error_names_what_an_http_client_sends(ops) -> None:
    client = th.InferenceServerClient(ops["url"])
    with pytest.raises(InferenceServerException) as info:
        infer(client, "tiny_logistic", X.astype(np.float64), datatype="FP64")
    message = info.value.message()
    assert info.value.status() == "400" and "sent as datatype FP64; send it as FP32" in message
    assert "load(" not in message and "cast=" not in message
    assert "dtype float64, but tiny_logistic expects float32" in message


def test_not_ready_model_health_is_4xx_with_an_empty_body(tmp_path: Path) -> None:
    wrong = tiny.build(tmp_path / "wrong", name="tiny_wrong", golden_out=np.full((3, 2), 0.5, np.float32))
    with serving([wrong], log=tmp_path / "log", wait_ready=False) as (url, _):
        end = time.monotonic() + 60
        while http(url, "/v2/repository/index", b"{}")[1][0]["state"] == "LOADING":
            assert time.monotonic() < end
            time.sleep(0.05)
        status, headers, body = request(url, "/v2/models/tiny_wrong/ready")
        assert status == 400 and body == b"" and "SelfTestError" in headers["x-medinfer-not-ready"]
        scraped = _scrape(url)
        assert scraped[("medinfer_model_ready", (("model", "tiny_wrong"), ("version", "")))] == 0.0


def test_a_response_leaves_in_one_write() -> None:
    """uvicorn writes head and body apart; the corked transport joins them (one segment per response), lets
    100-continue through at once, and flushes a head that is closed without a body."""
    from medinfer.fleet.http import CorkedTransport

    class Sink:
        def __init__(self) -> None:
            self.writes: list[bytes] = []
            self.closed = False

        def write(self, data: bytes) -> None:
            self.writes.append(data)

        def close(self) -> None:
            self.closed = True

        def is_closing(self) -> bool:
            return self.closed

    sink = Sink()
    corked = CorkedTransport(sink)
    corked.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    corked.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    assert sink.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    corked.write(b"{}")
    assert sink.writes[1:] == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    corked.write(b"HTTP/1.1 204 No Content\r\n\r\n")
    corked.close()
    assert sink.writes[2:] == [b"HTTP/1.1 204 No Content\r\n\r\n"] and sink.closed and corked.is_closing()


def test_a_slow_model_is_timed_once_not_seven_times(tmp_path: Path) -> None:
    """Readiness waits for the batch-1 timing that places a model inline or in the pool: a model slower than the
    timing budget is measured once (it was seven runs: a 2 s model took 15 s more to become ready)."""
    from medinfer.fleet.serve import batch1_ms

    model = medinfer.load(tiny.build(tmp_path / "slow", slow=150))
    calls = []
    plain = model.predict

    def counted(x: object) -> object:
        calls.append(time.perf_counter())
        return plain(x)

    model.predict = counted  # type: ignore[method-assign]
    assert batch1_ms(model, budget_s=0.0) > 0 and len(calls) == 1
    calls.clear()
    fast = medinfer.load(tiny.build(tmp_path / "fast"))
    fast_plain = fast.predict
    fast.predict = lambda x: (calls.append(0.0), fast_plain(x))[1]  # type: ignore[method-assign]
    batch1_ms(fast)
    assert len(calls) == 7  # a fast model still gets its seven runs
