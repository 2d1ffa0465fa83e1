"""``medinfer serve``: ``"parameters": {"explain": true}`` answers each sample's top attributions with the method
named in the response's ``parameters.explanation``; a bundle that cannot explain answers 400, never 500."""

from __future__ import annotations

import json
from pathlib import Path

import medinfer
import numpy as np
import pytest

from ..helpers import tiny, tiny_explain
from ..helpers.serving import http, serving

X = np.array([[1.0, 2.0, 3.0], [-2.0, 0.5, -1.0]], np.float32)


def test_serve_explains_when_asked(tmp_path: Path) -> None:
    pytest.importorskip("uvicorn")
    explained = tiny_explain.linear(tmp_path / "tiny_logistic")
    plain = tiny.build(tmp_path / "plain", name="tiny_plain")
    with serving([explained, plain], log=tmp_path / "server.log") as (url, _):
        def ask(model: str, **params: object) -> tuple[int, dict]:
            body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": list(X.shape), "data": X.ravel().tolist()}],
                    "parameters": params}
            return http(url, f"/v2/models/{model}/infer", json.dumps(body).encode())

        status, body = ask("tiny_logistic", explain=True)
        assert status == 200, body
        doc = json.loads(body["parameters"]["explanation"])
        want = medinfer.load(explained).explain(X)
        assert doc["method"] == "linear" and [s["output"] for s in doc["samples"]] == pytest.approx(want.output)
        assert doc["samples"][0]["top"][0] == ["gamma", 12.0]
        assert "explanation" not in ask("tiny_logistic")[1].get("parameters", {})  # not asked, not computed
        status, body = ask("tiny_logistic", explain="yes")
        assert status == 400 and "must be true or false" in body["error"]
        status, body = ask("tiny_plain", explain=True)
        assert status == 400 and "parameters.explain" in body["error"] and "no explanation" in body["error"]
