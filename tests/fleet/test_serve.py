"""``medinfer serve`` as a real subprocess on a free loopback port, queried with tritonclient.http (a client
nobody here wrote): results identical to ``Model.predict``, protocol errors with the right HTTP codes, readiness
only after the self-test, audit trail, deadlines, bounded body/concurrency, graceful shutdown, a bounded load test.
"""

from __future__ import annotations

import gzip
import json
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import medinfer
import numpy as np
import pytest

from ..helpers import tiny
from ..helpers.checks import hammer
from ..helpers.serving import get, http, request, serving
from ..helpers.wire import assert_same, every_built_bundle, infer, wire_input

pytest.importorskip("uvicorn")
th = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

X = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 4.5], [0.0, 0.0, 0.0], [9.0, -9.0, 1.0]], dtype=np.float32)














@pytest.fixture(scope="module")
def tiny_server(tmp_path_factory: pytest.TempPathFactory, tiny_bundle_ro: Path) -> Iterator[tuple[str, Path, Path]]:
    root = tmp_path_factory.mktemp("serve")
    bundle = tiny_bundle_ro  # read only: the session's tiny bundle
    with serving([bundle], "--audit", str(root / "audit.jsonl"), "--max-body-mb", "0.05",
                 log=root / "server.log") as (url, _):
        yield url, bundle, root / "audit.jsonl"


def test_tritonclient_gets_what_predict_gives(tiny_server) -> None:
    url, bundle, _ = tiny_server
    client = th.InferenceServerClient(url)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("tiny_logistic")
    meta = client.get_model_metadata("tiny_logistic")
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}]
    assert [o["name"] for o in meta["outputs"]] == ["labels", "scores", "probabilities"]
    assert client.get_server_metadata()["name"] == "medinfer"
    model = medinfer.load(bundle)
    expected = model.predict(X)
    for binary in (True, False):  # the binary tensor extension and plain JSON
        result = infer(client, "tiny_logistic", X, binary=binary, request_id=f"req-{binary}")
        assert_same(result, expected, "probabilities", model)
        response = result.get_response()
        assert response["id"] == f"req-{binary}" and response["model_version"] == "0.0.1"
        assert response["parameters"]["model_sha256"] == expected.model_sha256
    for algorithm in ("gzip", "deflate"):
        packed = infer(client, "tiny_logistic", X, request_compression_algorithm=algorithm)
        assert_same(packed, expected, "probabilities", model)
    only = infer(client, "tiny_logistic", X, outputs=[th.InferRequestedOutput("scores", binary_data=False)])
    assert [o["name"] for o in only.get_response()["outputs"]] == ["scores"]


@pytest.mark.parametrize(("x", "datatype", "status", "message"), [
    (np.ones((2, 4), np.float32), "FP32", "400", "X has 4 features, but tiny_logistic is expecting 3"),
    (X.astype(np.float64), "FP64", "400", "dtype float64, but tiny_logistic expects float32"),
    (np.array([[1.0, np.nan, 0.0]], np.float32), "FP32", "400", "NaN"),
    (np.array([[1.0, 99.0, 0.0]], np.float32), "FP32", "400", "outside the declared range"),
    (np.array([["a", "b", "c"]], dtype=object), "BYTES", "400", "expects float32"),
])
def test_input_errors_are_400_with_the_library_message(tiny_server, x, datatype, status, message) -> None:
    client = th.InferenceServerClient(tiny_server[0])
    with pytest.raises(InferenceServerException, match=message) as info:
        infer(client, "tiny_logistic", x, datatype=datatype)
    assert info.value.status() == status


def test_protocol_errors(tiny_server) -> None:
    url = tiny_server[0]
    client = th.InferenceServerClient(url)
    with pytest.raises(InferenceServerException, match=r"unknown model 'nope' \(1 known: tiny_logistic\)") as info:
        infer(client, "nope", X)
    assert info.value.status() == "404"
    unknown = r"unknown version '7' of model 'tiny_logistic' \(1 known: 0.0.1\)"
    with pytest.raises(InferenceServerException, match=unknown) as info:
        infer(client, "tiny_logistic", X, model_version="7")
    assert info.value.status() == "404"
    with pytest.raises(InferenceServerException, match=r"takes input\(s\) \['x'\]") as info:
        infer(client, "tiny_logistic", X, name="features")
    assert info.value.status() == "400"
    path = "/v2/models/tiny_logistic/infer"
    assert http(url, path, b"{not json")[0] == 400
    status, body = http(url, path, json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 3],
                                                           "data": [1, 2, 3]}]}).encode())
    assert status == 400 and "has 3 values but shape [2, 3] needs 6" in body["error"]
    status, body = http(url, path, json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3],
                                                           "data": ["1", "2", "3"]}]}).encode())
    assert status == 400 and "strings" in body["error"]
    status, body = http(url, path, b" " * 60_000)
    assert status == 413 and "limit of 52428 bytes" in body["error"]
    bomb = gzip.compress(b" " * 200_000)  # 200 kB of spaces in a few hundred bytes
    status, body = http(url, path, bomb, {"Content-Encoding": "gzip"})
    assert status == 413 and "decompressed request body exceeds" in body["error"]
    assert http(url, path, b"{}", {"Content-Encoding": "br"})[0] == 400
    assert get(url, "/v2/nothing/here")[0] == 404


