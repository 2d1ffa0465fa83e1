"""A peer runtime's timing server, run by its own venv's python (numpy + that runtime only; never medinfer).

    build/litert-venv/bin/python benchmarks/peer_worker.py      # ai-edge-litert's Interpreter
    build/openvino-venv/bin/python benchmarks/peer_worker.py    # onnxruntime-openvino's OpenVINO provider

One JSON request per stdin line, one JSON answer per stdout line, so the suite can interleave this process's
timed blocks with its own contenders' in the same randomised rounds:

    {"op": "load", "key": K, "runtime": "litert"|"openvino", "model": PATH, "threads": N, "inputs": NPZ,
     "fetch": [NAMES]}                                        -> {"ok": true, "info": {...}}
    {"op": "time", "key": K, "seconds": S}                    -> {"ok": true, "ns": [per-query ns, ...]}
    {"op": "predict", "key": K, "inputs": NPZ, "out": NPZ, "batch": B}   -> {"ok": true}
    {"op": "quit"}
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from typing import Any

import numpy as np


def _feeds(path: str) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return {k: (v.astype(object) if v.dtype.kind == "U" else v) for k, v in arrays.items()}


class LiteRT:
    """A LiteRT interpreter resized to the batch's shape; one float input, one output."""

    def __init__(self, model: str, threads: int, inputs: dict[str, np.ndarray], fetch: list[str]) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.path, self.threads = model, threads
        self.interp = Interpreter(model_path=model, num_threads=threads)
        self.x = next(iter(inputs.values()))
        self._resize(self.x.shape)
        import ai_edge_litert

        self.info = {"runtime": "ai-edge-litert", "version": getattr(ai_edge_litert, "__version__", "?"),
                     "threads": threads, "input_dtype": str(self.interp.get_input_details()[0]["dtype"].__name__)}

    def _resize(self, shape: tuple[int, ...]) -> None:
        self.inp = self.interp.get_input_details()[0]["index"]
        self.out = self.interp.get_output_details()[0]["index"]
        self.interp.resize_tensor_input(self.inp, list(shape), strict=False)
        self.interp.allocate_tensors()
        self.shape = tuple(shape)

    def run(self, x: np.ndarray | None = None) -> np.ndarray:
        arr = self.x if x is None else x
        if arr.shape != self.shape:
            self._resize(arr.shape)
        self.interp.set_tensor(self.inp, np.ascontiguousarray(arr, dtype=np.float32))
        self.interp.invoke()
        return self.interp.get_tensor(self.out).copy()

    def predict(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"output": self.run(next(iter(feeds.values())))}


class OpenVINO:
    """onnxruntime with the OpenVINO execution provider on the CPU (the CPU provider for what it cannot take)."""

    def __init__(self, model: str, threads: int, inputs: dict[str, np.ndarray], fetch: list[str]) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.log_severity_level = 3
        if threads:
            so.intra_op_num_threads = threads
        options: dict[str, str] = {"device_type": "CPU"}
        if threads:
            options["num_of_threads"] = str(threads)
        self.session = ort.InferenceSession(model, sess_options=so,
                                            providers=["OpenVINOExecutionProvider", "CPUExecutionProvider"],
                                            provider_options=[options, {}])
        self.feeds, self.fetch = inputs, fetch
        self.info = {"runtime": "onnxruntime-openvino", "version": ort.__version__, "threads": threads,
                     "providers": self.session.get_providers()}

    def run(self, feeds: dict[str, np.ndarray] | None = None) -> Any:
        return self.session.run(self.fetch, self.feeds if feeds is None else feeds)

    def predict(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.fetch, self.run(feeds)))


RUNTIMES = {"litert": LiteRT, "openvino": OpenVINO}


def _time(runner: Any, seconds: float) -> list[int]:
    clock = time.perf_counter_ns
    samples: list[int] = []
    stop = clock() + int(seconds * 1e9)
    while True:
        t0 = clock()
        runner.run()
        t1 = clock()
        samples.append(t1 - t0)
        if t1 >= stop:
            return samples


def _predict(runner: Any, inputs: str, out: str, batch: int) -> None:
    """Outputs for every input, run in batches of exactly the timed size (the last one padded), so the accuracy
    measured is that of the configuration timed."""
    feeds = _feeds(inputs)
    n = len(next(iter(feeds.values())))
    parts = []
    for i in range(0, n, batch):
        chunk = {k: v[i:i + batch] for k, v in feeds.items()}
        m = len(next(iter(chunk.values())))
        if m < batch:
            chunk = {k: np.concatenate([v, np.repeat(v[-1:], batch - m, axis=0)]) for k, v in chunk.items()}
        parts.append({k: v[:m] for k, v in runner.predict(chunk).items()})
    np.savez(out, **{k: np.concatenate([p[k] for p in parts]) for k in parts[0]})


def handle(request: dict[str, Any], runners: dict[str, Any]) -> dict[str, Any]:
    op = request["op"]
    if op == "load":
        feeds = _feeds(request["inputs"])
        runner = RUNTIMES[request["runtime"]](request["model"], int(request.get("threads") or 0), feeds,
                                              list(request.get("fetch") or []))
        for _ in range(3):
            runner.run()
        runners[request["key"]] = runner
        return {"ok": True, "info": runner.info}
    if op == "time":
        return {"ok": True, "ns": _time(runners[request["key"]], float(request["seconds"]))}
    if op == "predict":
        _predict(runners[request["key"]], request["inputs"], request["out"], int(request.get("batch", 256)))
        return {"ok": True}
    raise ValueError(f"unknown op {op!r}")


def main() -> int:
    runners: dict[str, Any] = {}
    out = sys.stdout
    sys.stdout = sys.stderr  # a runtime's own prints must not corrupt the protocol
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("op") == "quit":
            break
        try:
            answer = handle(request, runners)
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the suite, which records it
            answer = {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:500]}",
                      "trace": traceback.format_exc()[-1500:]}
        out.write(json.dumps(answer) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    raise SystemExit(main())
