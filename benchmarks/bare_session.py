"""A bare onnxruntime session from a plain description of its options (numpy + onnxruntime only, never medinfer).

The serve benchmark's other servers (MLServer's runtime, Triton's Python backend) run in their own venvs without
medinfer; this file is copied beside their model code. The description is made in the benchmark's process from
medinfer's own rule (:func:`benchmarks.triton_bare.bare_options`: ``medinfer.session.session_options`` of the
profile medinfer serves batch 1 with, at the run's thread count), so every server runs the same graph with the same
session options, and it is written into the server's config where it can be read back.

    {"intra_op_num_threads": 2, "inter_op_num_threads": 1, "execution_mode": "ORT_SEQUENTIAL",
     "graph_optimization_level": "ORT_ENABLE_ALL", "config": {"session.intra_op.allow_spinning": "1", ...}}
"""

from __future__ import annotations

import json
from typing import Any

CONFIG_KEYS = ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning")


def options(spec: dict[str, Any]) -> Any:
    """``onnxruntime.SessionOptions`` as ``spec`` describes them."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = int(spec["intra_op_num_threads"])
    so.inter_op_num_threads = int(spec["inter_op_num_threads"])
    so.execution_mode = getattr(ort.ExecutionMode, spec["execution_mode"])
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, spec["graph_optimization_level"])
    for key, value in (spec.get("config") or {}).items():
        so.add_session_config_entry(key, str(value))
    so.log_severity_level = 3
    return so


def session(graph: str, spec: dict[str, Any]) -> Any:
    """An InferenceSession of the graph file on the CPU provider with ``spec``'s options."""
    import onnxruntime as ort

    return ort.InferenceSession(graph, sess_options=options(spec), providers=["CPUExecutionProvider"])


def describe(so: Any) -> dict[str, Any]:
    """The description of existing SessionOptions (what :func:`options` turns back into the same options)."""
    config = {}
    for key in CONFIG_KEYS:
        try:
            value = so.get_session_config_entry(key)
        except Exception:  # noqa: BLE001 - onnxruntime raises for a key that was never set
            continue
        if value != "":
            config[key] = value
    return {"intra_op_num_threads": int(so.intra_op_num_threads), "inter_op_num_threads": int(so.inter_op_num_threads),
            "execution_mode": so.execution_mode.name, "graph_optimization_level": so.graph_optimization_level.name,
            "config": config}


def loads(text: str) -> dict[str, Any]:
    """A description read from a config parameter (JSON)."""
    spec = json.loads(text)
    if not isinstance(spec, dict):
        raise ValueError(f"session options must be a JSON object, got {type(spec).__name__}")
    return spec
