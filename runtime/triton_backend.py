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
        from medinfer.protocol import prediction_tensors

        deadline = float(params["deadline_ms"]) if params.get("deadline_ms") else None
        bundle = Path(args["model_repository"]) / str(args["model_version"]) / "bundle"
        self.model = medinfer.load(bundle, deadline_ms=deadline)
        self.tensors = prediction_tensors
        self.outputs = [o["name"] for o in config.get("output", [])]
        self.pb = pb_utils
        self.medinfer = medinfer

    def execute(self, requests: list[Any]) -> list[Any]:
        names = self.model.input_names
        batch = [{n: self.pb.get_input_tensor_by_name(r, n) for n in names} for r in requests]
        arrays: list[dict[str, Any]] = [{n: (t.as_numpy() if t is not None else None) for n, t in item.items()}
                                        for item in batch]
        missing = [i for i, a in enumerate(arrays) if any(v is None for v in a.values())]
        if not missing and len(arrays) > 1 and self._same_shapes(arrays):
            import numpy as np

            sizes = [len(a[names[0]]) for a in arrays]
            joined = {n: np.concatenate([a[n] for a in arrays]) for n in names}
            try:
                pred = self.model.predict(joined[names[0]] if len(names) == 1 else joined)
            except self.medinfer.MedinferError:
                pass  # one request spoils the batch: run each alone so that each gets its own answer
            else:
                return self._split(pred, sizes)
        return [self._one(a) for a in arrays]

    @staticmethod
    def _same_shapes(arrays: list[dict[str, Any]]) -> bool:
        first = arrays[0]
        return all(a[n].shape[1:] == first[n].shape[1:] and a[n].dtype == first[n].dtype
                   for a in arrays[1:] for n in first)

    def _one(self, x: dict[str, Any]) -> Any:
        names = self.model.input_names
        if any(v is None for v in x.values()):
            return self._error(self.medinfer.InputError(f"{self.model.name} takes input(s) {list(names)}"))
        try:
            pred = self.model.predict(x[names[0]] if len(names) == 1 else x)
        except self.medinfer.MedinferError as exc:
            return self._error(exc)
        return self._response(self.tensors(pred), 0, None)

    def _split(self, pred: Any, sizes: list[int]) -> list[Any]:
        tensors = self.tensors(pred)
        out, start = [], 0
        for n in sizes:
            out.append(self._response(tensors, start, start + n))
            start += n
        return out

    def _response(self, tensors: dict[str, Any], start: int, stop: int | None) -> Any:
        import numpy as np

        items = []
        for name in self.outputs:
            arr = tensors[name][start:stop]
            if arr.dtype.kind in "OU":
                arr = np.array([str(v).encode("utf-8") for v in arr.reshape(-1)], dtype=object).reshape(arr.shape)
            items.append(self.pb.Tensor(name, np.ascontiguousarray(arr)))
        return self.pb.InferenceResponse(output_tensors=items)

    def _error(self, exc: Exception) -> Any:
        err = self.pb.TritonError
        if isinstance(exc, self.medinfer.InputError):
            code = getattr(err, "INVALID_ARG", None)
        elif isinstance(exc, self.medinfer.DeadlineExceeded):
            code = getattr(err, "UNAVAILABLE", None)
        else:
            code = getattr(err, "INTERNAL", None)
        message = f"{type(exc).__name__}: {exc}"
        error = err(message, code) if code is not None else err(message)
        return self.pb.InferenceResponse(output_tensors=[], error=error)

    def finalize(self) -> None:
        self.model = None
