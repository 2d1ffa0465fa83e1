"""The side-by-side suite: native framework, bare onnxruntime (same options / default options), medinfer (every
variant) and the edge peers (LiteRT, OpenVINO; each in its own venv, see :mod:`benchmarks.peers`), interleaved.

All contenders of one model and batch size are measured in ONE run, in randomly ordered rounds of short time
blocks, so machine noise (preemption, frequency changes, the neighbour's job) hits them all alike and the ratios
stay meaningful even when absolute numbers drift. A contender in another process times its own block when asked
(a small server loop in its venv), so it takes its turn in the same rounds.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import medinfer
import numpy as np
from medinfer.timestamps import utc_text
from medinfer.tools.bench import PEAK_RSS_SNIPPET, cold_start, latency_stats, time_queries
from medinfer.tools.fingerprint import environment

from .contenders import BATCH1, DEFAULT, SAME, Contender, Heldout, headline, in_process, load_heldout

log = logging.getLogger(__name__)
# What a full, publishable run uses (make bench); a run with less is a "short" run: never published.
FULL = {"seconds": 6.0, "rounds": 12, "batches": [1, 64]}


def interleave(blocks: Mapping[str, Callable[[float], np.ndarray]], *, seconds: float, rounds: int,
               seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Time every contender in ``rounds`` randomly ordered blocks of equal wall time; per-round ns of each."""
    rng = random.Random(seed)
    names = list(blocks)
    for name in names:  # warm-up, not kept
        blocks[name](min(0.05, seconds / max(1, rounds * len(names))))
    block = seconds / (rounds * max(1, len(names)))
    out: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for _ in range(rounds):
        order = names[:]
        rng.shuffle(order)
        for name in order:
            out[name].append(np.asarray(blocks[name](block), dtype=np.int64))
    return out


def _block(c: Contender) -> Callable[[float], np.ndarray]:
    if c.block is not None:
        return c.block
    fn = c.fn
    assert fn is not None, c.name
    return lambda s: time_queries(fn, min_queries=1, min_seconds=s)


