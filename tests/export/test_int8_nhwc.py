"""The channels-last int8 CNN rewrite (export/variants/int8_nhwc_graph.py): it re-expresses exactly what it reads,
refuses what it cannot prove, and gives each patch the same score alone as in a batch. Tiny hand-built graphs, no
training."""

from __future__ import annotations

import numpy as np
import pytest

from ..helpers import tiny_cnn

pytest.importorskip("onnx")


def _run(model: bytes, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    return ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(["probability"], {"hu": x})[0]


def _patches(n: int, seed: int = 0) -> np.ndarray:
    image = tiny_cnn.ct_image((160, 160), seed=seed)
    rng = np.random.default_rng(seed)
    corners = rng.integers(0, 60, (n, 2))
    return np.stack([image[r:r + 100, c:c + 100, None] for r, c in corners]).astype(np.float32)


@pytest.mark.parametrize("entry", ["reshape", "transpose"])
def test_the_fp32_rewrite_equals_the_graph(entry: str) -> None:
    from medinfer.export.variants.int8_nhwc_graph import build

    graph = tiny_cnn.patch_graph(entry=entry)
    x = _patches(8)
    twin = build(graph, "hu", "probability", quantize=False)
    assert np.max(np.abs(_run(twin, x) - _run(graph, x))) <= 1e-5


@pytest.mark.parametrize("plan", [
    {},  # the shipped plan: QLinearConv, static scales, 4-bit dense
    {"convs": ("matmul",), "scales": "per_sample", "dense": "int8", "pad_channels": False},
    {"convs": ("qlinearconv", "matmul"), "dense": "fp32"},
])
def test_the_int8_rewrite_stays_close_and_is_batch_invariant(plan: dict) -> None:
    from medinfer.export.variants.int8_nhwc import check_batch_invariance
    from medinfer.export.variants.int8_nhwc_graph import Plan, build

    graph = tiny_cnn.patch_graph()
    x = _patches(24, seed=2)
    data = build(graph, "hu", "probability", Plan(**plan), calibration=_patches(32, seed=3))
    ref, got = _run(graph, x), _run(data, x)
    assert np.max(np.abs(got - ref)) <= 0.05  # the same model within int8 error (probabilities)
    check_batch_invariance(data, "hu", "probability", x)  # raises if a score depends on its batch mates


@pytest.mark.parametrize("change", [{"pads": 1}, {"ceil_mode": 1}, {"flatten": "nchw"}, {"spatial_bias": True}])
def test_a_graph_it_cannot_prove_is_refused(change: dict) -> None:
    from medinfer.export.variants.cnn_chain import Int8NhwcError
    from medinfer.export.variants.int8_nhwc_graph import build

    with pytest.raises(Int8NhwcError):
        build(tiny_cnn.patch_graph(**change), "hu", "probability", quantize=False)


def test_a_rewrite_that_differs_from_the_graph_is_refused() -> None:
    from medinfer.export.variants.int8_nhwc import check_rewrite
    from medinfer.export.variants.int8_nhwc_graph import build

    graph, other = tiny_cnn.patch_graph(seed=0), tiny_cnn.patch_graph(seed=1)
    wrong = build(other, "hu", "probability", quantize=False)
    with pytest.raises(ValueError, match="the fp32 rewrite differs from the validated graph"):
        check_rewrite(graph, wrong, "hu", "probability", _patches(4), 1e-5)


def test_a_score_that_depends_on_its_batch_mates_is_refused() -> None:
    """A graph that divides by the batch's largest value: each sample's score changes with its batch."""
    from medinfer.export.variants.int8_nhwc import check_batch_invariance
    from onnx import TensorProto, helper

    nodes = [helper.make_node("ReduceMax", ["hu"], ["peak"], keepdims=1, axes=[0, 1, 2, 3]),
             helper.make_node("Div", ["hu", "peak"], ["ratio"]),
             helper.make_node("ReduceMean", ["ratio"], ["probability"], keepdims=0, axes=[1, 2, 3])]
    graph = helper.make_graph(nodes, "batchy", [helper.make_tensor_value_info("hu", TensorProto.FLOAT,
                                                                              ["N", 100, 100, 1])],
                              [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["N"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    x = (np.abs(_patches(4)) + 1.0) * np.arange(1, 5, dtype=np.float32).reshape(4, 1, 1, 1)
    with pytest.raises(ValueError, match="changes by .* with its batch mates"):
        check_batch_invariance(model.SerializeToString(), "hu", "probability", x)


def test_an_unknown_plan_is_refused_before_any_work() -> None:
    from medinfer.export.variants.int8_nhwc_graph import Plan, build

    with pytest.raises(ValueError, match="per-sample scales need matrix-product stages"):
        build(b"not a graph", "hu", "probability", Plan(convs=("qlinearconv",), scales="per_sample"))
    with pytest.raises(ValueError, match="a 4-bit block of 100 rows"):
        build(b"not a graph", "hu", "probability", Plan(block=100))
