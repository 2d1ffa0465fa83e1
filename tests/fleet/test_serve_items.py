"""Per-item answers through ``medinfer serve`` (issue 26): ``"parameters": {"on_error": "item"}`` answers each
valid item of a request and gives each invalid or refused one its own reason, over HTTP (JSON and binary) and gRPC,
with the dynamic batcher on; without it one bad item refuses the request as before."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from ..helpers import tiny
from ..helpers.serving import http, serving

pytest.importorskip("uvicorn")

# inside, outside its declared range (an invalid item), outside the domain (score 2.5 > 1), inside
X = np.array([[1.0, 1.0, 1.0], [50.0, 0.0, 0.0], [5.0, 5.0, 5.0], [0.5, -0.5, 0.0]], np.float32)


def _body(x: np.ndarray, **parameters: object) -> bytes:
    return json.dumps({"id": "worklist-1", "inputs": [{"name": "x", "datatype": "FP32", "shape": list(x.shape),
                                                       "data": x.reshape(-1).tolist()}],
                       **({"parameters": parameters} if parameters else {})}).encode()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("serve_items")
    bundle = tiny.build_domain(root / "tiny_domain", threshold=1.0)
    with serving([bundle], "--out-of-domain", "no_result", "--grpc-port", "0", "--dynamic-batching", "auto",
                 log=root / "server.log") as (url, proc):
        yield {"url": url, "grpc": proc.grpc_url}


def test_http_answers_each_item_and_refuses_each_bad_one(server) -> None:
    status, body = http(server["url"], "/v2/models/tiny_domain/infer", _body(X, on_error="item"))
    assert status == 200, body
    out = {o["name"]: o["data"] for o in body["outputs"]}
    assert out["status"] == ["ok", "no_result", "no_result", "ok"]
    expected = tiny.reference(X[[0, 3]])[:, 1]
    np.testing.assert_allclose([out["scores"][0], out["scores"][3]], expected, rtol=1e-6)
    assert all(v is None or (isinstance(v, float) and math.isnan(v)) for v in (out["scores"][1], out["scores"][2]))
    assert out["labels"][1] == out["labels"][2] == "" and out["in_domain"] == [True, False, False, True]
    refused = json.loads(body["parameters"]["no_results"])
    assert [(r["index"], r["reason"]) for r in refused] == [(1, "input"), (2, "out_of_domain")]
    assert body["parameters"]["answered"] == 2 and body["id"] == "worklist-1"


def test_without_the_parameter_one_bad_item_refuses_the_request(server) -> None:
    assert http(server["url"], "/v2/models/tiny_domain/infer", _body(X))[0] == 400
    assert http(server["url"], "/v2/models/tiny_domain/infer", _body(X[[0, 2]]))[0] == 422  # out of domain
    status, body = http(server["url"], "/v2/models/tiny_domain/infer", _body(X, on_error="every"))
    assert status == 400 and "on_error" in body["error"]


def test_grpc_answers_each_item_too(server) -> None:
    tg = pytest.importorskip("tritonclient.grpc")
    client = tg.InferenceServerClient(server["grpc"])
    inp = tg.InferInput("x", list(X.shape), "FP32")
    inp.set_data_from_numpy(X)
    result = client.infer("tiny_domain", [inp], parameters={"on_error": "item"})
    status = [v.decode() if isinstance(v, bytes) else str(v) for v in result.as_numpy("status").reshape(-1)]
    assert status == ["ok", "no_result", "no_result", "ok"]
    np.testing.assert_allclose(result.as_numpy("scores")[[0, 3]], tiny.reference(X[[0, 3]])[:, 1], rtol=1e-6)
    params = result.get_response().parameters
    refused = json.loads(params["no_results"].string_param)
    assert [r["reason"] for r in refused] == ["input", "out_of_domain"]


def test_fhir_of_per_item_answers_marks_each_refused_item(server, tmp_path: Path) -> None:
    pytest.importorskip("fhir.resources")
    status, body = http(server["url"], "/v2/models/tiny_domain/infer",
                        _body(X, on_error="item", fhir=True, fhir_subject="Patient/p1", fhir_generic=True))
    assert status == 200, body
    bundle = json.loads(body["parameters"]["fhir"])
    observations = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"]
    assert [o["status"] for o in observations] == ["preliminary", "cancelled", "cancelled", "preliminary"]
    assert "valueCodeableConcept" not in observations[1] and observations[1]["dataAbsentReason"]["coding"][0][
        "code"] == "error"
    assert observations[2]["dataAbsentReason"]["coding"][0]["code"] == "not-performed"
