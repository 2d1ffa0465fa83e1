"""``medinfer serve --grpc-port``: KServe v2 / Triton gRPC through ``tritonclient.grpc`` (a client nobody here
wrote), with the same answers, ids, audit records, statistics and auth as HTTP, the same bounds (message size,
sequence length, ids, busy), and mutual TLS."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import medinfer
import numpy as np
import pytest
from medinfer.fleet.tokens import add_token

from ..helpers import tiny
from ..helpers.serving import serving

pytest.importorskip("uvicorn")
pytest.importorskip("grpc")
tg = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402

pytestmark = pytest.mark.hostile("serve: gRPC")
X = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 4.5], [0.0, 0.0, 0.0]], dtype=np.float32)
GLUCOSE_FACTS = {"horizon_minutes": 30, "step_minutes": 5}


@pytest.fixture(scope="module")
def grpc_server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("serve_grpc")
    bundle = tiny.build(root / "tiny_logistic")
    glucose = tiny.build_sequence(root / "glucose", name="glucose_lstm", units="mg/dL", facts=GLUCOSE_FACTS)
    tokens = root / "tokens.json"
    minted = {"all": add_token(tokens, "all", ["infer", "metadata", "metrics"]),
              "metrics": add_token(tokens, "metrics", ["metrics"])}
    with serving([bundle, glucose], "--grpc-port", "0", "--token-file", str(tokens), "--audit",
                 str(root / "audit.jsonl"), "--max-elements", "1000", "--max-body-mb", "1",
                 log=root / "server.log") as (url, proc):
        yield {"url": proc.grpc_url, "http": url, "bundle": bundle, "tokens": minted, "root": root}


def _auth(server, name: str = "all") -> dict[str, str]:
    return {"authorization": f"Bearer {server['tokens'][name]}"}


def _input(x: np.ndarray, name: str = "x", datatype: str = "FP32") -> object:
    inp = tg.InferInput(name, list(x.shape), datatype)
    inp.set_data_from_numpy(x)
    return inp


def test_tritonclient_grpc_gets_what_predict_gives(grpc_server) -> None:
    client = tg.InferenceServerClient(grpc_server["url"])
    auth = _auth(grpc_server)
    assert client.is_server_live() and client.is_server_ready()  # health stays open
    assert client.is_model_ready("tiny_logistic", headers=auth)
    meta = client.get_model_metadata("tiny_logistic", headers=auth, as_json=True)
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": ["-1", "3"]}]
    expected = medinfer.load(grpc_server["bundle"]).predict(X)
    result = client.infer("tiny_logistic", [_input(X)], request_id="grpc-1", headers=auth)
    assert [v.decode() for v in result.as_numpy("labels")] == [str(v) for v in expected.labels]
    np.testing.assert_array_equal(result.as_numpy("scores"), expected.scores)
    np.testing.assert_array_equal(result.as_numpy("probabilities"), expected.outputs["probabilities"])
    response = result.get_response(as_json=True)
    assert response["id"] == "grpc-1" and response["model_version"] == "0.0.1"
    assert response["parameters"]["model_sha256"]["string_param"] == expected.model_sha256
    config = client.get_model_config("tiny_logistic", headers=auth, as_json=True)["config"]
    assert config["name"] == "tiny_logistic" and config["backend"] == "medinfer"
    index = client.get_model_repository_index(headers=auth, as_json=True)["models"]
    assert {m["name"] for m in index} == {"tiny_logistic", "glucose_lstm"}
    stats = client.get_inference_statistics("tiny_logistic", headers=_auth(grpc_server, "metrics"), as_json=True)
    assert int(stats["model_stats"][0]["inference_stats"]["success"]["count"]) >= 1
    time.sleep(0.2)
    records = [json.loads(x) for x in (grpc_server["root"] / "audit.jsonl").read_text().splitlines()]
    assert any(r.get("request_id") == "grpc-1" and r["status"] == "ok" for r in records)


def test_grpc_refuses_without_a_token_and_without_the_scope(grpc_server) -> None:
    client = tg.InferenceServerClient(grpc_server["url"])
    with pytest.raises(InferenceServerException, match="Unauthenticated") as info:
        client.infer("tiny_logistic", [_input(X)])
    assert info.value.status() == "StatusCode.UNAUTHENTICATED"
    with pytest.raises(InferenceServerException, match="lacks the scope 'infer'") as info:
        client.infer("tiny_logistic", [_input(X)], headers=_auth(grpc_server, "metrics"))
    assert info.value.status() == "StatusCode.PERMISSION_DENIED"
    with pytest.raises(InferenceServerException, match="unknown token"):
        client.get_model_metadata("tiny_logistic", headers={"authorization": "Bearer mdi_" + "x" * 43})
    records = [json.loads(x) for x in (grpc_server["root"] / "audit.jsonl").read_text().splitlines()]
    assert any(r.get("event") == "auth_refused" and r["protocol"] == "grpc" for r in records)
    text = (grpc_server["root"] / "audit.jsonl").read_text() + (grpc_server["root"] / "server.log").read_text()
    assert all(token not in text for token in grpc_server["tokens"].values())


@pytest.mark.parametrize(("case", "code", "words"), [
    ("wrong_features", "INVALID_ARGUMENT", "expecting 3"),
    ("nan", "INVALID_ARGUMENT", "NaN"),
    ("long_sequence", "INVALID_ARGUMENT", "at most 1000 per input per call"),
    ("huge_id", "INVALID_ARGUMENT", "request_id"),
    ("oversized", "RESOURCE_EXHAUSTED", ""),
    ("unknown_model", "NOT_FOUND", "unknown model"),
    ("absurd_deadline", "INVALID_ARGUMENT", "deadline_ms"),
    ("fhir_time", "INVALID_ARGUMENT", "outside the years"),
])
def test_grpc_holds_the_same_bounds(grpc_server, case: str, code: str, words: str) -> None:
    client = tg.InferenceServerClient(grpc_server["url"])
    auth = _auth(grpc_server)
    model, inputs, kwargs = "tiny_logistic", [_input(X)], {}
    if case == "wrong_features":
        inputs = [_input(np.ones((1, 4), np.float32))]
    elif case == "nan":
        inputs = [_input(np.array([[1.0, np.nan, 0.0]], np.float32))]
    elif case == "long_sequence":
        model, inputs = "glucose_lstm", [_input(np.full((1, 600, 2), 0.5, np.float32))]
    elif case == "huge_id":
        kwargs = {"request_id": "r" * 100_000}
    elif case == "oversized":
        inputs = [_input(np.zeros((100_000, 3), np.float32))]  # 1.2 MB > --max-body-mb 1
    elif case == "unknown_model":
        model = "nope"
    elif case == "fhir_time":
        pytest.importorskip("fhir.resources")
        model, inputs = "glucose_lstm", [_input(np.full((1, 4, 2), 0.5, np.float32))]
        kwargs = {"parameters": {"fhir": True, "fhir_subject": "Patient/1", "fhir_time": "9999-12-31T23:50:00+00:00"}}
    else:
        kwargs = {"parameters": {"deadline_ms": 1e308}}
    with pytest.raises(InferenceServerException) as info:
        client.infer(model, inputs, headers=auth, **kwargs)
    assert info.value.status() == f"StatusCode.{code}" and words in info.value.message(), info.value
    if case == "huge_id":
        assert "r" * 300 not in info.value.message()
    assert client.is_server_live()


def test_grpc_and_http_share_the_model_slots_and_statistics(grpc_server) -> None:
    from ..helpers.serving import request

    client = tg.InferenceServerClient(grpc_server["url"])
    before = request(grpc_server["http"], "/v2/models/tiny_logistic/stats",
                     headers={"Authorization": f"Bearer {grpc_server['tokens']['metrics']}"})
    count = json.loads(before[2])["model_stats"][0]["inference_stats"]["success"]["count"]
    threads = [threading.Thread(target=lambda: client.infer("tiny_logistic", [_input(X)], headers=_auth(grpc_server)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = request(grpc_server["http"], "/v2/models/tiny_logistic/stats",
                    headers={"Authorization": f"Bearer {grpc_server['tokens']['metrics']}"})
    assert json.loads(after[2])["model_stats"][0]["inference_stats"]["success"]["count"] == count + 4


def test_grpc_with_mutual_tls(tmp_path: Path) -> None:
    pytest.importorskip("cryptography")
    from ..helpers.certs import make_pki

    pki = make_pki(tmp_path / "pki")
    bundle = tiny.build(tmp_path / "tiny_logistic")
    with serving([bundle], "--grpc-port", "0", "--tls-cert", pki["server"][0], "--tls-key", pki["server"][1],
                 "--tls-client-ca", pki["ca"], "--log-format", "json", log=tmp_path / "server.log") as (_, proc):
        def client(name: str) -> object:
            cert, key = pki[name]
            return tg.InferenceServerClient(proc.grpc_url, ssl=True, root_certificates=pki["ca"], private_key=key,
                                            certificate_chain=cert)

        good = client("client")
        end = time.monotonic() + 60
        while not good.is_server_ready() and time.monotonic() < end:
            time.sleep(0.1)
        expected = medinfer.load(bundle).predict(X)
        np.testing.assert_array_equal(good.infer("tiny_logistic", [_input(X)]).as_numpy("scores"), expected.scores)
        for name in ("expired", "self_signed", "foreign"):
            with pytest.raises(InferenceServerException):
                client(name).infer("tiny_logistic", [_input(X)], client_timeout=10)
        with pytest.raises(InferenceServerException):  # no client certificate at all
            tg.InferenceServerClient(proc.grpc_url, ssl=True, root_certificates=pki["ca"]).infer(
                "tiny_logistic", [_input(X)], client_timeout=10)
    for line in (tmp_path / "server.log").read_text().splitlines():  # grpcio's own text lines stay out
        json.loads(line)


def test_one_gate_bounds_grpc_and_http_together(tmp_path: Path) -> None:
    """``--max-concurrency 1 --max-queue 0``: while one gRPC call runs, a second gRPC call and an HTTP call are
    refused at once (UNAVAILABLE / 503, "server busy"): the two protocols share one gate, so the bound holds for
    both together; the running call still gets its answer, and so does one that runs when SIGTERM comes."""
    from ..helpers.serving import http

    slow = tiny.build(tmp_path / "tiny_logistic", slow=300)
    with serving([slow], "--grpc-port", "0", "--max-concurrency", "1", "--max-queue", "0",
                 log=tmp_path / "server.log") as (url, proc):
        client = tg.InferenceServerClient(proc.grpc_url)
        client.infer("tiny_logistic", [_input(X)])  # warm
        answers: list[object] = []
        first = threading.Thread(target=lambda: answers.append(client.infer("tiny_logistic", [_input(X)])))
        first.start()
        time.sleep(0.15)
        with pytest.raises(InferenceServerException) as info:
            tg.InferenceServerClient(proc.grpc_url).infer("tiny_logistic", [_input(X)])
        status, body = http(url, "/v2/models/tiny_logistic/infer", json.dumps({
            "inputs": [{"name": "x", "shape": [3, 3], "datatype": "FP32", "data": X.ravel().tolist()}]}).encode())
        running = first.is_alive()
        first.join(30)
        # SIGTERM while a gRPC call runs: it still gets its answer, then the process exits cleanly
        late = threading.Thread(target=lambda: answers.append(client.infer("tiny_logistic", [_input(X)])))
        late.start()
        time.sleep(0.15)
        proc.send_signal(signal.SIGTERM)
        late.join(30)
        exit_code = proc.wait(30)
    assert running, "the first call ended before the others were refused: the model is too fast for this test"
    assert info.value.status() == "StatusCode.UNAVAILABLE" and "server busy" in info.value.message()
    assert status == 503 and "server busy" in body["error"]
    expected = medinfer.load(slow).predict(X).scores
    assert len(answers) == 2 and all(np.array_equal(a.as_numpy("scores"), expected) for a in answers)
    assert exit_code == 0
