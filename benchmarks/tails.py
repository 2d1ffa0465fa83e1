"""Tails of the small models: p99 / p99.9 under thread-count, spinning and affinity settings, interleaved.

    python -m benchmarks tails --bundles bundles [--models drug_activity_rf ...] [--batches 1 64]

Per bundle and batch size, bare onnxruntime sessions of the validated graph with: the bundle's profile (what
medinfer ships), onnxruntime's defaults, one intra-op thread, all cores with spinning off, all cores with
``session.force_spinning_stop``, all cores with the worker thread pinned (``session.intra_op_thread_affinities``).
Each row keeps p50 (median of round medians), p99, p99.9 and max; at batch 1 the export's tail rule
(:func:`medinfer.export.tails.choose`) is applied to the rows it compares and its decision recorded, with the CPU
cores other processes kept busy. Writes ``results/tails.json``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

COMMAND = "python -m benchmarks tails --bundles bundles"


def settings(profile: Any) -> dict[str, tuple[Any, dict[str, str]]]:
    """Name -> (session profile, extra session config entries)."""
    import dataclasses

    from medinfer.export.tails import candidates

    tried = {k: (v, {}) for k, v in candidates(profile).items()}
    explicit = dataclasses.replace(profile, onnxruntime_defaults=False, intra_op_num_threads=0,
                                   inter_op_num_threads=1, allow_spinning=True)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)
    tried["onnxruntime defaults"] = (dataclasses.replace(profile, onnxruntime_defaults=True), {})
    tried["all cores, force_spinning_stop"] = (explicit, {"session.force_spinning_stop": "1"})
    if cores > 1:  # the workers (threads - 1 of them) pinned one per core, the caller's core left free
        pinned = dataclasses.replace(explicit, intra_op_num_threads=cores)
        tried["all cores, workers pinned"] = (pinned, {"session.intra_op_thread_affinities":
                                                       ";".join(str(c + 2) for c in range(cores - 1))})
    return tried


def _session(model: bytes, profile: Any, extra: dict[str, str]) -> Any:
    import onnxruntime as ort
    from medinfer.session import session_options

    so = session_options(profile, cpu_fallback=True)
    for k, v in extra.items():
        so.add_session_config_entry(k, v)
    return ort.InferenceSession(model, sess_options=so, providers=["CPUExecutionProvider"])


def measure(bundles: list[Path], *, batches: list[int], seconds: float, rounds: int, command: str = COMMAND,
            started: dict[str, Any] | None = None, progress: Callable[[str], None] = print) -> dict[str, Any]:
    import medinfer
    from medinfer.export.tails import BASELINE, choose
    from medinfer.samples import read_pinned
    from medinfer.tools.bench import latency_stats
    from medinfer.tools.fingerprint import environment
    from medinfer.tools.profile_check import OtherLoad

    from . import provenance
    from .contenders import tile
    from .history import fingerprint
    from .schema import from_exception
    from .suite import interleave

    started = started or provenance.capture()
    models: dict[str, Any] = {}
    for bundle in bundles:
        manifest = medinfer.load_manifest(bundle)
        model = medinfer.load(bundle, self_test=False)
        graph = read_pinned(bundle, manifest.variants["default"].file,
                            manifest.files[manifest.variants["default"].file])
        fetch = [manifest.decision.score_output]
        tried = settings(manifest.profile)
        sessions, failed = {}, {}
        for name, (profile, extra) in tried.items():
            try:
                sessions[name] = _session(graph, profile, extra)
            except Exception as exc:  # noqa: BLE001 - e.g. an affinity the machine refuses: recorded
                failed[name] = {"reason": "session_failed", "error": from_exception(exc)}
        out = []
        for batch in batches:
            feeds = model.prepare(tile(next(iter(model.golden()[0].values())), batch))[0]
            progress(f"tails: {manifest.name} batch {batch}, {len(sessions)} settings, {rounds} rounds")
            with OtherLoad() as other:
                times = interleave({n: (lambda sec, s=s, f=feeds, o=fetch: _timed(lambda: s.run(o, f), sec))
                                    for n, s in sessions.items()}, seconds=seconds, rounds=rounds)
            rows = [{"candidate": n, "latency_us": latency_stats(np.concatenate(v)),
                     "round_p50_us": [float(np.median(r)) / 1e3 for r in v]} for n, v in times.items()]
            entry: dict[str, Any] = {"batch": batch, "rows": rows, "other_cores": other.cores}
            if batch == 1:
                compared = {k: times[k] for k in times if k in (BASELINE, "1 intra-op thread",
                                                                "all cores, spinning off")}
                chosen, evidence = choose(compared, other.cores)
                entry["rule"] = {"candidate": chosen, "reason": "kept" if chosen == BASELINE else "changed"}
            out.append(entry)
        models[manifest.name] = {"batches": out, "unavailable": failed}
    env = environment()
    return {"command": command, "provenance": started, "bundles": provenance.bundles_of(bundles), "env": env,
            "fingerprint": fingerprint(env), "seconds": seconds, "rounds": rounds, "models": models}


def _timed(fn: Callable[[], Any], seconds: float) -> np.ndarray:
    from medinfer.tools.bench import time_queries

    return time_queries(fn, min_queries=1, min_seconds=seconds)


def render(doc: dict[str, Any] | None) -> list[str]:
    """Markdown: per model and batch size, each setting's p50 / p99 / p99.9 / max (µs) and the rule's choice."""
    if not doc:
        return [f"No tail measurement recorded (`{COMMAND}`)."]
    from .provenance import stated

    lines = [f"Measured {stated(doc)}: tails per session setting ({doc['rounds']} interleaved rounds):"]
    for name, m in doc["models"].items():
        for b in m["batches"]:
            busy = b.get("other_cores")
            lines += ["", f"**{name}**, batch {b['batch']}" + (f" (other processes: {busy:.2f} cores busy)"
                                                               if busy is not None else "")
                      + (f"; rule: {b['rule']['candidate']}" if "rule" in b else ""), "",
                      "| setting | p50 | p99 | p99.9 | max |", "|---|---|---|---|---|"]
            for r in b["rows"]:
                s = r["latency_us"]
                lines.append(f"| {r['candidate']} | {np.median(r['round_p50_us']):.1f} | {s['p99']:.1f} | "
                             f"{s['p99.9']:.1f} | {s['max']:.0f} |")
    return lines
