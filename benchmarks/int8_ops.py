"""Where the int8 CNN's time goes, per operator type, against fp32, on this CPU (onnxruntime's own profiler).

    python -m benchmarks int8-ops --bundle bundles/lung_nodule_cnn [--runs 200] [--threads 1]

Each CPU class (fingerprint: model, flags, cores) keeps one entry of ``results/int8_ops.json`` (rerun on another
machine adds its own), so REPORT.md can put the AMD EPYC and the Intel Xeon split side by side: which operators
gain from int8 kernels on which CPU, and which do not gain at all (quantize/dequantize, pooling, reshapes).
Both graphs get the same session options (the bundle's batch-1 profile), the same input, the same number of runs.
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

COMMAND = "python -m benchmarks int8-ops --bundle bundles/lung_nodule_cnn"


def op_times(model_bytes: bytes, feeds: dict[str, np.ndarray], profile: Any, runs: int, warmup: int = 20,
             ) -> tuple[dict[str, float], float]:
    """Mean µs per run of each operator type, and of the whole run, from onnxruntime's profiler."""
    import onnxruntime as ort
    from medinfer.session import session_options

    so = session_options(profile, cpu_fallback=True)
    with tempfile.TemporaryDirectory() as tmp:
        so.enable_profiling = True
        so.profile_file_prefix = str(Path(tmp) / "p")
        session = ort.InferenceSession(model_bytes, sess_options=so, providers=["CPUExecutionProvider"])
        for _ in range(warmup + runs):
            session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
    per_run = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"][warmup:]
    start = per_run[0]["ts"] if per_run else 0
    ops: dict[str, float] = defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time") and e.get("ts", 0) >= start:
            ops[e.get("args", {}).get("op_name", "?")] += e["dur"] / runs
    total = float(np.mean([e["dur"] for e in per_run])) if per_run else 0.0
    return dict(sorted(ops.items(), key=lambda kv: -kv[1])), total


def measure(bundle: Path, runs: int = 200, threads: int | None = None, command: str = COMMAND,
            started: dict[str, Any] | None = None) -> dict[str, Any]:
    """The per-operator split of every variant of ``bundle`` at batch 1 on this CPU (``started``: the run's
    provenance, captured before it measured; now when not given)."""
    import dataclasses

    import medinfer
    from medinfer.samples import read_pairs, read_pinned
    from medinfer.tools.fingerprint import environment

    from . import provenance
    from .history import fingerprint

    started = started or provenance.capture()

    manifest = medinfer.load_manifest(bundle)  # the graphs are timed bare: no session of medinfer's needed
    profile = manifest.profile
    if threads is not None:
        profile = dataclasses.replace(profile, intra_op_num_threads=threads)
    names = [s.name for s in manifest.inputs]
    data = read_pinned(bundle, manifest.golden.file, manifest.files[manifest.golden.file])
    golden, _ = read_pairs(data, "default", str(bundle), names)
    feeds = {s.name: np.ascontiguousarray(golden[s.name][:1]).astype(s.dtype) for s in manifest.inputs}
    env = environment()
    out: dict[str, Any] = {"command": command, "provenance": started, "bundles": provenance.bundles_of([bundle]),
                           "fingerprint": fingerprint(env), "env": env, "bundle": manifest.name,
                           "model_sha256": manifest.files[manifest.variants["default"].file].sha256, "batch": 1,
                           "runs": runs, "threads": profile.intra_op_num_threads, "variants": {}}
    for key, variant in manifest.variants.items():
        if variant.inputs is not None:
            continue  # a whole-slice graph takes a slice, not the patch fed here (benchmarks/slice.py)
        ops, total = op_times(read_pinned(bundle, variant.file, manifest.files[variant.file]), feeds, profile, runs)
        out["variants"][key] = {"precision": variant.precision, "total_us": total, "ops_us": ops}
    return out


def record(entry: dict[str, Any], folder: Path) -> Path:
    """Replace this CPU's entry of ``results/int8_ops.json`` (other CPUs' entries are kept when they can still be
    published: an entry written before provenance was recorded is dropped, to be measured again on its CPU)."""
    from . import results

    doc = results.load("int8_ops", folder) or {"command": COMMAND, "runs": []}
    others = [r for r in doc["runs"] if r["fingerprint"] != entry["fingerprint"]]
    doc["runs"] = results.publishable_entries("int8_ops", others) + [entry]
    return results.write("int8_ops", doc, folder)


def _table(run: dict[str, Any], other: str) -> list[str]:
    v = run["variants"]
    fp, q = v["default"], v[other]
    cpu = run["env"]["cpu"]
    lines = ["", f"**{cpu['model']}** ({cpu['usable_cores']} cores; {', '.join(cpu['flags'])}; onnxruntime "
                 f"{run['env']['onnxruntime']}; {run['threads']} intra-op thread(s), {run['runs']} runs): whole run "
                 f"{fp['total_us']:.0f} µs fp32, {q['total_us']:.0f} µs {other} "
                 f"({q['total_us'] / fp['total_us']:.2f}×).", "",
             f"| operator | fp32 µs | {other} µs | share of {other} run |", "|---|---|---|---|"]
    for name in dict.fromkeys([*q["ops_us"], *fp["ops_us"]]):
        a, b = fp["ops_us"].get(name), q["ops_us"].get(name)
        share = (b or 0.0) / q["total_us"] if q["total_us"] else 0.0
        lines.append(f"| {name} | {'–' if a is None else f'{a:.1f}'} | {'–' if b is None else f'{b:.1f}'} | "
                     f"{share:.0%} |")
    return lines


def render(doc: dict[str, Any] | None) -> list[str]:
    """REPORT.md lines: per CPU, each operator type's µs per run in fp32 and int8, and the ratio."""
    if not doc or not doc.get("runs"):
        return [f"No per-operator profile recorded (`{COMMAND}`, on each CPU class)."]
    lines = ["Per operator type, batch 1, onnxruntime's profiler (µs per run; both graphs with the bundle's "
             f"batch-1 options). Made by `{doc['command']}` on each CPU class:"]
    for run in doc["runs"]:
        v = run["variants"]
        if "default" not in v or len(v) < 2:
            continue
        for other in [k for k in v if k != "default"]:  # each int8 variant against the fp32 graph
            lines += _table(run, other)
    return lines
