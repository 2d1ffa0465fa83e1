"""The CNN's int8 options on this CPU, side by side with LiteRT and the OpenVINO provider, in one interleaved run.

    python -m benchmarks cnn-int8 --bundle bundles/lung_nodule_cnn --artifacts artifacts [--threads 1 2]
                                  [--peers litert openvino] [--seconds 40] [--rounds 12]

Every candidate is built here from the bundle's validated fp32 graph and timed at batch 1 on the same held-out
patch, in randomly ordered rounds (``benchmarks.suite.interleave``), at each thread count; its ROC-AUC on the whole
held-out split is computed with the same graph. Candidates (what onnxruntime offers, measured before concluding):

- onnxruntime's quantizer: static QDQ u8s8 per-channel (the ``int8`` recipe), s8s8, QOperator, per-tensor
  weights, ``reduce_range``; dynamic quantization (``ConvInteger`` / ``MatMulInteger``);
- :mod:`medinfer.export.variants.int8_nhwc_graph` plans: QLinearConv channels-last (first layer padded to 4
  channels) with the Dense as 4-bit ``MatMulNBits`` (the ``int8_nhwc`` variant) or int8; convolutions as im2col +
  ``MatMulIntegerToFloat`` (onnxruntime's quantized GEMM: AMX where the CPU has it), static or per-sample scales;
- session options for int8 on x86 (``session.x64quantprecision``);
- the bundle's shipped variants; LiteRT fp32 / dynamic-range / full-integer and onnxruntime's OpenVINO provider
  (each in its own venv: ``make peer-venvs``).

Writes ``results/cnn_int8.json`` (raw data; one entry per run). A candidate that cannot be built or run is recorded
with a reason code and the tool's captured error.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
COMMAND = "python -m benchmarks cnn-int8 --bundle bundles/lung_nodule_cnn --artifacts artifacts --peers litert openvino"
FULL = {"seconds": 40.0, "rounds": 12, "threads": [1, 2]}
Candidate = tuple[bytes, dict[str, str]]  # (graph, session config entries)


def _ort_quantized(model: bytes, calibration: np.ndarray, input_name: str, *, fmt: str = "qdq",
                   per_channel: bool = True, activation: str = "u8", reduce_range: bool = False) -> bytes:
    """onnxruntime's own static quantizer with one recipe (the guard's nodes and the head left as they are)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(np.array_split(calibration, max(1, len(calibration) // 16)))

        def get_next(self) -> dict[str, np.ndarray] | None:
            chunk = next(self._it, None)
            return None if chunk is None else {input_name: chunk}

    import onnx

    with tempfile.TemporaryDirectory() as tmp:
        src, pre, dst = Path(tmp) / "a.onnx", Path(tmp) / "b.onnx", Path(tmp) / "c.onnx"
        src.write_bytes(model)
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        skip = [n.name for n in onnx.load(str(pre)).graph.node if n.name.startswith("domain_")]
        quantize_static(str(pre), str(dst), Reader(), per_channel=per_channel, reduce_range=reduce_range,
                        quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
                        activation_type=QuantType.QUInt8 if activation == "u8" else QuantType.QInt8,
                        weight_type=QuantType.QInt8, nodes_to_exclude=skip,
                        extra_options={"ActivationSymmetric": activation == "s8", "WeightSymmetric": True})
        return dst.read_bytes()


def _ort_dynamic(model: bytes) -> bytes:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "a.onnx", Path(tmp) / "b.onnx"
        src.write_bytes(model)
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QUInt8)
        return dst.read_bytes()


def recipes(model: bytes, calibration: np.ndarray, input_name: str,
            output: str) -> dict[str, Callable[[], Candidate]]:
    """Every candidate this run builds, by name (built lazily: a failure is that candidate's result)."""
    from medinfer.export.optimize import fold_window_into_quantize
    from medinfer.export.variants.int8_nhwc_graph import Plan, build

    def nhwc(plan: Plan) -> Callable[[], Candidate]:
        return lambda: (build(model, input_name, output, plan, calibration=calibration), {})

    def ort(**kw: Any) -> Callable[[], Candidate]:
        return lambda: (_ort_quantized(model, calibration, input_name, **kw), {})

    return {
        "ort fp32": lambda: (model, {}),
        "ort qdq u8s8 per-channel": ort(),
        "ort qdq u8s8 per-channel + window fold": lambda: (fold_window_into_quantize(
            _ort_quantized(model, calibration, input_name), "ct_windows", "window_clip"), {}),
        "ort qdq u8s8 per-channel x64quantprecision": lambda: (_ort_quantized(model, calibration, input_name),
                                                               {"session.x64quantprecision": "1"}),
        "ort qdq s8s8 per-channel": ort(activation="s8"),
        "ort qoperator u8s8 per-channel": ort(fmt="qoperator"),
        "ort qdq u8s8 per-tensor": ort(per_channel=False),
        "ort qdq u8s8 per-channel reduce_range": ort(reduce_range=True),
        "ort dynamic (ConvInteger, MatMulInteger)": lambda: (_ort_dynamic(model), {}),
        "nhwc qlinearconv pad4 + nbits4/256 (int8_nhwc)": nhwc(Plan()),
        "nhwc qlinearconv pad4 + nbits4/128": nhwc(Plan(block=128)),
        "nhwc qlinearconv pad4 row-taps + nbits4/256": nhwc(Plan(row_taps=True)),
        "nhwc qlinearconv pad4 + int8 dense": nhwc(Plan(dense="int8")),
        "nhwc qlinearconv no pad + nbits4/256": nhwc(Plan(pad_channels=False)),
        "nhwc qlinearconv pad4, matmul stages 2+ + nbits4": nhwc(Plan(convs=("qlinearconv", "matmul"))),
        "nhwc matmul (MatMulIntegerToFloat) static + nbits4": nhwc(Plan(convs=("matmul",), pad_channels=False)),
        "nhwc matmul per-sample (dynamic) + nbits4": nhwc(Plan(convs=("matmul",), scales="per_sample",
                                                               pad_channels=False)),
        "nhwc matmul per-sample (dynamic) + int8 dense": nhwc(Plan(convs=("matmul",), scales="per_sample",
                                                                   dense="int8", pad_channels=False)),
    }


def _session(model: bytes, threads: int, config: dict[str, str]) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = threads, 1, 3
    for k, v in config.items():
        so.add_session_config_entry(k, v)
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def _save(path: Path, feeds: dict[str, np.ndarray]) -> str:
    np.savez(path, **{k: np.asarray(v) for k, v in feeds.items()})
    return str(path)


def _auc(y: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, np.asarray(scores, dtype=np.float64).reshape(-1)))


def _peer_blocks(kinds: list[str], name: str, heldout: Any, built: dict[str, Candidate], threads: int,
                 x1: np.ndarray, input_name: str, output: str, tmp: Path, workers: dict[str, Any],
                 accuracy: dict[str, Any], unavailable: dict[str, Any]) -> dict[str, Callable[[float], np.ndarray]]:
    """LiteRT's three conversions and the OpenVINO provider on the fp32 / int8 graphs, as timed blocks."""
    from . import litert, peers
    from .schema import captured

    blocks: dict[str, Callable[[float], np.ndarray]] = {}
    jobs: list[tuple[str, str, str, str, dict[str, np.ndarray], str]] = []
    if "litert" in kinds:
        X = np.asarray(heldout.X, np.float32)
        files = litert.convert(heldout.native_model, heldout.calibration, X.shape[1:],
                               peers.ROOT / "build" / "peers" / name)
        for variant, path in files.items():
            if isinstance(path, dict):
                unavailable[f"LiteRT [{variant}]"] = {"reason": "conversion_failed",
                                                      "error": captured(path["error"], exception="ConverterError")}
            else:
                jobs.append(("litert", f"LiteRT [{variant}]", path, "output", {"x": x1}, "x"))
    if "openvino" in kinds:
        for key in ("ort fp32", "ort qdq u8s8 per-channel", "nhwc qlinearconv pad4 + nbits4/256 (int8_nhwc)"):
            if key in built:
                path = tmp / f"ov-{len(jobs)}.onnx"
                path.write_bytes(built[key][0])
                jobs.append(("openvino", f"OpenVINO EP [{key}]", str(path), output, {input_name: x1}, input_name))
    for kind, label, path, out, feeds, feed_name in jobs:
        try:
            worker = workers.get(kind) or workers.setdefault(kind, peers.Worker(kind))
            key = f"{label}|{threads}"
            inputs = _save(tmp / f"{len(blocks)}-in.npz", feeds)
            worker.ask(op="load", key=key, runtime=kind, model=path, threads=threads,
                       fetch=[] if kind == "litert" else [out], inputs=inputs)
            blocks[label] = (lambda s, w=worker, k=key: np.asarray(w.ask(op="time", key=k, seconds=s)["ns"]))
            if label not in accuracy:
                target = tmp / "scores.npz"
                worker.ask(op="predict", key=key, inputs=_save(tmp / "X.npz", {feed_name: heldout.X}),
                           out=str(target), batch=1)
                with np.load(target) as npz:
                    accuracy[label] = _auc(heldout.y, npz[out])
        except peers.PeerError as exc:
            unavailable[label] = exc.record()
    return blocks


def measure(bundle: Path, artifacts: Path, *, threads: list[int], seconds: float, rounds: int, peer_kinds: list[str],
            command: str = COMMAND, started: dict[str, Any] | None = None,
            progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Build every candidate, time them (and the peers) interleaved at each thread count, AUC of each."""
    import medinfer
    from medinfer.samples import read_pinned
    from medinfer.tools.bench import latency_stats
    from medinfer.tools.fingerprint import environment

    from . import provenance
    from .contenders import load_heldout
    from .history import fingerprint
    from .schema import from_exception
    from .suite import interleave

    started = started or provenance.capture()
    manifest = medinfer.load_manifest(bundle)
    heldout = load_heldout(manifest.name, artifacts)
    if heldout is None:
        raise FileNotFoundError(f"no training artifact of {manifest.name} in {artifacts} (needs the [train] extra)")
    input_name, output = manifest.inputs[0].name, manifest.decision.score_output
    model = read_pinned(bundle, manifest.variants["default"].file, manifest.files[manifest.variants["default"].file])
    calibration = np.asarray(heldout.calibration, np.float32)[:256]
    X, y = np.asarray(heldout.X, np.float32), np.asarray(heldout.y)
    x1 = X[:1]
    built: dict[str, Candidate] = {}
    unavailable: dict[str, Any] = {}
    for key, variant in manifest.variants.items():
        if variant.inputs is None and key != "default":
            built[f"medinfer bundle [{key}]"] = (read_pinned(bundle, variant.file, manifest.files[variant.file]), {})
    for name, make in recipes(model, calibration, input_name, output).items():
        progress(f"cnn-int8: building {name}")
        try:
            built[name] = make()
        except Exception as exc:  # noqa: BLE001 - a candidate that cannot be built is a result
            unavailable[name] = {"reason": "build_failed", "error": from_exception(exc)}
    accuracy: dict[str, Any] = {}
    for name, (data, config) in list(built.items()):
        try:
            s = _session(data, 1, config)
            accuracy[name] = _auc(y, np.concatenate([s.run([output], {input_name: X[i:i + 64]})[0]
                                                     for i in range(0, len(X), 64)]))
        except Exception as exc:  # noqa: BLE001
            unavailable[name] = {"reason": "run_failed", "error": from_exception(exc)}
            del built[name]
    runs = []
    workers: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="medinfer-cnn-int8-") as tmp:
            for t in threads:
                sessions = {n: _session(d, t, c) for n, (d, c) in built.items()}
                blocks: dict[str, Callable[[float], np.ndarray]] = {
                    n: (lambda sec, s=s: _timed(lambda: s.run([output], {input_name: x1}), sec))
                    for n, s in sessions.items()}
                blocks.update(_peer_blocks(peer_kinds, manifest.name, heldout, built, t, x1, input_name, output,
                                           Path(tmp), workers, accuracy, unavailable))
                progress(f"cnn-int8: {len(blocks)} candidates, {t} thread(s), {rounds} interleaved rounds")
                times = interleave(blocks, seconds=seconds, rounds=rounds)
                rows = [{"candidate": n, "threads": t, "settings": {k: int(v) for k, v in built[n][1].items()}
                         if n in built else {}, "latency_us": latency_stats(np.concatenate(v)),
                         "round_p50_us": [float(np.median(r)) / 1e3 for r in v]} for n, v in times.items()]
                runs.append({"threads": t, "rows": sorted(rows, key=lambda r: r["latency_us"]["p50"])})
    finally:
        for w in workers.values():
            w.close()
    fp32 = accuracy.get("ort fp32")
    env = environment()
    return {"command": command, "provenance": started, "bundles": provenance.bundles_of([bundle]), "env": env,
            "fingerprint": fingerprint(env), "model": manifest.name, "batch": 1, "seconds": seconds,
            "rounds": rounds, "n_heldout": int(len(y)), "runs": runs,
            "accuracy": {n: {"metric": "roc_auc", "value": v, "delta_vs_fp32": None if fp32 is None else v - fp32}
                         for n, v in accuracy.items()},
            "unavailable": unavailable}


def _timed(fn: Callable[[], Any], seconds: float) -> np.ndarray:
    from medinfer.tools.bench import time_queries

    return time_queries(fn, min_queries=1, min_seconds=seconds)


def render(doc: dict[str, Any] | None) -> list[str]:
    """Markdown lines: per thread count, each candidate's p50 (median of round medians), p99, its ratio to LiteRT's
    best int8 and its ROC-AUC."""
    if not doc or not doc.get("runs"):
        return [f"No CNN int8 comparison recorded (`{COMMAND}`)."]
    acc = doc.get("accuracy", {})
    from .provenance import stated

    lines = [f"Measured {stated(doc)}: CNN int8 options at batch 1 ({doc['model']}, {doc['rounds']} interleaved "
             "rounds):"]
    for run in doc["runs"]:
        p50 = {r["candidate"]: float(np.median(r["round_p50_us"])) for r in run["rows"]}
        peers = [v for k, v in p50.items() if k.startswith("LiteRT")]
        best_peer = min(peers) if peers else None
        lines += ["", f"{run['threads']} intra-op thread(s):", "",
                  "| candidate | p50 µs | p99 µs | vs LiteRT's best | ROC-AUC |", "|---|---|---|---|---|"]
        for r in run["rows"]:
            name = r["candidate"]
            ratio = f"{p50[name] / best_peer:.2f}×" if best_peer else "–"
            auc = f"{acc[name]['value']:.4f}" if name in acc else "–"
            lines.append(f"| {name} | {p50[name]:.0f} | {r['latency_us']['p99']:.0f} | {ratio} | {auc} |")
    for name, why in doc.get("unavailable", {}).items():
        lines.append(f"- {name}: {why.get('reason')}")
    return lines
