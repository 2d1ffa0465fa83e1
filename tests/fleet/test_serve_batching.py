"""Dynamic batching in ``medinfer serve``: concurrent requests for one model run in shared batches (the statistics
count fewer executions than requests), each with its own answer, id and audit record."""

from __future__ import annotations

import http.client
import json
import threading
from pathlib import Path

import medinfer
import numpy as np
import pytest

from ..helpers import tiny
from ..helpers.serving import request, serving

pytest.importorskip("uvicorn")
CLIENTS, EACH = 12, 8


def test_concurrent_requests_form_batches_and_keep_their_own_records(tmp_path: Path) -> None:
    bundle = tiny.build(tmp_path / "tiny_logistic", slow=3)  # a few ms per run: requests pile up behind it
    audit = tmp_path / "audit.jsonl"
    with serving([bundle], "--audit", str(audit), "--dynamic-batching", "all", "--max-concurrency", "1",
                 log=tmp_path / "server.log") as (url, _):
        host, port = url.split(":")
        rng = np.random.default_rng(0)
        xs = rng.uniform(-3, 3, (CLIENTS, EACH, 1, 3)).astype(np.float32)
        answers: dict[str, tuple[int, dict]] = {}

        def client(c: int) -> None:
            conn = http.client.HTTPConnection(host, int(port), timeout=60)
            for k in range(EACH):
                rid = f"c{c}-{k}"
                body = json.dumps({"id": rid, "inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32",
                                                          "data": xs[c, k].reshape(-1).tolist()}]})
                conn.request("POST", "/v2/models/tiny_logistic/infer", body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                answers[rid] = (resp.status, json.loads(resp.read()))

        threads = [threading.Thread(target=client, args=(c,)) for c in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stats = json.loads(request(url, "/v2/models/tiny_logistic/stats")[2])["model_stats"][0]
    model = medinfer.load(bundle)
    for c in range(CLIENTS):
        for k in range(EACH):
            status, doc = answers[f"c{c}-{k}"]
            assert status == 200 and doc["id"] == f"c{c}-{k}", doc
            scores = next(o["data"] for o in doc["outputs"] if o["name"] == "scores")
            np.testing.assert_array_equal(np.float32(scores), model.predict(xs[c, k]).scores)
    assert int(stats["inference_count"]) == CLIENTS * EACH
    assert int(stats["execution_count"]) < CLIENTS * EACH  # real batches formed
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    ids = [r["request_id"] for r in records if "event" not in r]
    assert sorted(ids) == sorted(answers) and all(r["status"] == "ok" for r in records if "event" not in r)