def _accuracy(c: Contender, heldout: Heldout | None) -> dict[str, Any] | None:
    if heldout is None or c.scores is None or heldout.native_scores is None:
        return None
    try:
        name, value = headline(heldout.task, c.scores(heldout.X), heldout.y)
    except Exception as exc:  # noqa: BLE001 - recorded, never hidden: the row then says why it has no accuracy
        return {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    _, native = headline(heldout.task, heldout.native_scores, heldout.y)
    return {"metric": name, "value": value, "native": native, "delta": value - native, "n": int(len(heldout.y))}


def run_model(bundle: Path, batches: list[int], artifacts: Path | None, seconds: float, rounds: int,
              cold: bool = True, peers: list[str] | None = None, progress: Callable[[str], None] = print,
              ) -> dict[str, Any]:
    """Measure one bundle at each batch size; every contender's raw latencies, stats, ratios and accuracy."""
    from . import peers as peer_mod

    name = medinfer.load_manifest(bundle).name
    heldout = load_heldout(name, artifacts)
    results: list[dict[str, Any]] = []
    raw: dict[str, np.ndarray] = {}
    accuracy: dict[str, Any] = {}
    unavailable: dict[str, str] = {}
    with peer_mod.Pool(peers or [], progress) as pool:
        for batch in batches:
            cands, info = in_process(bundle, batch, heldout)
            extra, why = pool.contenders(bundle, batch, heldout, info)
            cands += extra
            unavailable.update(why)
            samples = interleave({c.name: _block(c) for c in cands}, seconds=seconds, rounds=rounds)
            rows = []
            for c in cands:
                allx = np.concatenate(samples[c.name])
                stats = latency_stats(allx)
                rows.append({"candidate": c.name, "kind": c.kind, "variant": c.variant, "settings": c.settings,
                             "latency_us": stats, "round_p50_us": [float(np.median(s)) / 1e3 for s in samples[c.name]],
                             "throughput_samples_per_s": batch * 1e6 / stats["mean"]})
                raw[f"{batch}|{c.name}"] = allx
                if (acc := _accuracy(c, heldout)) is not None:  # per batch size: a peer may differ by shape
                    accuracy[f"{batch}|{c.name}"] = acc
            _ratios(rows)
            results.append({**info, "rows": rows})
    record: dict[str, Any] = {"model": name, "version": results[0]["version"], "batches": results,
                              "accuracy": accuracy, "peers_unavailable": unavailable}
    if cold:
        variants = list(medinfer.load_manifest(bundle).variants)
        record["cold_start"] = cold_start(bundle)
        record["cold_start_variants"] = {v: cold_start(bundle, v) for v in variants if v != "default"}
    record["_raw"] = raw
    return record


def _ratios(rows: list[dict[str, Any]]) -> None:
    """Each row's p50 over the same-options session, the default-options session and medinfer fp32 (same run)."""
    p50 = {r["candidate"]: r["latency_us"]["p50"] for r in rows}
    for r in rows:
        for key, ref in (("vs_same_options", SAME), ("vs_default_options", DEFAULT),
                         ("vs_medinfer", "medinfer [default]")):
            if ref in p50:
                r[f"ratio_p50_{key}"] = r["latency_us"]["p50"] / p50[ref]


def overhead(model: dict[str, Any]) -> dict[str, float]:
    """medinfer fp32 over the bare sessions at batch 1 (p50 and mean), from a model's rows."""
    one = next((b for b in model["batches"] if b["batch"] == 1), None)
    if one is None:
        return {}
    by = {r["candidate"]: r["latency_us"] for r in one["rows"]}
    me = by.get("medinfer [default]")
    if me is None or SAME not in by or DEFAULT not in by:
        return {}
    return {"predict_vs_bare_same_options_p50": me["p50"] / by[SAME]["p50"],
            "predict_vs_bare_default_options_p50": me["p50"] / by[DEFAULT]["p50"],
            "predict_vs_bare_same_options_mean": me["mean"] / by[SAME]["mean"]}


def run_suite(bundles: list[Path], *, batches: list[int], artifacts: Path | None, seconds: float, rounds: int,
              cold: bool = True, peers: list[str] | None = None, command: str = "",
              progress: Callable[[str], None] = print) -> dict[str, Any]:
    """The whole suite: one record with the environment, every model's results and the memory of all five."""
    models = []
    for bundle in bundles:
        progress(f"benchmarking {bundle.name} (batches {batches}, {seconds:g} s per batch, {rounds} rounds)")
        m = run_model(bundle, batches, artifacts, seconds, rounds, cold, peers, progress)
        m["overhead"] = overhead(m)
        models.append(m)
    full = seconds >= FULL["seconds"] and rounds >= FULL["rounds"] and set(FULL["batches"]) <= set(batches)
    record = {"kind": "medinfer.suite", "time": utc_text(),
              "env": environment(), "seconds_per_batch": seconds, "rounds": rounds, "batches": batches,
              "full": full, "command": command, "models": models, "same_options_name": SAME,
              "batch1_profile_name": BATCH1, "default_options_name": DEFAULT}
    if len(bundles) > 1:
        record["all_loaded"] = all_loaded_rss(bundles)
    return record


_ALL = r"""
import json, sys
import medinfer
models = [medinfer.load(p) for p in sys.argv[1:]]
for m in models:
    inputs, _ = m.golden()
    x = next(iter(inputs.values()))
    m.predict(x[:1])
""" + PEAK_RSS_SNIPPET + r"""
print(json.dumps({"peak_rss_mb": rss / 2**20 if rss else None, "n": len(models)}))
"""


def all_loaded_rss(bundles: list[Path]) -> dict[str, Any]:
    """Peak RSS of one fresh process holding every bundle loaded (and run once)."""
    import json
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _ALL, *map(str, bundles)], capture_output=True, text=True,
                          timeout=600, check=False)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip()[-300:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])
