"""The side-by-side suite: native framework vs bare onnxruntime vs medinfer (every variant), interleaved.

All candidates of one model and batch size are measured in ONE process, in randomly ordered rounds of short
time blocks, so machine noise (preemption, frequency changes, the neighbour's job) hits them all alike and the
ratios against bare onnxruntime stay meaningful even when absolute numbers drift.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import medinfer
import numpy as np
from medinfer.session import cpu_session
from medinfer.tools.bench import PEAK_RSS_SNIPPET, cold_start, interleaved, latency_stats
from medinfer.tools.fingerprint import environment

log = logging.getLogger(__name__)
BARE = "ort (bundle profile)"
DEFAULT = "ort (default options)"


@dataclass
class Candidate:
    name: str
    kind: str  # native | ort | medinfer
    fn: Callable[[], Any]
    variant: str | None = None


def _tile(x: Any, batch: int) -> Any:
    arr = np.asarray(x)
    reps = -(-batch // len(arr))
    return np.concatenate([arr] * reps)[:batch] if reps > 1 else arr[:batch]


def candidates(bundle: Path, batch: int, artifacts: Path | None) -> tuple[list[Candidate], dict[str, Any]]:
    """Everything to measure for one bundle at one batch size, on the same input samples."""
    manifest = medinfer.load_manifest(bundle)
    base = medinfer.load(bundle)
    native_model, spec, X = None, None, None
    if artifacts is not None and (artifacts / manifest.name / "train.json").is_file():
        try:
            from medinfer.train import artifact

            art = artifact.load(manifest.name, artifacts)
            native_model, spec, X = art.model, art.spec, art.dataset.X_test
        except ImportError as exc:  # the [train] extra is missing: runtime-only comparison
            log.warning("native side skipped for %s: %s", manifest.name, exc)
    if X is None:
        inputs, _ = base.golden()
        X = next(iter(inputs.values()))
    x = _tile(X, batch)
    input_name = manifest.inputs[0].name
    feed_x = base.prepare(x)[0][input_name]  # exactly what Model.predict hands to onnxruntime
    fetch = [manifest.decision.score_output]
    model_bytes = (bundle / manifest.variants["default"].file).read_bytes()
    bare = cpu_session(model_bytes, manifest.profile)
    naive = cpu_session(model_bytes, None)
    out: list[Candidate] = [
        Candidate(BARE, "ort", lambda: bare.run(fetch, {input_name: feed_x})),
        Candidate(DEFAULT, "ort", lambda: naive.run(None, {input_name: feed_x})),
    ]
    for key in manifest.variants:
        model = base if key == "default" else medinfer.load(bundle, variant=key)
        out.append(Candidate(f"medinfer [{key}]", "medinfer", (lambda m=model: m.predict(x)), variant=key))
    if native_model is not None and spec is not None:
        for label, fn in spec.native_predictors(native_model).items():
            out.append(Candidate(label, "native", (lambda f=fn: f(x))))
    info = {"model": manifest.name, "version": manifest.version, "batch": batch,
            "profile": {k: v for k, v in manifest.profile.__dict__.items() if k not in ("measured", "evidence")},
            "variants": {k: v.precision for k, v in manifest.variants.items()}}
    return out, info


def run_model(bundle: Path, batches: list[int], artifacts: Path | None, seconds: float, rounds: int,
              cold: bool = True) -> dict[str, Any]:
    """Measure one bundle at each batch size; return its results with ratios against bare onnxruntime."""
    results = []
    raw: dict[str, Any] = {}
    for batch in batches:
        cands, info = candidates(bundle, batch, artifacts)
        samples = interleaved({c.name: c.fn for c in cands}, seconds=seconds, rounds=rounds)
        ref = latency_stats(samples[BARE])
        rows = []
        for c in cands:
            stats = latency_stats(samples[c.name])
            rows.append({"candidate": c.name, "kind": c.kind, "variant": c.variant, "latency_us": stats,
                         "ratio_p50_vs_ort": stats["p50"] / ref["p50"],
                         "ratio_mean_vs_ort": stats["mean"] / ref["mean"],
                         "throughput_samples_per_s": batch * 1e6 / stats["mean"]})
            raw[f"{batch}|{c.name}"] = samples[c.name]
        results.append({**info, "rows": rows})
    record: dict[str, Any] = {"model": results[0]["model"], "version": results[0]["version"], "batches": results}
    one = next((r for r in results if r["batch"] == 1), None)
    if one is not None:
        by = {row["candidate"]: row["latency_us"] for row in one["rows"]}
        record["overhead"] = {
            "predict_vs_bare_same_options_p50": by["medinfer [default]"]["p50"] / by[BARE]["p50"],
            "predict_vs_bare_default_options_p50": by["medinfer [default]"]["p50"] / by[DEFAULT]["p50"],
            "predict_vs_bare_same_options_mean": by["medinfer [default]"]["mean"] / by[BARE]["mean"],
        }
    if cold:
        variants = list(medinfer.load_manifest(bundle).variants)
        record["cold_start"] = cold_start(bundle)
        record["cold_start_variants"] = {v: cold_start(bundle, v) for v in variants if v != "default"}
    record["_raw"] = raw
    return record


def run_suite(bundles: list[Path], *, batches: list[int], artifacts: Path | None, seconds: float, rounds: int,
              cold: bool = True, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """The whole suite: one record with the environment, every model's results and the memory of all five."""
    models = []
    for bundle in bundles:
        progress(f"benchmarking {bundle.name} (batches {batches}, {seconds:g} s per batch, {rounds} rounds)")
        models.append(run_model(bundle, batches, artifacts, seconds, rounds, cold))
    record = {"kind": "medinfer.suite", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "env": environment(), "seconds_per_batch": seconds, "rounds": rounds, "models": models}
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
