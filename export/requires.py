"""What a bundle needs from the runtime, for the manifest's ``requires`` section.

The highest ONNX IR version and opset per domain among the bundle's graphs, and the oldest onnxruntime release that
accepts them all. onnxruntime refuses at session creation a graph stamped above the IR version or opset its build
implements; the ceilings of each release were MEASURED by ``scripts/ort_support_table.py`` (one-node graphs
stamped with rising versions, each release in its own folder) into ``export/ort_support.json``, which this module
reads. Domains that file does not list (``com.microsoft`` contrib ops, ...) do not raise the minimum. A graph newer
than every measured release requires the onnxruntime that exported it (it ran the parity gate, so it is proven).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from medinfer.manifest import Requires

SUPPORT_FILE = Path(__file__).with_name("ort_support.json")


@functools.lru_cache(maxsize=1)
def support_table() -> tuple[dict[str, Any], ...]:
    """The measured releases, oldest first: ``{"onnxruntime": "1.18.0", "ir_version": 10, "ai.onnx": 21, ...}``."""
    rows = json.loads(SUPPORT_FILE.read_text(encoding="utf-8"))["releases"]
    return tuple(sorted(rows, key=lambda r: tuple(int(p) for p in r["onnxruntime"].split("."))))


def graph_stamps(graphs: Iterable[bytes]) -> tuple[int, dict[str, int]]:
    """The highest IR version and the highest opset per domain (``""`` is written ``ai.onnx``) of ``graphs``."""
    import onnx

    ir, opsets = 0, {}
    for data in graphs:
        model = onnx.load_model_from_string(data)
        ir = max(ir, int(model.ir_version))
        for entry in model.opset_import:
            domain = entry.domain or "ai.onnx"
            opsets[domain] = max(opsets.get(domain, 0), int(entry.version))
    return ir, opsets


def minimum_onnxruntime(ir_version: int, opsets: dict[str, int], exporting: str | None = None) -> tuple[str, str]:
    """The oldest measured onnxruntime release that accepts these stamps, and where that answer comes from."""
    for row in support_table():
        if ir_version <= row["ir_version"] and all(v <= row[d] for d, v in opsets.items() if d in row):
            return row["onnxruntime"], "export/ort_support.json (scripts/ort_support_table.py)"
    if exporting is None:
        import onnxruntime

        exporting = str(onnxruntime.__version__).split("+")[0]
    return exporting, "the exporting onnxruntime (the graphs are newer than every release in export/ort_support.json)"


def requirements(graphs: Iterable[bytes], exporting: str | None = None) -> Requires:
    """The manifest's ``requires`` for a bundle holding ``graphs`` (the default graph and every variant)."""
    ir, opsets = graph_stamps(graphs)
    release, source = minimum_onnxruntime(ir, opsets, exporting)
    return Requires(onnxruntime=release, ir_version=ir, opsets=dict(sorted(opsets.items())), source=source)
