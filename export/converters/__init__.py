"""Converters from native models to ONNX, one module per framework family (chosen by ``spec.family``)."""

from __future__ import annotations

import importlib
from typing import Any

FAMILIES = {"sklearn": "sklearn", "keras": "keras"}


def convert(spec: Any, model: Any, dataset: Any) -> Any:
    """Convert ``model`` with the converter of ``spec.family``; returns an ``onnx.ModelProto``."""
    module = FAMILIES.get(spec.family)
    if module is None:
        raise ValueError(f"spec {spec.name!r} has family {spec.family!r}; converters exist for {sorted(FAMILIES)}")
    return importlib.import_module(f"{__name__}.{module}").convert(spec, model, dataset)
