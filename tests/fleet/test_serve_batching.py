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


@pytest.mark.parametrize("slow", [0, 3], ids=["on_the_event_loop", "in_the_worker_pool"])
def test_concurrent_requests_form_batches_and_keep_their_own_records(tmp_path: Path, slow: int) -> None:
    bundle = tiny.build(tmp_path / "tiny_logistic", slow=slow)  # slow: a few ms per run, in the worker pool
    audit = tmp_path / "audit.jsonl"
    with serving([bundle], "--audit", str(audit), "--dynamic-batching", "auto", "--max-concurrency", "1",
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


def test_what_waits_in_one_turn_of_the_loop_runs_as_one_batch(tiny_bundle: Path, tmp_path: Path) -> None:
    import asyncio

    from medinfer.audit import AuditLog
    from medinfer.fleet.dynamic import DynamicBatcher

    model = medinfer.load(tiny_bundle).configure(audit=AuditLog(tmp_path / "audit.jsonl"))
    xs = [np.array([[i, 1.0, -1.0]], np.float32) for i in range(5)] + [np.array([[np.nan, 0, 0]], np.float32)]
    batcher = DynamicBatcher(None, 1, 64, 64, inline=True)

    async def main() -> list:
        return await asyncio.gather(*(batcher.predict(model, x, f"r{i}", None) for i, x in enumerate(xs)),
                                    return_exceptions=True)

    results = asyncio.run(main())
    assert batcher.batches == 1 and batcher.requests == 6
    for x, result in zip(xs[:5], results[:5]):
        np.testing.assert_array_equal(result[0].scores, model.predict(x).scores)
    assert [r[1] for r in results[:5]].count(True) == 1  # one execution counted for the batch
    assert isinstance(results[5], medinfer.InputError)  # the bad one fails alone
    ids = [json.loads(line).get("request_id") for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert ids[:6] == [f"r{i}" for i in range(6)]


def test_grpc_requests_join_the_same_batches(tmp_path: Path) -> None:
    tg = pytest.importorskip("tritonclient.grpc")
    import time

    bundle = tiny.build(tmp_path / "tiny_logistic", slow=3)
    with serving([bundle], "--grpc-port", "0", "--audit", str(tmp_path / "audit.jsonl"), "--max-concurrency", "1",
                 log=tmp_path / "server.log") as (url, proc):
        model = medinfer.load(bundle)
        errors: list[Exception] = []

        def client(c: int) -> None:
            grpc_client = tg.InferenceServerClient(proc.grpc_url)
            for k in range(EACH):
                x = np.array([[c / 4, k / 4, 1.0]], np.float32)
                inp = tg.InferInput("x", [1, 3], "FP32")
                inp.set_data_from_numpy(x)
                try:
                    result = grpc_client.infer("tiny_logistic", [inp], request_id=f"g{c}-{k}")
                    np.testing.assert_array_equal(result.as_numpy("scores"), model.predict(x).scores)
                except Exception as exc:  # noqa: BLE001 - collected and reported below
                    errors.append(exc)

        threads = [threading.Thread(target=client, args=(c,)) for c in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stats = json.loads(request(url, "/v2/models/tiny_logistic/stats")[2])["model_stats"][0]
        stopping = time.monotonic()
        proc.terminate()
        assert proc.wait(30) == 0 and time.monotonic() - stopping < 15  # gRPC stops first, nothing hangs
    assert not errors, [str(e) for e in errors[:3]]
    assert int(stats["inference_count"]) == CLIENTS * EACH
    assert int(stats["execution_count"]) < CLIENTS * EACH
