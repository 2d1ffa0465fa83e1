"""The RandomForest as a compiled tree ensemble (treelite 4 + tl2cgen: C code, compiled with the machine's gcc) as
a contender of onnxruntime's TreeEnsemble, interleaved, at batch 1 and 64.

    python -m benchmarks trees --bundle bundles/drug_activity_rf --artifacts artifacts    # needs [trees]

Rows: onnxruntime with medinfer's session options, onnxruntime with one thread, tl2cgen's ``Predictor`` with one
thread and with all cores, each timed from a numpy array (the ``DMatrix`` made inside the call, as a caller would)
and, for reference, on a prepared ``DMatrix``. Agreement with scikit-learn (max abs difference, decisions flipped
at the operating threshold over the held-out split) is recorded with the timings.

Shipping rule (issue 30): a compiled ensemble would ship only if it beat onnxruntime by more than 20 % AND could be
verified like a graph (a signed native file per architecture, pinned by sha256 in the manifest). The second is not
built; ``ships`` is therefore false and ``why`` says which condition failed.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

COMMAND = "python -m benchmarks trees --bundle bundles/drug_activity_rf --artifacts artifacts"
REQUIRED_GAIN = 0.20


def _compile(model: Any, folder: Path) -> tuple[Path, float]:
    import tl2cgen
    import treelite

    estimator = model.steps[-1][1] if hasattr(model, "steps") else model
    lib = folder / "forest.so"
    start = time.perf_counter()
    tl2cgen.export_lib(treelite.sklearn.import_model(estimator), toolchain="gcc", libpath=str(lib),
                       params={"parallel_comp": 8}, nthread=1)
    return lib, time.perf_counter() - start


def measure(bundle: Path, artifacts: Path, *, batches: list[int], seconds: float, rounds: int,
            command: str = COMMAND, started: dict[str, Any] | None = None,
            progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Compile, check agreement, time every row interleaved per batch size; the verdict against the rule.

    Raises:
        MissingExtraError: treelite / tl2cgen are not installed (``pip install '.[trees]'``).
    """
    import medinfer
    import onnxruntime as ort
    from medinfer.extras import optional_import
    from medinfer.integrity import sha256_bytes
    from medinfer.samples import read_pinned

    tl2cgen = optional_import("tl2cgen", "trees", "python -m benchmarks trees")
    optional_import("treelite", "trees", "python -m benchmarks trees")
    from medinfer.session import session_options
    from medinfer.tools.bench import latency_stats
    from medinfer.tools.fingerprint import environment

    from . import provenance
    from .contenders import default_threads, load_heldout
    from .history import fingerprint
    from .suite import interleave

    started = started or provenance.capture()
    manifest = medinfer.load_manifest(bundle)
    heldout = load_heldout(manifest.name, artifacts)
    if heldout is None:
        raise FileNotFoundError(f"no training artifact of {manifest.name} in {artifacts} (needs the [train] extra)")
    X = np.ascontiguousarray(np.asarray(heldout.X, np.float32))
    graph = read_pinned(bundle, manifest.variants["default"].file, manifest.files[manifest.variants["default"].file])
    input_name, score = manifest.inputs[0].name, manifest.decision.score_output
    threads = default_threads()
    with tempfile.TemporaryDirectory(prefix="medinfer-trees-") as tmp:
        progress("trees: compiling the forest with tl2cgen (gcc)")
        lib, compile_s = _compile(heldout.native_model, Path(tmp))
        lib_bytes = lib.read_bytes()
        one, many = tl2cgen.Predictor(str(lib), nthread=1), tl2cgen.Predictor(str(lib), nthread=threads)
        sessions = {"ort (medinfer's options)": ort.InferenceSession(graph, session_options(
                        manifest.profile, cpu_fallback=True), providers=["CPUExecutionProvider"])}
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.log_severity_level = 1, 3
        sessions["ort (1 thread)"] = ort.InferenceSession(graph, so, providers=["CPUExecutionProvider"])
        native = np.asarray(heldout.native_scores, np.float64).reshape(len(X), -1)[:, -1]
        compiled = np.asarray(one.predict(tl2cgen.DMatrix(X)), np.float64).reshape(len(X), -1)[:, -1]
        threshold = manifest.decision.threshold or 0.5
        agreement = {"max_abs_diff_vs_native": float(np.max(np.abs(compiled - native))),
                     "decision_flips_vs_native": int(np.sum((compiled >= threshold) != (native >= threshold))),
                     "n": int(len(X))}
        out: list[dict[str, Any]] = []
        for batch in batches:
            xb = np.ascontiguousarray(np.resize(X, (batch, X.shape[1])))
            dm = tl2cgen.DMatrix(xb)
            fns: dict[str, Callable[[], Any]] = {n: (lambda s=s, xb=xb: s.run([score], {input_name: xb}))
                                                 for n, s in sessions.items()}
            fns["tl2cgen (1 thread)"] = lambda xb=xb: one.predict(tl2cgen.DMatrix(xb))
            fns[f"tl2cgen ({threads} threads)"] = lambda xb=xb: many.predict(tl2cgen.DMatrix(xb))
            fns["tl2cgen (1 thread, prepared DMatrix)"] = lambda dm=dm: one.predict(dm)
            progress(f"trees: batch {batch}, {len(fns)} rows, {rounds} interleaved rounds")
            times = interleave({n: (lambda s, f=f: _timed(f, s)) for n, f in fns.items()}, seconds=seconds,
                               rounds=rounds)
            p50 = {n: float(np.median([np.median(r) for r in v])) / 1e3 for n, v in times.items()}
            best_ort = min(v for k, v in p50.items() if k.startswith("ort"))
            best_tl = min(v for k, v in p50.items() if k.startswith("tl2cgen") and "prepared" not in k)
            out.append({"batch": batch, "threads": threads, "rows": [
                {"candidate": n, "latency_us": latency_stats(np.concatenate(v)),
                 "round_p50_us": [float(np.median(r)) / 1e3 for r in v]} for n, v in times.items()],
                "compiled_over_ort": best_tl / best_ort})
    gain = max(1.0 - r["compiled_over_ort"] for r in out)
    why = "slower_or_within_margin" if gain <= REQUIRED_GAIN else "no_signed_native_file"
    env = environment()
    return {"command": command, "provenance": started, "bundles": provenance.bundles_of([bundle]), "env": env,
            "fingerprint": fingerprint(env), "model": manifest.name, "rounds": rounds, "seconds": seconds,
            "library": {"name": "tl2cgen", "version": tl2cgen.__version__, "compile_seconds": compile_s,
                        "size_bytes": len(lib_bytes),
                        "graph_sha256": sha256_bytes(lib_bytes)},
            "agreement": agreement, "batches": out, "required_gain": REQUIRED_GAIN, "best_gain": gain,
            "ships": False, "why": why}


