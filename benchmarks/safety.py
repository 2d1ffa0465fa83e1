"""Safety costs and soak: audit-trail throughput cost, deadline overhead, and RSS over a long run of calls."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import medinfer
import numpy as np
from medinfer.audit import AuditLog
from medinfer.tools.bench import interleaved, latency_stats


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def audit_cost(bundle: Path, seconds: float = 3.0, rounds: int = 10) -> dict[str, Any]:
    """Model.predict plain vs with an audit record per call (page cache) vs audit + fsync, interleaved."""
    plain = medinfer.load(bundle)
    inputs, _ = plain.golden()
    x = next(iter(inputs.values()))[:1]
    with tempfile.TemporaryDirectory() as tmp:
        logged = medinfer.load(bundle, audit=AuditLog(Path(tmp) / "a.jsonl"))
        synced = medinfer.load(bundle, audit=AuditLog(Path(tmp) / "b.jsonl", fsync=True))
        deadline = medinfer.load(bundle, deadline_ms=1000)
        calls = {"predict": lambda: plain.predict(x), "predict + audit": lambda: logged.predict(x),
                 "predict + audit + fsync": lambda: synced.predict(x),
                 "predict + deadline": lambda: deadline.predict(x), "try_predict": lambda: plain.try_predict(x)}
        samples = interleaved(calls, seconds=seconds, rounds=rounds)
    base = latency_stats(samples["predict"])
    rows = {}
    for name, s in samples.items():
        st = latency_stats(s)
        rows[name] = {"p50_us": st["p50"], "p99_us": st["p99"], "mean_us": st["mean"],
                      "throughput_per_s": 1e6 / st["mean"], "ratio_p50": st["p50"] / base["p50"]}
    return {"model": plain.name, "rows": rows}


def soak(bundle: Path, seconds: float = 60.0) -> dict[str, Any]:
    """RSS sampled over a long run of predict calls: growth after warm-up means a leak."""
    model = medinfer.load(bundle)
    inputs, _ = model.golden()
    x = next(iter(inputs.values()))
    for _ in range(200):
        model.predict(x)
    start = time.perf_counter()
    samples, calls = [], 0
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(200):
            model.predict(x)
        calls += 200
        samples.append((elapsed, _rss_mb()))
    rss = np.array([s[1] for s in samples])
    first, last = rss[: max(1, len(rss) // 10)].mean(), rss[-max(1, len(rss) // 10):].mean()
    return {"model": model.name, "seconds": seconds, "calls": calls, "rss_start_mb": float(first),
            "rss_end_mb": float(last), "rss_max_mb": float(rss.max()), "growth_mb": float(last - first)}


def markdown(costs: list[dict[str, Any]], soaks: list[dict[str, Any]]) -> list[str]:
    lines = ["Interleaved in one run, batch 1; ratio = p50 / plain predict p50.", "",
             "| model | path | p50 µs | p99 µs | calls/s | × predict |", "|---|---|---|---|---|---|"]
    for c in costs:
        for name, r in c["rows"].items():
            lines.append(f"| {c['model']} | {name} | {r['p50_us']:.1f} | {r['p99_us']:.1f} | "
                         f"{r['throughput_per_s']:.0f} | {r['ratio_p50']:.2f} |")
    if soaks:
        lines += ["", "Soak (RSS over a long run of calls; growth = mean of last tenth - mean of first tenth):", "",
                  "| model | seconds | calls | RSS start MB | RSS end MB | max MB | growth MB |",
                  "|---|---|---|---|---|---|---|"]
        for s in soaks:
            lines.append(f"| {s['model']} | {s['seconds']:.0f} | {s['calls']} | {s['rss_start_mb']:.1f} | "
                         f"{s['rss_end_mb']:.1f} | {s['rss_max_mb']:.1f} | {s['growth_mb']:+.2f} |")
    return lines


def render(doc: dict[str, Any]) -> list[str]:
    """REPORT.md lines from ``results/safety.json`` (raw costs and soaks)."""
    return markdown(doc.get("costs", []), doc.get("soaks", []))
