"""Concurrent single-sample clients: direct ``Model.predict`` from every thread vs a shared MicroBatcher,
interleaved: the two modes alternate in randomly ordered rounds of equal wall time, so machine noise hits both.

    python -m benchmarks concurrency --bundles bundles --threads 8 --seconds 6 --rounds 6
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import medinfer
import numpy as np
from medinfer.fleet.batching import MicroBatcher

MODES = ("direct", "micro_batched")


def _drive(call: Any, x: np.ndarray, threads: int, seconds: float) -> tuple[np.ndarray, float]:
    """``threads`` clients calling ``call(x)`` for ``seconds``: per-request ns and the wall time."""
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
    return np.concatenate([np.asarray(b, dtype=np.int64) for b in latencies]), time.perf_counter() - start


def _summary(ns: list[np.ndarray], wall: float) -> dict[str, Any]:
    us = np.concatenate(ns) / 1e3
    return {"requests_per_s": us.size / wall, "p50_us": float(np.percentile(us, 50)),
            "p99_us": float(np.percentile(us, 99)), "requests": int(us.size), "wall_s": wall}


def concurrency(bundle: Path, threads: int = 8, seconds: float = 6.0, rounds: int = 6, max_batch: int = 32,
                max_wait_ms: float = 0.5, seed: int = 0) -> dict[str, Any]:
    """Both modes in ``rounds`` shuffled rounds of ``seconds / (2 * rounds)`` each; one row of raw totals."""
    model = medinfer.load(bundle)
    x = next(iter(model.golden()[0].values()))[0]
    rng = random.Random(seed)
    ns: dict[str, list[np.ndarray]] = {m: [] for m in MODES}
    wall = dict.fromkeys(MODES, 0.0)
    per_round_rps: dict[str, list[float]] = {m: [] for m in MODES}
    block = seconds / (2 * rounds)
    with MicroBatcher(model, max_batch=max_batch, max_wait_ms=max_wait_ms) as batcher:
        calls = {"direct": model.predict, "micro_batched": batcher.predict}
        for mode in MODES:  # warm-up, not kept
            _drive(calls[mode], x, threads, min(0.2, block))
        samples0, batches0 = batcher.samples, batcher.batches
        for _ in range(rounds):
            order = list(MODES)
            rng.shuffle(order)
            for mode in order:
                got, w = _drive(calls[mode], x, threads, block)
                ns[mode].append(got)
                wall[mode] += w
                per_round_rps[mode].append(got.size / w)
        mean_batch = (batcher.samples - samples0) / max(batcher.batches - batches0, 1)
    out = {m: {**_summary(ns[m], wall[m]), "round_requests_per_s": per_round_rps[m]} for m in MODES}
    out["micro_batched"]["mean_batch"] = mean_batch
    return {"model": model.name, "version": model.version, "threads": threads, "rounds": rounds,
            "seconds": seconds, "max_batch": max_batch, "max_wait_ms": max_wait_ms, **out}


def markdown(doc: dict[str, Any]) -> list[str]:
    """REPORT.md lines from ``results/concurrency.json``."""
    from .provenance import stated

    interleaved = doc.get("interleaved", False)
    lines = [f"Measured {stated(doc)}.", "",
             ("Each client thread sends one sample at a time; the two modes alternate in shuffled rounds of the "
              "same run." if interleaved else
              "Each client thread sends one sample at a time; this run measured the modes one after the other "
              "(before issue 14), not interleaved: rerun `python -m benchmarks concurrency`."), "",
             "| model | threads | direct req/s | direct p99 µs | micro-batched req/s | p99 µs | mean batch | "
             "× throughput | × p99 |", "|---|---|---|---|---|---|---|---|---|"]
    for r in doc.get("rows", []):
        d, b = r["direct"], r["micro_batched"]
        lines.append(f"| {r['model']} | {r['threads']} | {d['requests_per_s']:.0f} | {d['p99_us']:.0f} | "
                     f"{b['requests_per_s']:.0f} | {b['p99_us']:.0f} | {b['mean_batch']:.1f} | "
                     f"{b['requests_per_s'] / d['requests_per_s']:.2f} | {b['p99_us'] / d['p99_us']:.2f} |")
    return lines