def test_fhir_response_option(tiny_server) -> None:
    r4 = pytest.importorskip("fhir.resources.R4B")
    url, bundle, _ = tiny_server
    path = "/v2/models/tiny_logistic/infer"

    def ask(**params: object) -> tuple[int, dict]:
        body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": list(X.shape), "data": X.ravel().tolist()}],
                "parameters": params}
        return http(url, path, json.dumps(body).encode())

    status, body = ask(fhir=True)
    assert status == 400 and "needs parameters.fhir_subject" in body["error"]
    status, body = ask(fhir="yes", fhir_subject="Patient/1")
    assert status == 400 and "must be true or false" in body["error"]
    status, body = ask(fhir=True, fhir_subject="Patient/1")  # tiny_logistic has no clinical mapping
    assert status == 400 and "no patient-facing FHIR mapping" in body["error"]
    status, body = ask(fhir=True, fhir_subject="Patient/1", fhir_generic=True,
                       fhir_basis="Observation/a, Observation/b")
    assert status == 200, body
    doc = json.loads(body["parameters"]["fhir"])
    r4.get_fhir_model_class("Bundle").model_validate(doc)
    observations = [e["resource"] for e in doc["entry"] if e["resource"]["resourceType"] == "Observation"]
    expected = medinfer.load(bundle).predict(X)
    assert len(observations) == len(X)
    assert [o["valueCodeableConcept"]["text"] for o in observations] == [str(v) for v in expected.labels]
    assert observations[0]["derivedFrom"] == [{"reference": "Observation/a"}, {"reference": "Observation/b"}]
    assert "fhir" not in ask()[1].get("parameters", {})  # not asked, not sent


def test_audit_trail_records_each_request(tiny_server) -> None:
    url, _, audit = tiny_server
    client = th.InferenceServerClient(url)
    infer(client, "tiny_logistic", X, request_id="audited-1")
    with pytest.raises(InferenceServerException):
        infer(client, "tiny_logistic", np.ones((1, 4), np.float32), request_id="audited-2")
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    by_id = {r.get("request_id"): r for r in lines}
    assert by_id["audited-1"]["status"] == "ok" and by_id["audited-2"]["reason"] == "input"
    assert medinfer.verify_log(audit).ok


def test_ready_only_after_integrity_and_self_test(tmp_path: Path) -> None:
    slow = tiny.build(tmp_path / "tiny_logistic", slow=150)  # the self-test takes a moment
    wrong = tiny.build(tmp_path / "wrong", name="tiny_wrong", golden_out=np.full((3, 2), 0.5, np.float32))
    tampered = tiny.build(tmp_path / "tampered", name="tiny_tampered")
    with open(tampered / "model.onnx", "ab") as fh:
        fh.write(b"\0")
    with serving([slow, wrong, tampered], log=tmp_path / "log", wait_ready=False) as (url, _):
        assert get(url, "/v2/health/live")[0] == 200
        # KServe v2 health: 4xx (400, like Triton) with an empty body; the reason in a header
        status, headers, body = request(url, "/v2/health/ready")
        assert status == 400 and body == b"" and "tiny_logistic: loading" in headers["x-medinfer-not-ready"]
        end = time.monotonic() + 60
        while any(m["state"] == "LOADING" for m in http(url, "/v2/repository/index", b"{}")[1]):
            assert time.monotonic() < end, "bundles still loading after 60 s"
            time.sleep(0.05)
        index = {m["name"]: m for m in http(url, "/v2/repository/index", b"{}")[1]}
        assert index["tiny_logistic"]["state"] == "READY" and index["tiny_wrong"]["state"] == "UNAVAILABLE"
        status, headers, body = request(url, "/v2/health/ready")
        assert status == 400 and body == b"" and "tiny_wrong: unavailable" in headers["x-medinfer-not-ready"]
        client = th.InferenceServerClient(url)
        assert client.is_model_ready("tiny_logistic") and not client.is_model_ready("tiny_wrong")
        with pytest.raises(InferenceServerException, match="SelfTestError") as info:
            infer(client, "tiny_wrong", X)
        assert info.value.status() == "503"
        with pytest.raises(InferenceServerException, match="IntegrityError.*model.onnx"):
            infer(client, "tiny_tampered", X)


