"""Triton Python-backend model hosting a BARE onnxruntime session: the serve benchmark's tritonserver contender.

Copied as ``<name>/1/model.py`` by :func:`benchmarks.triton_bare.repository`, beside ``bare_session.py`` and the
bundle's graph (``model.onnx``). numpy + onnxruntime only: no medinfer, no validation, no decision rule, no audit.
The session options come from the config parameter ``session_options`` (JSON, see bare_session.py). Each batch
Triton hands over runs as ONE ``session.run`` when its requests concatenate (same trailing shapes), else one run per
request; every graph output the config declares is answered.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bare_session  # noqa: E402


class TritonPythonModel:
    """The Triton Python-backend entry point."""

    def initialize(self, args: dict[str, Any]) -> None:
        import triton_python_backend_utils as pb_utils

        self.pb = pb_utils
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in (config.get("parameters") or {}).items()}
        folder = os.path.join(args["model_repository"], str(args["model_version"]))
        self.spec = bare_session.loads(params["session_options"])
        self.session = bare_session.session(os.path.join(folder, "model.onnx"), self.spec)
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o["name"] for o in config.get("output", [])]

    def _feeds(self, request: Any) -> dict[str, np.ndarray]:
        feeds = {}
        for name in self.inputs:
            tensor = self.pb.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise ValueError(f"the request lacks input {name!r}")
            arr = tensor.as_numpy()
            if arr.dtype == object:  # BYTES: onnxruntime takes str
                arr = np.array([v.decode() if isinstance(v, bytes) else v for v in arr.reshape(-1)],
                               dtype=object).reshape(arr.shape)
            feeds[name] = arr
        return feeds

    def _run(self, feeds: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        try:
            joined = {n: np.concatenate([f[n] for f in feeds]) for n in self.inputs}
        except ValueError:  # shapes that do not concatenate: one run each
            return [dict(zip(self.outputs, self.session.run(self.outputs, f))) for f in feeds]
        outs = self.session.run(self.outputs, joined)
        ends = np.cumsum([len(f[self.inputs[0]]) for f in feeds])
        return [{n: o[end - len(f[self.inputs[0]]):end] for n, o in zip(self.outputs, outs)}
                for f, end in zip(feeds, ends)]

    def execute(self, requests: list[Any]) -> list[Any]:
        feeds: list[dict[str, np.ndarray] | Exception] = []
        for request in requests:
            try:
                feeds.append(self._feeds(request))
            except Exception as exc:  # noqa: BLE001 - answered as this request's error
                feeds.append(exc)
        good = [f for f in feeds if not isinstance(f, Exception)]
        try:
            answers = iter(self._run(good) if good else [])
        except Exception as exc:  # noqa: BLE001 - onnxruntime refused the batch: every request gets the error
            return [self._error(exc) for _ in requests]
        return [self._error(f) if isinstance(f, Exception) else self._response(next(answers)) for f in feeds]

    def _response(self, outputs: dict[str, np.ndarray]) -> Any:
        items = []
        for name, arr in outputs.items():
            if arr.dtype.kind in "OU":
                arr = np.array([str(v).encode("utf-8") for v in arr.reshape(-1)], dtype=object).reshape(arr.shape)
            items.append(self.pb.Tensor(name, np.ascontiguousarray(arr)))
        return self.pb.InferenceResponse(output_tensors=items)

    def _error(self, exc: Exception) -> Any:
        return self.pb.InferenceResponse(output_tensors=[], error=self.pb.TritonError(f"{type(exc).__name__}: {exc}"))

    def finalize(self) -> None:
        self.session = None
