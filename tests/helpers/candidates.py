"""Tiny parent/candidate bundles for change control and install tests: a 3-feature logistic model with an
applicability-domain output, built with onnx.helper, whose weights, threshold, labels, guard and lineage are given.

``alt_w`` with ``alt_from`` makes a model that uses other weights where feature 0 exceeds ``alt_from`` (a worse
model for one subgroup only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from medinfer.change import Lineage, Pccp
from medinfer.integrity import contract_digest
from medinfer.manifest import Decision, Domain, Metric, Metrics, TensorSpec
from medinfer.samples import INPUT, key
from medinfer.schema import to_json

from . import tiny

W = np.array([[1.5, -1.5], [0.8, -0.8], [-1.2, 1.2]], dtype=np.float32)
B = np.array([0.0, 0.0], dtype=np.float32)
TRUE_W = (W[:, 1] - W[:, 0]).astype(np.float64)  # the truth: x @ TRUE_W + noise > 0 is "positive"


def reference_set(n: int = 1000, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs drawn in the domain, labels from a noisy truth, and a group per sample (feature 0 > 1: 'high')."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3)).astype(np.float32)
    logit = x @ TRUE_W + rng.normal(0, 2.0, n)
    y = np.where(logit > 0, "positive", "negative")
    group = np.where(x[:, 0] > 1.0, "high", "rest")
    return {key(INPUT, "x"): x, "y": y, "group": group}


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def build(folder: Path, *, version: str = "0.0.1", w: np.ndarray = W, b: np.ndarray = B,
          threshold: float = 0.5, labels: tuple[str, str] = ("negative", "positive"),
          positive: str = "positive", guard: float | None = 1.0, x_range: tuple[float, float] = tiny.RANGE,
          alt_w: np.ndarray | None = None, alt_from: float = 1.0, release: int | None = None,
          parent: Path | None = None, change: str = "", pccp: Pccp | None = None,
          metrics: dict[str, float] | None = None, wrong_golden: bool = False) -> Path:
    """Write the bundle (see the module docstring); ``guard`` None: no domain guard; ``wrong_golden``: a golden
    output the graph does not reproduce (the bundle verifies, its self-test fails)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    name = "tiny_change"
    outputs = [TensorSpec("label", "int64", ("N",)), TensorSpec("probabilities", "float32", ("N", 2))]
    if guard is not None:
        outputs.append(TensorSpec("domain_score", "float32", ("N",)))
    doc = {"name": name, "version": version, "task": "binary_classification",
           "inputs": to_json((TensorSpec("x", "float32", ("N", 3), range=x_range, names=tiny.FEATURES),)),
           "outputs": to_json(tuple(outputs)), "labels": list(labels),
           "decision": to_json(Decision(score_output="probabilities", label_output="label", positive_label=positive,
                                        threshold=threshold))}
    nodes = [helper.make_node("MatMul", ["x", "W"], ["z0"]), helper.make_node("Add", ["z0", "B"], ["zm"])]
    inits = [numpy_helper.from_array(w.astype(np.float32), "W"), numpy_helper.from_array(b.astype(np.float32), "B")]
    if alt_w is not None:
        nodes += [helper.make_node("MatMul", ["x", "W2"], ["z2"]), helper.make_node("Add", ["z2", "B"], ["za"]),
                  helper.make_node("Slice", ["x", "s0", "s1", "s1"], ["x0"]),
                  helper.make_node("Greater", ["x0", "cut"], ["alt"]),
                  helper.make_node("Where", ["alt", "za", "zm"], ["z"])]
        inits += [numpy_helper.from_array(alt_w.astype(np.float32), "W2"),
                  numpy_helper.from_array(np.array([0], np.int64), "s0"),
                  numpy_helper.from_array(np.array([1], np.int64), "s1"),
                  numpy_helper.from_array(np.array(alt_from, np.float32), "cut")]
    else:
        nodes.append(helper.make_node("Identity", ["zm"], ["z"]))
    nodes += [helper.make_node("Softmax", ["z"], ["probabilities"], axis=1),
              helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0)]
    outs = [helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 2])]
    if guard is not None:
        nodes += [helper.make_node("Mul", ["x", "x"], ["sq"]),
                  helper.make_node("ReduceMean", ["sq"], ["msq"], axes=[1], keepdims=0),
                  helper.make_node("Div", ["msq", "ten"], ["domain_score"])]
        inits.append(numpy_helper.from_array(np.array(10, np.float32), "ten"))
        outs.append(helper.make_tensor_value_info("domain_score", TensorProto.FLOAT, ["N"]))
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])], outs,
                              initializer=inits)
    onx = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onx.ir_version = 8
    for k, v in {"medinfer.name": name, "medinfer.version": version,
                 "medinfer.contract_sha256": contract_digest(doc)}.items():
        entry = onx.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(onx)
    golden_x = tiny.GOLDEN_X
    session_out = _run(onx.SerializeToString(), golden_x)
    if wrong_golden:
        session_out = session_out[:, ::-1].copy()
    extra: dict[str, Any] = {}
    if guard is not None:
        extra["domain"] = Domain(output="domain_score", threshold=guard, coverage=0.99, method="mean square / 10",
                                 calibration={}, evaluation={})
    if release is not None or parent is not None:
        from medinfer.export.change import ChangeRequest, change_fields

        fields = change_fields(name, version, "binary_classification", {"heldout": {}},
                               ChangeRequest(parent=parent, summary=change, release=release))
        extra["lineage"] = fields.get("lineage") or Lineage(release=release or 1)
    if pccp is not None:
        extra["pccp"] = pccp
    declared = metrics or {"roc_auc": 0.85, "accuracy": 0.78}
    extra["metrics"] = Metrics(heldout={k: Metric(v, (v - 0.02, v + 0.02)) for k, v in declared.items()},
                               n_test=1000, method="test")
    return tiny._write(folder, name, doc, onx.SerializeToString(), golden_x, {"probabilities": session_out},
                       **extra)


def _run(model: bytes, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return session.run(["probabilities"], {"x": x})[0]
