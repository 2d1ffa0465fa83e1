"""Concurrent single-sample clients: direct ``Model.predict`` from every thread vs a shared MicroBatcher."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import medinfer
import numpy as np
from medinfer.fleet.batching import MicroBatcher


def _drive(call: Any, x: np.ndarray, threads: int, seconds: float) -> dict[str, Any]:
    latencies: list[list[int]] = [[] for _ in range(threads)]
    stop = time.perf_counter() + seconds

    def client(i: int) -> None:
        bucket = latencies[i]
        while time.perf_counter() < stop:
            t0 = time.perf_counter_ns()
            call(x)
            bucket.append(time.perf_counter_ns() - t0)

    workers = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall = time.perf_counter() - start
    us = np.concatenate([np.asarray(b) for b in latencies]) / 1e3
    return {"requests_per_s": us.size / wall, "p50_us": float(np.percentile(us, 50)),
            "p99_us": float(np.percentile(us, 99)), "requests": int(us.size)}


def concurrency(bundle: Path, threads: int = 8, seconds: float = 3.0, max_batch: int = 32,
                max_wait_ms: float = 0.5) -> dict[str, Any]:
    model = medinfer.load(bundle)
    inputs, _ = model.golden()
    x = next(iter(inputs.values()))[0]
    direct = _drive(model.predict, x, threads, seconds)
    with MicroBatcher(model, max_batch=max_batch, max_wait_ms=max_wait_ms) as batcher:
        batched = _drive(batcher.predict, x, threads, seconds)
        batched["mean_batch"] = batcher.samples / max(batcher.batches, 1)
    return {"model": model.name, "threads": threads, "direct": direct, "micro_batched": batched,
            "max_batch": max_batch, "max_wait_ms": max_wait_ms,
            "throughput_ratio": batched["requests_per_s"] / direct["requests_per_s"]}


def markdown(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["Each client thread sends one sample at a time; same run, same machine.", "",
             "| model | threads | direct req/s | direct p99 µs | micro-batched req/s | p99 µs | mean batch | "
             "× throughput |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        d, b = r["direct"], r["micro_batched"]
        lines.append(f"| {r['model']} | {r['threads']} | {d['requests_per_s']:.0f} | {d['p99_us']:.0f} | "
                     f"{b['requests_per_s']:.0f} | {b['p99_us']:.0f} | {b['mean_batch']:.1f} | "
                     f"{r['throughput_ratio']:.2f} |")
    return lines
