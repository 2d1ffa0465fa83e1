"""Speed at export time: measured session profiles, static int8 variants, offline-optimised graphs.

Everything here is decided by MEASUREMENT on the build machine (recorded with its fingerprint in the manifest)
and every variant is gated by its accuracy delta on the held-out set, not only by max diff.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from medinfer.manifest import SessionProfile

log = logging.getLogger(__name__)


def _session(model_bytes: bytes, profile: SessionProfile) -> Any:
    import onnxruntime as ort
    from medinfer.session import session_options

    return ort.InferenceSession(model_bytes, sess_options=session_options(profile, cpu_fallback=True),
                                providers=["CPUExecutionProvider"])


def _time(run: Callable[[], Any], seconds: float) -> np.ndarray:
    for _ in range(5):
        run()
    samples = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(samples) < 20:
        t0 = time.perf_counter_ns()
        run()
        samples.append(time.perf_counter_ns() - t0)
    return np.asarray(samples)


def measure_profiles(model_bytes: bytes, feeds: dict[str, Any], fetch: list[str], *, base: SessionProfile,
                     seconds: float = 0.4, rounds: int = 3, max_threads: int | None = None) -> tuple[
                         SessionProfile, dict[str, Any]]:
    """Time a grid of session options (threads 1/2/…, spinning, optimisation level, execution mode) at the
    given batch; return the fastest profile (by p50, interleaved rounds) and the table of measurements."""
    import os

    cores = max_threads or min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2, 4)
    grid = [dataclasses.replace(base, intra_op_num_threads=t, inter_op_num_threads=1, allow_spinning=s,
                                graph_optimization_level=o, execution_mode="sequential")
            for t, s, o in itertools.product(sorted({1, cores}), (True, False), ("extended", "all"))]
    sessions = [(p, _session(model_bytes, p)) for p in grid]
    samples: dict[int, list[np.ndarray]] = {i: [] for i in range(len(grid))}
    for _ in range(rounds):  # interleaved so drift hits every candidate alike
        for i, (_, sess) in enumerate(sessions):
            samples[i].append(_time(lambda s=sess: s.run(fetch, feeds), seconds / rounds))
    table = []
    for i, (p, _) in enumerate(sessions):
        us = np.concatenate(samples[i]) / 1e3
        table.append({"intra_op_num_threads": p.intra_op_num_threads, "allow_spinning": p.allow_spinning,
                      "graph_optimization_level": p.graph_optimization_level,
                      "p50_us": float(np.percentile(us, 50)), "p99_us": float(np.percentile(us, 99))})
    best = min(range(len(grid)), key=lambda i: table[i]["p50_us"])
    return grid[best], {"grid": table, "chosen": table[best]}


def static_int8(model_bytes: bytes, calibration: np.ndarray, input_name: str, *, per_channel: bool = True,
                exclude_ops: tuple[str, ...] = (), exclude_name_prefixes: tuple[str, ...] = ()) -> bytes:
    """Static QDQ int8 (uint8 activations, int8 weights; per-channel) calibrated on training samples.

    Dynamic int8 is deliberately not offered for convolutions: measured 6–9× SLOWER on this CPU class.
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(np.array_split(calibration, max(1, len(calibration) // 16)))

        def get_next(self) -> dict[str, np.ndarray] | None:
            chunk = next(self._it, None)
            return None if chunk is None else {input_name: chunk}

    with tempfile.TemporaryDirectory() as tmp:
        src, pre, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(model_bytes)
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        nodes_to_exclude = _nodes_matching(pre, exclude_ops, exclude_name_prefixes)
        quantize_static(str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=nodes_to_exclude,
                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
        return dst.read_bytes()


def _nodes_matching(path: Path, ops: tuple[str, ...], prefixes: tuple[str, ...]) -> list[str]:
    if not ops and not prefixes:
        return []
    import onnx

    return [n.name for n in onnx.load(str(path)).graph.node
            if n.name and (n.op_type in ops or any(n.name.startswith(p) for p in prefixes))]


def offline_optimized(model_bytes: bytes, level: str = "extended") -> bytes:
    """The graph after onnxruntime's optimisations, saved so a device can skip them at session creation.

    ``extended`` (not ``all``): level-all graphs may contain layout transformations specific to this CPU.
    """
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "opt.onnx"
        so = ort.SessionOptions()
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel,
                                              {"basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED"}[level])
        so.optimized_model_filepath = str(out)
        ort.InferenceSession(model_bytes, sess_options=so, providers=["CPUExecutionProvider"])
        return out.read_bytes()


def session_creation_seconds(model_bytes: bytes, profile: SessionProfile, repeats: int = 5) -> float:
    """Median wall time to create a session (what a device pays at every boot)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        _session(model_bytes, profile)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))