def test_deadline_busy_and_graceful_shutdown(tmp_path: Path) -> None:
    slow = tiny.build(tmp_path / "tiny_logistic", slow=150)
    with serving([slow], "--deadline-ms", "5", "--max-concurrency", "1", "--max-queue", "0",
                 log=tmp_path / "log") as (url, proc):
        client = th.InferenceServerClient(url)
        with pytest.raises(InferenceServerException, match="DeadlineExceeded") as info:
            infer(client, "tiny_logistic", X)
        assert info.value.status() == "504"
    with serving([slow], "--max-concurrency", "1", "--max-queue", "0", log=tmp_path / "log2") as (url, proc):
        results: list[object] = []

        def call() -> None:
            try:
                results.append(infer(th.InferenceServerClient(url), "tiny_logistic", X).as_numpy("scores"))
            except InferenceServerException as exc:
                results.append(exc)

        workers = [threading.Thread(target=call) for _ in range(2)]
        for w in workers:
            w.start()
        time.sleep(0.05)
        busy = [r for r in results if isinstance(r, InferenceServerException)]
        for w in workers:
            w.join()
        busy = [r for r in results if isinstance(r, InferenceServerException)]
        assert len(busy) == 1 and busy[0].status() == "503" and "server busy" in busy[0].message()
        # SIGTERM while a request runs: it still completes, then the process exits cleanly
        late: list[object] = []
        runner = threading.Thread(target=lambda: late.append(infer(th.InferenceServerClient(url), "tiny_logistic", X)))
        runner.start()
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        runner.join(30)
        assert proc.wait(30) == 0
        assert late and np.array_equal(late[0].as_numpy("scores"), medinfer.load(slow).predict(X).scores)
        assert get(url, "/v2/health/live")[0] == 0  # nothing listens any more


def test_missing_extra_is_named(monkeypatch: pytest.MonkeyPatch, tiny_bundle_ro: Path) -> None:
    from medinfer.fleet import serve as serve_mod

    monkeypatch.setitem(sys.modules, "uvicorn", None)
    with pytest.raises(medinfer.MissingExtraError, match=r"needs the \[serve\] extra.*pip install 'medinfer\[serve\]'"):
        serve_mod.serve(serve_mod.ServeConfig(bundles=(str(tiny_bundle_ro),)))


def test_loopback_load(tiny_server) -> None:
    """Bounded in count and time: 4 clients, at most 4000 requests or 8 s; throughput and p99 printed."""
    url = tiny_server[0]
    local = threading.local()

    def one_request() -> float:
        if not hasattr(local, "client"):
            local.client = th.InferenceServerClient(url)
        start = time.perf_counter()
        infer(local.client, "tiny_logistic", X[:1])
        return time.perf_counter() - start

    t0 = time.perf_counter()
    latencies, errors = hammer(one_request, threads=4, calls=4000, seconds=8)
    wall = time.perf_counter() - t0
    lat = np.array(latencies) * 1e3
    print(f"\nserve load test: {len(lat)} requests from 4 clients in {wall:.2f} s = {len(lat) / wall:.0f} req/s; "
          f"latency p50 {np.percentile(lat, 50):.2f} ms, p99 {np.percentile(lat, 99):.2f} ms, max {lat.max():.2f} ms")
    assert not errors, errors[:3]
    assert len(lat) >= 100


def test_all_five_models_over_the_wire(built, tmp_path: Path) -> None:
    bundles = every_built_bundle(built)
    with serving([path for _, path in bundles.values()], log=tmp_path / "log", timeout=300) as (url, _):
        client = th.InferenceServerClient(url, network_timeout=120)
        for name, (art, path) in bundles.items():
            model = medinfer.load(path)
            x, datatype = wire_input(model, art.dataset.X_test)
            expected = model.predict(x)
            for binary in (True, False):
                result = infer(client, name, x, name=model.input_names[0], datatype=datatype, binary=binary)
                assert_same(result, expected, model.manifest.decision.score_output, model)
