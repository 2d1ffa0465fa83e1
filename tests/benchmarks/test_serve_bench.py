"""The side-by-side serve benchmark's plumbing on a tiny bundle: today's medinfer serve only (the other servers
need their own venvs), a short run, raw data out, tables rendered from it. No timing assertions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("uvicorn")


def test_serve_benchmark_smoke(tiny_bundle_ro: Path, tmp_path: Path) -> None:
    from benchmarks import report_sections
    from benchmarks.serve import markdown, medians, run

    bundle = shutil.copytree(tiny_bundle_ro, tmp_path / "bundles" / "tiny_logistic")
    record = run([bundle], ["medinfer", "medinfer-workers", "mlserver-not-asked"], clients=[1, 3],
                 encodings=["json", "binary", "grpc"], seconds=0.2, rounds=1, progress=lambda _: None, threads=2)
    assert record["provenance"]["started"] == record["time"] and record["bundles"]["tiny_logistic"]["graphs"]
    assert record["servers"]["medinfer"]["threads"] == 2 and record["servers"]["medinfer"]["label"]
    assert record["servers"]["medinfer-workers"]["threads"] == 1  # the run's two cores split between two workers
    assert {r["threads"] for r in record["runs"]} == {2}
    labels = {(r["server"], r["encoding"], r["clients"]) for r in record["runs"]}
    assert labels == {(s, e, c) for s in ("medinfer", "medinfer +audit", "medinfer x2 workers +audit")
                      for e in ("json", "binary", "grpc") for c in (1, 3)}
    assert all(r["requests"] > 0 and r["errors"] == 0 and r["p99_us"] >= r["p50_us"] > 0 for r in record["runs"])
    assert "|" not in json.dumps(record)  # raw data only: REPORT.md renders the tables
    table = medians(record)
    assert table[("tiny_logistic", "medinfer", "binary", 3)]["req_per_s"] > 0
    text = "\n".join(markdown(record))
    assert "| tiny_logistic | json | 1 |" in text and "medinfer +audit req/s" in text
    assert "- medinfer: medinfer serve " in text and "; 2 intra-op thread(s)" in text
    # the server's own time per request, from its statistics, beside the wall time: what the protocol stack costs
    assert all(r["server_us"] > 0 for r in record["runs"] if "workers" not in r["server"])
    assert table[("tiny_logistic", "medinfer", "grpc", 3)]["server_us"] > 0
    from benchmarks.serve import gap_lines

    gap = gap_lines(table, [("tiny_logistic", "grpc", 3, "medinfer +audit", "medinfer")])
    own = table[("tiny_logistic", "medinfer +audit", "grpc", 3)]["server_us"]
    assert f"| tiny_logistic | grpc | 3 | medinfer +audit | {own:.0f} | " in gap[-1] and gap[-1].count("|") == 12
    results = tmp_path / "results"
    results.mkdir()
    (results / "serve.json").write_text(json.dumps(record))
    record["command"] = "python -m benchmarks serve"
    from benchmarks import results as results_data

    assert results_data.problems(record, "serve") == []  # what the run writes follows the results schema
    (results / "serve.json").write_text(json.dumps(record))
    extras = dict(report_sections.extras(results))
    assert extras["Serving side by side: medinfer serve, MLServer, tritonserver"][2:-2] == markdown(record)[2:]


def test_a_server_that_refused_its_bundle_is_reported_at_once_with_its_reason(tmp_path: Path) -> None:
    """The full run waited 180 s per model for a baseline medinfer that had refused today's manifests (an older
    medinfer refuses unknown fields) and recorded only 'not ready'; now the refusal is read from its log at once."""
    import subprocess
    import sys
    import time

    import pytest
    from medinfer.fleet.http import free_port

    from benchmarks import serve

    log = tmp_path / "medinfer.log"
    log.write_text("2026 ERROR medinfer.fleet.serve: bundles/m unavailable: ManifestError: unknown field 'domain'\n")
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        start = time.monotonic()
        with pytest.raises(RuntimeError, match="refused its bundle: ManifestError: unknown field 'domain'"):
            serve._wait_ready(free_port(), "/v2/health/ready", proc, timeout=20, log=log)
        assert time.monotonic() - start < 5
    finally:
        proc.kill()
        proc.wait()
    doc = {"time": "t", "servers": {}, "settings": {"clients": [1], "rounds": 1, "seconds": 1, "audit_args": [],
                                                      "baseline_ref": "5e459c4"}, "runs": [
        {"model": "m", "server": "medinfer-baseline", "error": "did not start: refused its bundle: ManifestError"}]}
    assert any("medinfer-baseline (m): did not start: refused its bundle" in line for line in serve.markdown(doc))


def test_a_server_refusing_every_grpc_call_is_measured_as_errors_not_a_crash() -> None:
    """MLServer refuses Triton's raw BYTES tensors over gRPC: the load generator records the refusals (count and
    the first one, captured) like the HTTP generator does, instead of ending the whole run in its warm-up."""
    grpc = pytest.importorskip("grpc")
    from concurrent.futures import ThreadPoolExecutor

    from benchmarks.grpc_load import run_grpc_load

    def refuse(_request: bytes, context) -> bytes:
        context.abort(grpc.StatusCode.INTERNAL, "cannot reshape array of size 247 into shape (1,1)")

    handler = grpc.method_handlers_generic_handler("inference.GRPCInferenceService", {
        "ModelInfer": grpc.unary_unary_rpc_method_handler(refuse)})
    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        load = run_grpc_load("127.0.0.1", port, b"", 2, 0.2)
    finally:
        server.stop(None)
    assert load.ok == 0 and load.errors > 0
    assert load.error_sample is not None and "cannot reshape" in load.error_sample["message"]
