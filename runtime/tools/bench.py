"""``medinfer bench``: SingleStream latency of a bundle, the MLPerf / onnxruntime perf_test way.

One query at a time: warm-up, then at least ``min_queries`` queries AND at least ``min_seconds``; every query
is timed and every sample kept (no outlier trimming: the slow calls are what a device cares about).
Also measured: file verification and session creation, the first inference, and cold start in a FRESH process
(import medinfer → load → first result) with its peak RSS. Uses numpy + onnxruntime only.
"""

from __future__ import annotations

import dataclasses
import json
import random
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..loader import load
from ..model import Model
from ..session import requested_profiles
from ..timestamps import utc_text
from .fingerprint import environment

PEAK_RSS_SNIPPET = r"""
rss = None
try:  # VmHWM: this process image's peak (ru_maxrss would include the parent's pages from before exec)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            rss = int(line.split()[1]) * 1024
except OSError:
    try:
        import resource
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    except ImportError:
        pass
"""

PERCENTILES = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p99.9": 99.9}


def latency_stats(samples_ns: np.ndarray) -> dict[str, float]:
    """Percentiles, max, mean, std and min of per-query latencies, in microseconds (nothing trimmed)."""
    us = np.asarray(samples_ns, dtype=np.float64) / 1e3
    out = {k: float(np.percentile(us, q)) for k, q in PERCENTILES.items()}
    out.update(max=float(us.max()), mean=float(us.mean()), std=float(us.std()), min=float(us.min()),
               n=int(us.size))
    return out


def time_queries(fn: Callable[[], Any], *, min_queries: int, min_seconds: float, max_seconds: float | None = None,
                 warmup_queries: int = 0, warmup_seconds: float = 0.0) -> np.ndarray:
    """Call ``fn`` one query at a time; return per-query latencies in ns.

    Runs until BOTH ``min_queries`` and ``min_seconds`` are reached (or ``max_seconds`` passes).
    """
    clock = time.perf_counter_ns
    start = clock()
    done = 0
    while done < warmup_queries or (clock() - start) < warmup_seconds * 1e9:
        fn()
        done += 1
    samples: list[int] = []
    begin = clock()
    limit = (max_seconds or max(10 * min_seconds, 60.0)) * 1e9
    min_ns = min_seconds * 1e9
    while True:
        t0 = clock()
        fn()
        t1 = clock()
        samples.append(t1 - t0)
        elapsed = t1 - begin
        if (len(samples) >= min_queries and elapsed >= min_ns) or elapsed >= limit:
            break
    return np.asarray(samples, dtype=np.int64)


def interleaved(fns: Mapping[str, Callable[[], Any]], *, seconds: float, rounds: int, warmup: int = 20,
                seed: int = 0) -> dict[str, np.ndarray]:
    """Time every function in ``rounds`` randomly ordered blocks of equal wall time; per-query ns of each.

    Machine noise (preemption, frequency changes, a neighbour's job) then hits every candidate alike, so ratios
    between them stay meaningful when absolute numbers drift. Each block is :func:`time_queries`.
    """
    blocks = interleaved_rounds(fns, seconds=seconds, rounds=rounds, warmup=warmup, seed=seed)
    return {name: np.concatenate(parts) for name, parts in blocks.items()}


def interleaved_rounds(fns: Mapping[str, Callable[[], Any]], *, seconds: float, rounds: int, warmup: int = 20,
                       seed: int = 0, min_queries: int = 1) -> dict[str, list[np.ndarray]]:
    """Like :func:`interleaved`, but the per-query ns of each round kept apart (``{name: [round 0, ...]}``), so
    that a ratio can be taken within each round; each block runs at least ``min_queries`` queries."""
    rng = random.Random(seed)
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
    block = seconds / (rounds * max(1, len(names)))
    samples: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for _ in range(rounds):
        order = names[:]
        rng.shuffle(order)
        for name in order:
            samples[name].append(time_queries(fns[name], min_queries=min_queries, min_seconds=block))
    return samples


