"""``medinfer bench``: record fields, ordered percentiles, CLI output. No timing assertions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from medinfer.cli import main
from medinfer.tools.bench import bench_bundle, latency_stats


def test_latency_stats_keeps_tails() -> None:
    samples = np.array([1000] * 999 + [1_000_000], dtype=np.int64)  # one 1 ms stall among 1 µs calls
    s = latency_stats(samples)
    assert s["max"] == pytest.approx(1000.0) and s["p50"] == pytest.approx(1.0)
    assert s["n"] == 1000 and s["mean"] > s["p99"]  # the stall is kept, not trimmed


def test_bench_record_fields(tiny_bundle_ro: Path) -> None:
    rec = bench_bundle(tiny_bundle_ro, batch=4, min_queries=30, min_seconds=0.0, warmup_queries=3, cold=True)
    lat = rec["latency_us"]
    order = [lat[k] for k in ("min", "p50", "p90", "p95", "p99", "p99.9", "max")]
    assert order == sorted(order)
    assert lat["n"] >= 30 and rec["batch"] == 4
    assert rec["providers"] == ["CPUExecutionProvider"]
    assert rec["verified"]["files_sha256"] == 3 and rec["verified"]["self_test"] in ("bit_exact", "within_tolerance")
    assert rec["model_file_bytes"] == (tiny_bundle_ro / "model.onnx").stat().st_size
    assert rec["cold_start"]["peak_rss_mb"] > 10 and rec["cold_start"]["wall_s_median"] > 0
    env = rec["env"]
    assert env["cpu"]["usable_cores"] >= 1 and env["onnxruntime"] and env["python"]
    assert "CPUExecutionProvider" in env["available_providers"]
    assert rec["session"]["intra_op_num_threads"] == 1


def test_bench_auto_records_the_variant_that_ran(tiny_bundle_ro: Path) -> None:
    rec = bench_bundle(tiny_bundle_ro, variant="auto", min_queries=5, min_seconds=0.0, warmup_queries=1, cold=False)
    assert rec["variant"] == "default" and rec["precision"] == "fp32"  # the tiny manifest prefers no variant


def test_bench_cli_json_and_out(tiny_bundle_ro: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench.jsonl"
    args = ["bench", str(tiny_bundle_ro), "--min-queries", "20", "--min-seconds", "0", "--warmup", "2", "--no-cold",
            "--batch", "1", "8", "--out", str(out), "--json"]
    assert main(args) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["batch"] for r in records] == [1, 8]
    lines = out.read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[1])["batch"] == 8








