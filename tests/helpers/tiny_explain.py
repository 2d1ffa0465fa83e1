"""Tiny bundles with explanations, built with onnx.helper (no training stack): the device tests of medinfer.explain.

- :func:`linear`: tiny_logistic (softmax(x W + B), 2 classes) with an explanation graph of the positive label's
  log-odds: ``x * (W[:, 1] - W[:, 0])``, bias ``B[1] - B[0]`` (the reference below is computed independently);
- :func:`occlusion`: tiny_ct (sigmoid of the patch's mean HU) explained by occlusion;
- :func:`masking`: tiny_sequence (the mean of every value) explained by masking time steps and feature groups.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from medinfer.explain_spec import ExplanationEntry
from medinfer.integrity import contract_digest
from medinfer.samples import pair_arrays

from . import tiny

LOGIT_W = (tiny.W[:, 1] - tiny.W[:, 0]).astype(np.float32)
LOGIT_B = float(tiny.B[1] - tiny.B[0])


def log_odds(x: np.ndarray) -> np.ndarray:
    """The positive label's log-odds of tiny_logistic, from its probabilities (an independent reference)."""
    p = tiny.reference(np.asarray(x, np.float32)).astype(np.float64)
    return np.log(p[:, 1] / p[:, 0])


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def linear_graph(name: str = "tiny_logistic", weights: np.ndarray = LOGIT_W,
                 metadata: dict[str, str] | None = None) -> bytes:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "w"], ["attributions"])], f"{name}_explanation",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("attributions", TensorProto.FLOAT, ["N", 3])],
        initializer=[numpy_helper.from_array(np.asarray(weights, np.float32), "w")])
    onx = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onx.ir_version = 8
    props = metadata if metadata is not None else {
        "medinfer.name": name, "medinfer.version": "0.0.1",
        "medinfer.contract_sha256": contract_digest(tiny.contract(name))}
    for k, v in props.items():
        entry = onx.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(onx)
    return onx.SerializeToString()


def linear(folder: Path, *, golden_weights: np.ndarray = LOGIT_W, graph: bytes | None = None,
           **entry: Any) -> Path:
    """tiny_logistic with a ``linear`` explanation (``golden_weights``: what the golden output was computed with)."""
    golden_out = (tiny.GOLDEN_X[:2] * golden_weights).astype(np.float32)
    data = _npz({**pair_arrays({"x": tiny.GOLDEN_X[:2]}, {"attributions": golden_out}),
                 "baseline": np.zeros(3, np.float32)})
    explanation = ExplanationEntry(**{
        "method": "linear", "explains": "log-odds of 'positive'", "units": "log-odds", "file": "explain.onnx",
        "data": "explain.npz", "exact": True, "bias": (LOGIT_B,), "baseline": "the feature at 0", **entry})
    return tiny.build(folder, explanation=explanation,
                      extra_files={"explain.onnx": (graph if graph is not None else linear_graph(), "explain"),
                                   "explain.npz": (data, "explain")})


def add_explanation(folder: Path, entry: ExplanationEntry) -> Path:
    """Rewrite a tiny bundle with ``entry`` as its explanation (a method that needs no file)."""
    from medinfer.export.bundle import write_bundle
    from medinfer.manifest import load_manifest

    manifest = load_manifest(folder)
    doc = manifest.to_json()
    fields = {k: v for k, v in doc.items() if k not in ("schema_version", "files", "created", "requires")}
    files = {n: ((folder / n).read_bytes(), f.role) for n, f in manifest.files.items() if n != "model_card.md"}
    write_bundle(folder, {**fields, "explanation": entry}, files)
    return folder


def occlusion(folder: Path) -> Path:
    tiny.build_ct(folder, name="tiny_ct")
    return add_explanation(folder, ExplanationEntry(
        method="occlusion", explains="probability of 'nodule'", units="probability",
        baseline="a square set to the patch's median", params={"window": 20, "stride": 10, "cell": 10}))


MEAN = (0.5, -0.5)


def masking(folder: Path) -> Path:
    tiny.build_sequence(folder, name="tiny_sequence", names=("a", "b"), facts={"step_minutes": 5})
    return add_explanation(folder, ExplanationEntry(
        method="masking", explains="value", units="a.u.", baseline="carry forward; groups at the mean",
        params={"groups": {"first": [0], "second": [1]}, "events": [1], "mean": list(MEAN), "step_minutes": 5.0}))
