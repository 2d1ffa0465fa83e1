"""Which execution provider ran each node: from onnxruntime's profiler, on the bundle's golden input."""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .manifest import Manifest
from .providers import import_onnxruntime


class Loaded(Protocol):
    """What :func:`node_placement` reads of a loaded :class:`~medinfer.Model`."""

    manifest: Manifest
    providers: tuple[str, ...]
    session: Any

    def golden(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]: ...

    def graph_bytes(self) -> bytes: ...


def node_placement(model: Loaded) -> dict[str, Any]:
    """Profile one golden run of ``model`` (a loaded medinfer Model) with the same providers and options.

    Returns:
        ``{"providers": [...], "nodes": {provider: count}, "cpu_nodes": [op types the CPU ran],
        "all_on_first_provider": bool}``. With several providers listed, the CPU share is what a preferred
        accelerator could not take (e.g. ai.onnx.ml tree ops on OpenVINO).
    """
    ort = import_onnxruntime()

    from .session import session_options

    manifest = model.manifest
    data = model.graph_bytes()  # the pinned bytes, or IntegrityError
    with tempfile.TemporaryDirectory() as tmp:
        so = session_options(manifest.profile, cpu_fallback=True)
        so.enable_profiling = True
        so.profile_file_prefix = str(Path(tmp) / "placement")
        opts = model.session.get_provider_options()
        session = ort.InferenceSession(data, sess_options=so, providers=list(model.providers),
                                       provider_options=[opts.get(p, {}) for p in model.providers])
        inputs, _ = model.golden()
        feeds = {k: (v.astype(object) if v.dtype.kind == "U" else v) for k, v in inputs.items()}
        session.run(None, feeds)
        trace = json.loads(Path(session.end_profiling()).read_text())
    per_node: dict[str, tuple[str, str]] = {}
    for event in trace:
        args = event.get("args") or {}
        if event.get("cat") == "Node" and "provider" in args:
            name = event.get("name", "").removesuffix("_kernel_time").removesuffix("_fence_before")
            per_node[name] = (args["provider"], args.get("op_name", "?"))
    counts = Counter(p for p, _ in per_node.values())
    first = model.providers[0]
    return {
        "providers": list(model.providers),
        "nodes": dict(counts),
        "cpu_nodes": sorted({op for p, op in per_node.values() if p == "CPUExecutionProvider"})
        if first != "CPUExecutionProvider" else [],
        "all_on_first_provider": set(counts) <= {first},
    }
