"""Safety costs and soak: what an audit record costs per call (page cache, keyed, fsync, group commit), deadline
overhead, and RSS over a long run of calls. Written to ``results/safety.json`` as raw measurements (per-round p50s
and a log-spaced histogram of every call, plus exact statistics of all calls) with the command that made them."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import medinfer
import numpy as np
from medinfer.audit import AuditLog
from medinfer.tools.bench import latency_stats, time_queries

PREDICT, AUDIT = "predict", "predict + audit"
GROUP = {"group_ms": 10.0, "group_records": 64}
EDGES_US = np.geomspace(0.5, 1e5, 301)  # 1.8 % bins from 0.5 µs to 100 ms


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _interleaved_rounds(fns: dict[str, Any], seconds: float, rounds: int, warmup: int = 50,
                        seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Per-query ns of each function in ``rounds`` randomly ordered blocks of equal wall time, kept per round
    (medinfer.tools.bench.interleaved, without joining the rounds)."""
    import random

    rng = random.Random(seed)
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    block = seconds / (rounds * len(fns))
    out: dict[str, list[np.ndarray]] = {name: [] for name in fns}
    for _ in range(rounds):
        order = list(fns)
        rng.shuffle(order)
        for name in order:
            out[name].append(time_queries(fns[name], min_queries=1, min_seconds=block))
    return out


def audit_cost(bundle: Path, seconds: float = 3.0, rounds: int = 10) -> dict[str, Any]:
    """Model.predict plain vs with an audit record per call (page cache; keyed; fsync; group commit) vs deadline and
    try_predict, interleaved in one process at batch 1. Returns raw measurements per candidate."""
    plain = medinfer.load(bundle)
    inputs, _ = plain.golden()
    x = next(iter(inputs.values()))[:1]
    with tempfile.TemporaryDirectory() as tmp:
        logs = {AUDIT: AuditLog(Path(tmp) / "a.jsonl"),
                "predict + audit (keyed)": AuditLog(Path(tmp) / "k.jsonl", key=b"k" * 32),
                "predict + audit + fsync": AuditLog(Path(tmp) / "f.jsonl", fsync=True),
                "predict + audit + group commit": AuditLog(Path(tmp) / "g.jsonl", fsync=True, **GROUP)}
        models = {name: medinfer.load(bundle, audit=log) for name, log in logs.items()}
        deadline = medinfer.load(bundle, deadline_ms=1000)
        fns = {PREDICT: lambda: plain.predict(x),
               **{name: (lambda m=m: m.predict(x)) for name, m in models.items()},
               "predict + deadline": lambda: deadline.predict(x), "try_predict": lambda: plain.try_predict(x)}
        per_round = _interleaved_rounds(fns, seconds, rounds)
        for log in logs.values():
            log.close()
    rows = {}
    for name, blocks in per_round.items():
        s = np.concatenate(blocks)
        us = s / 1e3
        rows[name] = {"stats_us": latency_stats(s), "round_p50_us": [float(np.percentile(r / 1e3, 50))
                                                                     for r in per_round[name]],
                      "histogram": np.histogram(us, EDGES_US)[0].tolist(),
                      "below_edges": int(np.sum(us < EDGES_US[0])), "above_edges": int(np.sum(us > EDGES_US[-1]))}
    return {"model": plain.name, "bundle": str(bundle), "batch": 1, "group_commit": GROUP, "rows": rows}


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
        samples.append((round(elapsed, 3), round(_rss_mb(), 2)))
    rss = np.array([s[1] for s in samples])
    first, last = rss[: max(1, len(rss) // 10)].mean(), rss[-max(1, len(rss) // 10):].mean()
    return {"model": model.name, "seconds": seconds, "calls": calls, "series_s_mb": [list(p) for p in samples],
            "growth_mb": float(last - first)}


def _stats(row: dict[str, Any]) -> dict[str, float]:
    """p50/p99/mean in µs of one row: raw statistics (``stats_us``), or the flat fields of files written before
    issue 16 (``p50_us``, ``p99_us``, ``mean_us``)."""
    if "stats_us" in row:
        return row["stats_us"]
    return {"p50": row["p50_us"], "p99": row["p99_us"], "mean": row["mean_us"]}


def audit_ratio(cost: dict[str, Any]) -> float:
    """Audited predict / plain predict, p50 at batch 1 (the audit goal's measure)."""
    return float(_stats(cost["rows"][AUDIT])["p50"] / _stats(cost["rows"][PREDICT])["p50"])


def audit_added_us(cost: dict[str, Any], row: str = AUDIT) -> float:
    """What an audit record (``row``: the plain one by default, or e.g. ``predict + audit + fsync``) adds to a plain
    predict, p50 at batch 1, in µs."""
    return float(_stats(cost["rows"][row])["p50"] - _stats(cost["rows"][PREDICT])["p50"])


def _soak_mb(s: dict[str, Any]) -> tuple[float, float, float]:
    if "series_s_mb" in s:
        rss = [v for _, v in s["series_s_mb"]]
        return rss[0], rss[-1], max(rss)
    return s["rss_start_mb"], s["rss_end_mb"], s["rss_max_mb"]


def markdown(doc: dict[str, Any]) -> list[str]:
    """The report's section, rendered from a ``results/safety.json`` document."""
    if "method" in doc:
        group = doc["costs"][0].get("group_commit", GROUP) if doc.get("costs") else GROUP
        from .provenance import stated

        head = (f"Measured {stated(doc)}: interleaved in one process ({doc['method']['rounds']} rounds), batch 1; "
                "× predict = p50 / plain predict p50; added = p50 - plain p50. Group commit: fsync at most "
                f"{group['group_ms']:g} ms after the oldest unsynced record and every {group['group_records']} "
                "records (a power failure loses at most those).")
    else:
        head = ("This file predates issue 16's audit append (no time, rounds or histograms recorded; no keyed or "
                "group-commit rows): `python -m benchmarks safety` replaces it. Interleaved in one process, batch 1; "
                "× predict = p50 / plain predict p50; added = p50 - plain p50.")
    lines = [head, "", "| model | path | p50 µs | p99 µs | calls/s | × predict | added µs |",
             "|---|---|---|---|---|---|---|"]
    for cost in doc.get("costs", []):
        base = _stats(cost["rows"][PREDICT])["p50"]
        for name, row in cost["rows"].items():
            st = _stats(row)
            lines.append(f"| {cost['model']} | {name} | {st['p50']:.1f} | {st['p99']:.1f} | {1e6 / st['mean']:.0f} | "
                         f"{st['p50'] / base:.2f} | {st['p50'] - base:+.1f} |")
    if doc.get("soaks"):
        lines += ["", "Soak (RSS over a long run of calls; growth = mean of last tenth - mean of first tenth):", "",
                  "| model | seconds | calls | RSS start MB | RSS end MB | max MB | growth MB |",
                  "|---|---|---|---|---|---|---|"]
        for s in doc["soaks"]:
            start, end, peak = _soak_mb(s)
            lines.append(f"| {s['model']} | {s['seconds']:.0f} | {s['calls']} | {start:.1f} | {end:.1f} | "
                         f"{peak:.1f} | {s['growth_mb']:+.2f} |")
    return lines
