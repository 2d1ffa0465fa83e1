"""Tiny bundles built in-process with onnx.helper (no TensorFlow, no scikit-learn): a 3-feature logistic model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from medinfer.integrity import contract_digest
from medinfer.manifest import Card, DataProvenance, DataSource, Decision, Metric, Metrics, Producer, TensorSpec, Variant
from medinfer.schema import to_json

W = np.array([[1.0, -1.0], [0.5, -0.5], [-2.0, 2.0]], dtype=np.float32)
B = np.array([0.1, -0.1], dtype=np.float32)
FEATURES = ("alpha", "beta", "gamma")
RANGE = (-10.0, 10.0)


def reference(x: np.ndarray) -> np.ndarray:
    """The tiny model in numpy: softmax(x @ W + B)."""
    z = x.astype(np.float32) @ W + B
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def contract(name: str = "tiny_logistic") -> dict[str, Any]:
    return {
        "name": name,
        "version": "0.0.1",
        "task": "binary_classification",
        "inputs": to_json((TensorSpec("x", "float32", ("N", 3), range=RANGE, units="a.u.", names=FEATURES),)),
        "outputs": to_json((TensorSpec("label", "int64", ("N",)), TensorSpec("probabilities", "float32", ("N", 2)))),
        "labels": ["negative", "positive"],
        "decision": to_json(Decision(score_output="probabilities", label_output="label",
                                     positive_label="positive", threshold=0.5)),
    }


def model_bytes(name: str = "tiny_logistic", metadata: dict[str, str] | None = None, slow: int = 0) -> bytes:
    """The tiny logistic graph; ``slow`` > 0 adds that many 512x512 MatMuls whose result is multiplied by 0
    (same outputs, long run: for deadline tests)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("MatMul", ["x", "W"], ["z0"])]
    inits = [numpy_helper.from_array(W, "W"), numpy_helper.from_array(B, "B")]
    if slow:
        rng = np.random.default_rng(0)
        inits += [numpy_helper.from_array((rng.standard_normal((512, 512)) / 512).astype(np.float32), "H"),
                  numpy_helper.from_array(np.zeros((1,), np.float32), "Zero")]
        nodes += [helper.make_node("ReduceSum", ["x"], ["xs"], keepdims=0),  # input-dependent: not folded away
                  helper.make_node("Mul", ["H", "xs"], ["h_start"])]
        prev = "h_start"
        for i in range(slow):
            nodes.append(helper.make_node("MatMul", [prev, "H"], [f"h{i}"]))
            prev = f"h{i}"
        nodes += [helper.make_node("ReduceSum", [prev], ["hs"], keepdims=0),
                  helper.make_node("Mul", ["hs", "Zero"], ["h0z"]),
                  helper.make_node("Add", ["z0", "h0z"], ["z0s"])]
        z0 = "z0s"
    else:
        z0 = "z0"
    nodes += [
        helper.make_node("Add", [z0, "B"], ["z"]),
        helper.make_node("Softmax", ["z"], ["probabilities"], axis=1),
        helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 2])],
        initializer=inits,
    )
    onx = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onx.ir_version = 8
    props = metadata if metadata is not None else {
        "medinfer.name": name, "medinfer.version": "0.0.1", "medinfer.contract_sha256": contract_digest(contract(name))}
    for k, v in props.items():
        entry = onx.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(onx)
    return onx.SerializeToString()


GOLDEN_X = np.array([[1.0, 2.0, 3.0], [-1.0, 0.0, 4.5], [0.0, 0.0, 0.0]], dtype=np.float32)


def build(folder: Path, *, name: str = "tiny_logistic", golden_out: np.ndarray | None = None,
          metadata: dict[str, str] | None = None, slow: int = 0, **overrides: Any) -> Path:
    """Write a valid tiny bundle into ``folder`` (created); overrides replace manifest fields."""
    from medinfer.export.bundle import golden_entry, golden_npz, write_bundle

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    expected = reference(GOLDEN_X) if golden_out is None else golden_out
    golden = {"probabilities": expected.astype(np.float32)}
    fields = {
        **contract(name),
        "description": "tiny test model (synthetic)",
        "producer": Producer(medinfer="test", onnx="test", onnxruntime="test", opset={"ai.onnx": 17}),
        "profile": {"intra_op_num_threads": 1, "inter_op_num_threads": 1},
        "variants": {"default": Variant(file="model.onnx")},
        "data": DataProvenance(
            sources=(DataSource(name="synthetic", package="none", version="0", file="-", sha256="0" * 64,
                                licence="CC0", citation="generated in the test"),),
            split={"method": "none"}, synthetic=True, description="synthetic weights"),
        "metrics": Metrics(heldout={"accuracy": Metric(1.0, (1.0, 1.0))}, n_test=3, method="none"),
        "parity": {"passed": True},
        "golden": golden_entry(golden, atol=1e-5),
        "card": Card(summary="tiny", intended_use="tests only"),
        **overrides,
    }
    files = {"model.onnx": (model_bytes(name, metadata, slow), "model"),
             "golden.npz": golden_npz({"x": GOLDEN_X}, golden)}
    write_bundle(folder, fields, files)
    return folder