def batch_input(model: Model, batch: int) -> Any:
    """A batch of ``batch`` samples made from the bundle's golden inputs (valid by construction)."""
    inputs, _ = model.golden()

    def tile(x: np.ndarray) -> np.ndarray:
        reps = -(-batch // len(x))
        return np.concatenate([x] * reps)[:batch] if reps > 1 else x[:batch]

    return model.as_input({k: tile(v) for k, v in inputs.items()})


_COLD = r"""
import json, sys, time
t0 = time.perf_counter()
import medinfer
t1 = time.perf_counter()
m = medinfer.load(sys.argv[1], providers=json.loads(sys.argv[2]), variant=sys.argv[3])  # incl. self-test
t2 = time.perf_counter()
inputs, _ = m.golden()
m.predict(m.as_input({k: v[:1] for k, v in inputs.items()}))
t3 = time.perf_counter()
"""+PEAK_RSS_SNIPPET+r"""
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "first_predict_s": t3 - t2, "peak_rss_bytes": rss}))
"""


def cold_start(path: str | Path, variant: str = "default", providers: Sequence[str] | None = None,
               runs: int = 3) -> dict[str, Any]:
    """Fresh-process time to first result (interpreter start included) and its peak RSS; best and median of runs."""
    walls, reports = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", _COLD, str(path), json.dumps(providers), variant],
                              capture_output=True, text=True, timeout=300, check=False)
        walls.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed",
                    "exit_status": proc.returncode}
        reports.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    order = np.argsort(walls)
    med = reports[int(order[len(order) // 2])]
    return {
        "wall_s_min": float(min(walls)), "wall_s_median": float(np.median(walls)), "runs": runs,
        "import_s": med["import_s"], "load_s": med["load_s"], "first_predict_s": med["first_predict_s"],
        "peak_rss_mb": (max(r["peak_rss_bytes"] for r in reports) / 2**20) if med["peak_rss_bytes"] else None,
        "raw": [{"wall_s": w, **r} for w, r in zip(walls, reports)],  # every run, as measured
    }


def bench_bundle(
    path: str | Path,
    *,
    variant: str = "default",
    providers: Sequence[str] | None = None,
    batch: int = 1,
    min_queries: int = 1000,
    min_seconds: float = 5.0,
    warmup_queries: int = 50,
    warmup_seconds: float = 0.5,
    cold: bool = True,
    session_profile: dict[str, Any] | str | None = None,
) -> dict[str, Any]:
    """Benchmark one bundle variant; returns a JSON-ready record (see module docstring)."""
    t0 = time.perf_counter()
    model = load(path, providers, variant=variant, self_test=False, session_profile=session_profile)
    load_s = time.perf_counter() - t0
    variant = model.variant  # "auto" resolved: the record names the graph that ran
    report = model.self_test()
    x = batch_input(model, batch)
    t1 = time.perf_counter()
    model.predict(x)
    first_s = time.perf_counter() - t1
    samples = time_queries(lambda: model.predict(x), min_queries=min_queries, min_seconds=min_seconds,
                           warmup_queries=warmup_queries, warmup_seconds=warmup_seconds)
    stats = latency_stats(samples)
    total_s = float(samples.sum()) / 1e9
    m = model.manifest
    profile = dataclasses.asdict(requested_profiles(m.profile, session_profile)[0])
    profile.pop("measured", None)
    profile.pop("evidence", None)
    record = {
        "kind": "medinfer.bench",
        "time": utc_text(),
        "bundle": m.name,
        "version": m.version,
        "variant": variant,
        "precision": m.variants[variant].precision,
        "model_sha256": model.model_sha256,
        "providers": list(model.providers),
        "batch": batch,
        "method": {"scenario": "SingleStream", "warmup_queries": warmup_queries, "warmup_seconds": warmup_seconds,
                   "min_queries": min_queries, "min_seconds": min_seconds, "timer": "perf_counter_ns",
                   "path": "Model.predict (validation included)", "trimming": "none"},
        "latency_us": stats,
        "throughput_samples_per_s": batch * stats["n"] / total_s if total_s else None,
        "load_s": load_s,
        "first_inference_s": first_s,
        "model_file_bytes": m.files[m.variants[variant].file].size,
        "verified": {"files_sha256": len(m.files), "self_test": report.status},
        "session": profile,
        "env": environment(),
    }
    if cold:
        record["cold_start"] = cold_start(path, variant, providers)
    return record


def format_records(records: Sequence[dict[str, Any]]) -> str:
    """A readable table of bench records."""
    from .tables import table

    rows = []
    for r in records:
        s = r["latency_us"]
        cold = r.get("cold_start") or {}
        rows.append([
            r["bundle"], r["variant"], r["batch"], r["providers"][0].replace("ExecutionProvider", ""),
            f"{s['p50']:.1f}", f"{s['p90']:.1f}", f"{s['p99']:.1f}", f"{s['p99.9']:.1f}", f"{s['max']:.1f}",
            f"{s['mean']:.1f}±{s['std']:.1f}", f"{r['throughput_samples_per_s']:.0f}", s["n"],
            f"{r['load_s'] * 1e3:.0f}", f"{cold.get('wall_s_median', float('nan')):.2f}",
            f"{cold.get('peak_rss_mb') or float('nan'):.0f}", f"{r['model_file_bytes'] / 1e6:.2f}",
        ])
    return table(rows, ["bundle", "variant", "batch", "EP", "p50 µs", "p90", "p99", "p99.9", "max", "mean±std",
                        "samples/s", "queries", "load ms", "cold s", "cold MB", "file MB"])
