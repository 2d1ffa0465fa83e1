"""Triton Python-backend model that runs a medinfer bundle (copied as ``<name>/1/model.py`` by
``medinfer export-triton --backend python``; the bundle lies in ``<name>/1/bundle/``).

``initialize`` loads the bundle with ``medinfer.load`` — sha256 of every file and the golden self-test — so a
tampered or non-reproducing bundle never becomes ready in Triton either. ``execute`` runs dynamic batches through
``Model.predict`` (the library's validation; one run for the whole batch, and one run per request only when the
batch is refused, so that each request gets its own error) and answers ``labels`` (BYTES), ``scores`` and the
graph's raw score output, like ``medinfer serve``. Input errors come back as INVALID_ARG (HTTP 400).

medinfer and onnxruntime must be importable by the stub's Python. When they live elsewhere (a virtual
environment), name its site-packages in the config parameter ``medinfer_site_packages`` or the environment
variable ``MEDINFER_SITE_PACKAGES`` (``os.pathsep``-separated); they are put first on ``sys.path``.
"""

from __future__ import annotations

import json
import os
import site
import sys
from pathlib import Path
from typing import Any


def _add_site_packages(paths: str) -> None:
    """Put these site folders (with their .pth files, e.g. an editable install) first on sys.path."""
    for entry in reversed([p for p in paths.split(os.pathsep) if p]):
        before = list(sys.path)
        site.addsitedir(entry)
        added = [p for p in sys.path if p not in before]
        sys.path[:] = added + before


class TritonPythonModel:
    """The Triton Python-backend entry point."""

    def initialize(self, args: dict[str, Any]) -> None:
        import triton_python_backend_utils as pb_utils

        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in (config.get("parameters") or {}).items()}
        extra = os.environ.get("MEDINFER_SITE_PACKAGES") or params.get("medinfer_site_packages", "")
        if extra:
            _add_site_packages(extra)
        import medinfer
        from medinfer.fleet.protocol import prediction_tensors
        from medinfer.request_groups import predict_grouped

        deadline = float(params["deadline_ms"]) if params.get("deadline_ms") else None
        bundle = Path(args["model_repository"]) / str(args["model_version"]) / "bundle"
        # A KIND_GPU instance runs on its own device with CUDA (only listed providers are ever used).
        providers = None
        if str(args.get("model_instance_kind", "CPU")).upper() == "GPU":
            providers = [("cuda", {"device_id": int(args.get("model_instance_device_id", 0) or 0)})]
        variant = params.get("variant") or None
        self.model = medinfer.load(bundle, providers, deadline_ms=deadline, variant=variant)
        self.tensors = prediction_tensors
        self.predict_grouped = predict_grouped
        self.outputs = [o["name"] for o in config.get("output", [])]
        self.pb = pb_utils
        self.medinfer = medinfer

    def execute(self, requests: list[Any]) -> list[Any]:
        names = self.model.input_names
        items: list[Any] = []
        for request in requests:
            tensors = {n: self.pb.get_input_tensor_by_name(request, n) for n in names}
            if any(t is None for t in tensors.values()):
                items.append(None)
                continue
            arrays = {n: t.as_numpy() for n, t in tensors.items()}
            items.append(arrays)
        # Same-shaped requests run as one batch; after a refusal each runs alone and gets its own answer.
        present = [i for i, x in enumerate(items) if x is not None]
        results = dict(zip(present, self.predict_grouped(self.model, [items[i] for i in present])))
        responses = []
        for i in range(len(items)):
            result = results.get(i)
            if result is None:
                responses.append(self._error(self.medinfer.InputError(
                    f"{self.model.name} takes input(s) {list(names)}; the request lacks one")))
            elif isinstance(result, self.medinfer.MedinferError):
                responses.append(self._error(result))
            else:
                responses.append(self._response(self.tensors(result)))
        return responses

    def _response(self, tensors: dict[str, Any]) -> Any:
        import numpy as np

        items = []
        for name in self.outputs:
            arr = tensors[name]
            if arr.dtype.kind in "OU":
                arr = np.array([str(v).encode("utf-8") for v in arr.reshape(-1)], dtype=object).reshape(arr.shape)
            items.append(self.pb.Tensor(name, np.ascontiguousarray(arr)))
        return self.pb.InferenceResponse(output_tensors=items)

    def _error(self, exc: Exception) -> Any:
        err = self.pb.TritonError
        code = getattr(err, self.medinfer.errors.triton_code(exc), None)  # the one table of outward statuses
        message = f"{type(exc).__name__}: {exc}"
        error = err(message, code) if code is not None else err(message)
        return self.pb.InferenceResponse(output_tensors=[], error=error)

    def finalize(self) -> None:
        self.model = None