def _timed(fn: Callable[[], Any], seconds: float) -> np.ndarray:
    from medinfer.tools.bench import time_queries

    return time_queries(fn, min_queries=1, min_seconds=seconds)


def render(doc: dict[str, Any] | None) -> list[str]:
    """Markdown: per batch size, each row's p50 (median of round medians) and p99; the verdict."""
    if not doc:
        return [f"No compiled-tree comparison recorded (`{COMMAND}`)."]
    from .provenance import stated

    lines = [f"Measured {stated(doc)}: RandomForest, onnxruntime vs a compiled tree ensemble; agreement with "
             f"scikit-learn: max diff {doc['agreement']['max_abs_diff_vs_native']:.2g}, "
             f"{doc['agreement']['decision_flips_vs_native']} decision flips over {doc['agreement']['n']}."]
    for b in doc["batches"]:
        lines += ["", f"batch {b['batch']} (compiled / onnxruntime, best of each: {b['compiled_over_ort']:.2f}):", "",
                  "| row | p50 µs | p99 µs |", "|---|---|---|"]
        lines += [f"| {r['candidate']} | {np.median(r['round_p50_us']):.1f} | {r['latency_us']['p99']:.1f} |"
                  for r in b["rows"]]
    verdict = {"slower_or_within_margin": f"not shipped: it does not beat onnxruntime by more than "
                                          f"{doc['required_gain']:.0%}",
               "no_signed_native_file": "not shipped: faster, but no signed native file per architecture exists "
                                        "to verify it like a graph"}
    lines += ["", verdict.get(doc["why"], doc["why"])]
    return lines
