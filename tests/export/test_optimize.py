"""Export-time speed work: static int8 with window folding, the variant gate (session profiles: test_profiles.py)."""

from __future__ import annotations

import dataclasses

import medinfer
import numpy as np
import pytest


def _window_cnn() -> bytes:
    """HU (N,16,16,1) -> 3 windows (1x1 conv, Relu, Min 1, Max 0) -> 3x3 conv -> mean: the CNN's input shape."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    a = np.array([1 / 1500, 1 / 350, 1 / 1800], np.float32).reshape(3, 1, 1, 1)
    b = np.array([0.9, 0.3857, 0.2778], np.float32)
    w = (rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32)
    inits = [numpy_helper.from_array(np.array([-1, 1, 16, 16], np.int64), "shape"),
             numpy_helper.from_array(a, "wa"), numpy_helper.from_array(b, "wb"),
             numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float32), "one"),
             numpy_helper.from_array(np.zeros((1, 1, 1, 1), np.float32), "zero"),
             numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.zeros(8, np.float32), "wbias")]
    nodes = [helper.make_node("Reshape", ["hu", "shape"], ["x"], name="ct_windows/reshape"),
             helper.make_node("Conv", ["x", "wa", "wb"], ["c"], name="ct_windows/conv"),
             helper.make_node("Relu", ["c"], ["r"], name="window_clip/relu"),
             helper.make_node("Min", ["r", "one"], ["mn"], name="window_clip/min"),
             helper.make_node("Max", ["mn", "zero"], ["window_clip/out"], name="window_clip/max"),
             helper.make_node("Conv", ["window_clip/out", "w", "wbias"], ["f"], name="features"),
             helper.make_node("Relu", ["f"], ["fr"], name="features/relu"),
             helper.make_node("ReduceMean", ["fr"], ["score"], keepdims=0, axes=[1, 2, 3], name="pool")]
    graph = helper.make_graph(nodes, "wcnn", [helper.make_tensor_value_info("hu", TensorProto.FLOAT, ["N", 16, 16, 1])],
                              [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])], initializer=inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m.SerializeToString()


def _run(model: bytes, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    return ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"hu": x})[0]


def test_window_folding_keeps_the_int8_graph_s_answers() -> None:
    pytest.importorskip("onnxruntime.quantization")
    from medinfer.export.optimize import fold_window_into_quantize, static_int8

    rng = np.random.default_rng(1)
    x = rng.uniform(-1024, 2000, size=(64, 16, 16, 1)).astype(np.float32)
    fp32 = _window_cnn()
    int8 = static_int8(fp32, x[:32], "hu")
    folded = fold_window_into_quantize(int8, "ct_windows", "window_clip")
    ref, q, f = _run(fp32, x), _run(int8, x), _run(folded, x)
    spread = float(ref.max() - ref.min())
    assert np.max(np.abs(f - ref)) <= 0.05 * spread  # still the same model within int8 error
    assert np.max(np.abs(f - q)) <= 0.05 * spread
    import onnx

    ops = [n.op_type for n in onnx.load_from_string(folded).graph.node]
    assert "Min" not in ops and ops.count("Conv") == 1  # the window conv and its clip are gone


def test_window_folding_refuses_a_graph_without_the_pattern() -> None:
    from medinfer.export.optimize import fold_window_into_quantize, static_int8

    x = np.zeros((4, 16, 16, 1), np.float32)
    int8 = static_int8(_window_cnn(), x, "hu")
    with pytest.raises(ValueError, match="no Conv"):
        fold_window_into_quantize(int8, "no_such_layer", "window_clip")


@pytest.mark.slow
def test_variant_gate_refuses_a_variant_over_budget(built) -> None:
    from medinfer.export.variants.int8 import build_int8

    art, path = built("lung_nodule_cnn")
    spec = type(art.spec)()
    spec.variant_budget = {"roc_auc": -1.0}  # impossible: any variant must be refused
    model_bytes = (path / "model.onnx").read_bytes()
    variants, files, report, _ = build_int8(spec, art.dataset, model_bytes, "hu", art.dataset.X_test[:2],
                                            art.point.threshold)
    assert variants == {} and files == {}
    assert report["int8"]["shipped"] is False and "roc_auc loses" in report["int8"]["reason"]
    m = medinfer.load_manifest(path)
    shipped = dataclasses.asdict(m.variants.get("int8")) if "int8" in m.variants else None
    if shipped is not None:  # the fixture's own export kept it: its self-test must pass on its own golden
        medinfer.load(path, variant="int8")
