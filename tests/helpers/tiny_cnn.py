"""A tiny CNN of the seed CNN's shape family, built with onnx.helper the way tf2onnx writes the real one: HU
(N, 100, 100, 1) -> a Reshape to channels-first -> three CT windows (1x1 conv, Relu, Min 1, Max 0) -> three valid
3x3 conv + ReLU + 2x2 max-pool stages (stride 8) -> channels-last Transpose -> flatten -> Dense + ReLU -> Dense +
sigmoid. Few channels, random weights: milliseconds per patch, no TensorFlow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from medinfer.integrity import contract_digest, outputs_digest, variant_contract_digest
from medinfer.manifest import Decision, TensorSpec, Variant
from medinfer.schema import to_json

from . import tiny

PATCH = 100
CHANNELS = (4, 4, 8)
DENSE = 8
WINDOWS = ((-600.0, 1500.0), (40.0, 350.0), (400.0, 1800.0))  # (level, width) as lung_nodule_cnn's


def contract(name: str = "tiny_cnn", threshold: float = 0.5) -> dict[str, Any]:
    facts = {"modality": "CT", "units": "HU", "patch": [PATCH, PATCH],
             "dicom": {"modality": "CT", "photometric": ["MONOCHROME2", "MONOCHROME1"],
                       "clip_hu": list(tiny.CT_RANGE), "window_stride": 24}}
    return {
        "name": name, "version": "0.0.1", "task": "binary_classification",
        "inputs": to_json((TensorSpec("hu", "float32", ("N", PATCH, PATCH, 1), units="HU", range=tiny.CT_RANGE,
                                      facts=facts),)),
        "outputs": to_json((TensorSpec("probability", "float32", ("N", 1)),)),
        "labels": ["no_nodule", "nodule"],
        "decision": to_json(Decision(score_output="probability", positive_label="nodule", threshold=threshold)),
    }


def patch_graph(name: str = "tiny_cnn", *, seed: int = 0, entry: str = "reshape", flatten: str = "nhwc",
                pads: int = 0, ceil_mode: int = 0, spatial_bias: bool = False, threshold: float = 0.5,
                doc: dict[str, Any] | None = None) -> bytes:
    """The patch graph. ``entry``: ``reshape`` (tf2onnx with one channel) or ``transpose``; ``flatten``: ``nhwc``
    (Keras: a Transpose before the flatten) or ``nchw`` (no Transpose: the flatten reads channels first).
    ``pads``, ``ceil_mode``, ``spatial_bias`` make graphs a whole-image pass is NOT equal to (to test refusal)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(np.array([-1, 1, PATCH, PATCH], np.int64), "to_nchw_shape"),
             numpy_helper.from_array(np.array([1 / w for _, w in WINDOWS], np.float32).reshape(3, 1, 1, 1), "win_w"),
             numpy_helper.from_array(np.array([-(lv - w / 2) / w for lv, w in WINDOWS], np.float32), "win_b"),
             numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float32), "one"),
             numpy_helper.from_array(np.zeros((1, 1, 1, 1), np.float32), "zero")]
    nodes = [helper.make_node("Reshape", ["hu", "to_nchw_shape"], ["x0"], name="ct_windows/BiasAdd__6")
             if entry == "reshape" else helper.make_node("Transpose", ["hu"], ["x0"], perm=[0, 3, 1, 2], name="nchw"),
             helper.make_node("Conv", ["x0", "win_w", "win_b"], ["w0"], name="ct_windows/BiasAdd"),
             helper.make_node("Relu", ["w0"], ["w1"], name="window_clip/Relu"),
             helper.make_node("Min", ["w1", "one"], ["w2"], name="window_clip/Minimum"),
             helper.make_node("Max", ["w2", "zero"], ["window_clip/out"], name="window_clip/clip_by_value")]
    prev, c_in, size = "window_clip/out", 3, PATCH
    for i, c in enumerate(CHANNELS):
        w = (rng.standard_normal((c, c_in, 3, 3)) * np.sqrt(2.0 / (9 * c_in))).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"conv{i}_w"),
                  numpy_helper.from_array((rng.standard_normal(c) * 0.05).astype(np.float32), f"conv{i}_b")]
        nodes += [helper.make_node("Conv", [prev, f"conv{i}_w", f"conv{i}_b"], [f"c{i}"], name=f"conv{i}",
                                   kernel_shape=[3, 3], pads=[pads] * 4),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}"),
                  helper.make_node("MaxPool", [f"r{i}"], [f"p{i}"], name=f"pool{i}", kernel_shape=[2, 2],
                                   strides=[2, 2], ceil_mode=ceil_mode)]
        prev, c_in, size = f"p{i}", c, (size - 2 + 2 * pads) // 2
    if spatial_bias:  # a constant that varies over positions: windows would see different parts of it
        inits.append(numpy_helper.from_array(rng.standard_normal((1, 1, size, size)).astype(np.float32), "pos"))
        nodes.append(helper.make_node("Add", [prev, "pos"], ["pos_out"], name="position_bias"))
        prev = "pos_out"
    features = c_in * size * size
    if flatten == "nhwc":
        nodes.append(helper.make_node("Transpose", [prev], ["nhwc"], perm=[0, 2, 3, 1], name="Transpose__56"))
        prev = "nhwc"
    inits += [numpy_helper.from_array(np.array([-1, features], np.int64), "flat_shape"),
              numpy_helper.from_array((rng.standard_normal((features, DENSE)) / np.sqrt(features)).astype(np.float32),
                                      "dense_w"),
              numpy_helper.from_array((rng.standard_normal(DENSE) * 0.1).astype(np.float32), "dense_b"),
              numpy_helper.from_array((rng.standard_normal((DENSE, 1)) * 2).astype(np.float32), "out_w"),
              numpy_helper.from_array(np.zeros(1, np.float32), "out_b")]
    nodes += [helper.make_node("Reshape", [prev, "flat_shape"], ["flat"], name="flatten/Reshape"),
              helper.make_node("MatMul", ["flat", "dense_w"], ["d0"], name="dense/MatMul"),
              helper.make_node("Add", ["d0", "dense_b"], ["d1"], name="dense/BiasAdd"),
              helper.make_node("Relu", ["d1"], ["d2"], name="dense/Relu"),
              helper.make_node("MatMul", ["d2", "out_w"], ["o0"], name="probability/MatMul"),
              helper.make_node("Add", ["o0", "out_b"], ["o1"], name="probability/Add"),
              helper.make_node("Sigmoid", ["o1"], ["probability"], name="probability/Sigmoid")]
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("hu", TensorProto.FLOAT,
                                                                          ["N", PATCH, PATCH, 1])],
                              [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["N", 1])],
                              initializer=inits)
    onx = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onx.ir_version = 8
    for k, v in {"medinfer.name": name, "medinfer.version": "0.0.1",
                 "medinfer.contract_sha256": contract_digest(doc or contract(name, threshold))}.items():
        prop = onx.metadata_props.add()
        prop.key, prop.value = k, v
    onnx.checker.check_model(onx)
    return onx.SerializeToString()


def ct_image(shape: tuple[int, int], seed: int = 1) -> np.ndarray:
    """A CT-like HU image: air outside a body disc, soft tissue with blobs of lung and bone, clipped to the range."""
    rng = np.random.default_rng(seed)
    rr, cc = np.mgrid[:shape[0], :shape[1]]
    body = np.hypot(rr - shape[0] / 2, cc - shape[1] / 2) < 0.45 * min(shape)
    hu = np.where(body, 40.0, -1000.0) + rng.normal(0, 30, shape)
    for _ in range(6):
        r, c, radius = rng.uniform(0, shape[0]), rng.uniform(0, shape[1]), rng.uniform(5, 30)
        hu[np.hypot(rr - r, cc - c) < radius] = rng.choice([-850.0, 700.0])
    return np.clip(hu, *tiny.CT_RANGE).astype(np.float32)


GUARD_THRESHOLD = 1.0  # the guarded bundle's domain threshold: windows mostly of air or bone are out of the domain


def hu_guard() -> Any:
    """A domain guard of the CT's kind, on the HU statistics the whole-slice graph computes per window:
    2 x |mean HU / 1000 + 0.3| (windows mostly of soft tissue score < 1, windows mostly of air or bone > 1)."""
    from medinfer.train import patch_stats
    from medinfer.train.domain import DomainGuard, Part

    part = Part("zscore", "hu_stats", {"columns": np.array([0]), "mean": np.array([-0.3]),
                                       "inv_sd": np.array([2.0])}, label="mean HU")
    return DomainGuard([part], "2 x |mean HU / 1000 + 0.3| (test)",
                       lambda X: {"hu_stats": patch_stats.features(X)}, sources={"hu_stats": "@patch_stats:hu"})


#: The tiny guard (``build(..., guard=...)``): a window's domain score is |mean HU + 300| / 400 (0 for a patch of
#: lung-like mean; air and soft tissue about 1, a patch shifted by +1024 HU more than 2.5).
GUARD_CENTRE, GUARD_SCALE = -300.0, 400.0


def guard_reference(patches: np.ndarray) -> np.ndarray:
    """The tiny guard in numpy, per patch (N, P, P, 1) -> (N,)."""
    return np.abs(patches.astype(np.float64).mean(axis=(1, 2, 3)) - GUARD_CENTRE) / GUARD_SCALE


def _guard_nodes(source: str, output: str, pooled: bool) -> tuple[list[Any], list[Any]]:
    """Nodes computing the tiny guard: on patches (ReduceMean), or per window of a whole image in one pass
    (AveragePool over each window at the trunk's 8 px cell, then every ``stride_cells``-th position): the same
    windows the whole-slice graph scores, row-major."""
    from onnx import helper, numpy_helper

    inits = [numpy_helper.from_array(np.array(-GUARD_CENTRE, np.float32), "guard_shift"),
             numpy_helper.from_array(np.array(GUARD_SCALE, np.float32), "guard_scale")]
    if not pooled:
        nodes = [helper.make_node("ReduceMean", [source], ["guard_mean"], axes=[1, 2, 3], keepdims=0)]
    else:
        inits += [numpy_helper.from_array(np.array([0, 0], np.int64), "guard_starts"),
                  numpy_helper.from_array(np.array([1 << 30, 1 << 30], np.int64), "guard_ends"),
                  numpy_helper.from_array(np.array([2, 3], np.int64), "guard_axes"),
                  numpy_helper.from_array(np.array([-1], np.int64), "guard_flat")]
        nodes = [helper.make_node("Transpose", [source], ["guard_nchw"], perm=[0, 3, 1, 2]),
                 helper.make_node("AveragePool", ["guard_nchw"], ["guard_pool"], kernel_shape=[PATCH, PATCH],
                                  strides=[8, 8]),
                 helper.make_node("Concat", ["stride_cells", "stride_cells"], ["guard_steps"], axis=0),
                 helper.make_node("Slice", ["guard_pool", "guard_starts", "guard_ends", "guard_axes", "guard_steps"],
                                  ["guard_windows"]),
                 helper.make_node("Reshape", ["guard_windows", "guard_flat"], ["guard_mean"])]
    nodes += [helper.make_node("Add", ["guard_mean", "guard_shift"], ["guard_centred"]),
              helper.make_node("Abs", ["guard_centred"], ["guard_abs"]),
              helper.make_node("Div", ["guard_abs", "guard_scale"], [output])]
    return nodes, inits


def _with_guard(graph: bytes, pooled: bool) -> bytes:
    """``graph`` with the tiny guard's ``domain_score`` output (see :func:`_guard_nodes`)."""
    import onnx
    from onnx import TensorProto, helper

    onx = onnx.load_from_string(graph)
    nodes, inits = _guard_nodes("hu", "domain_score", pooled)
    onx.graph.node.extend(nodes)
    onx.graph.initializer.extend(inits)
    onx.graph.output.append(helper.make_tensor_value_info("domain_score", TensorProto.FLOAT, ["K" if pooled else "N"]))
    onnx.checker.check_model(onx)
    return onx.SerializeToString()


def build(folder: Path, *, name: str = "tiny_cnn", slice_variant: bool = True, max_elements: int = 640 * 640,
          threshold: float | None = None, guarded: bool = False, guard: float | None = None,
          slice_guard: bool = True) -> Path:
    """A CT bundle with the tiny CNN (``default``) and, by default, its whole-slice variant ``slice`` made by the
    exporter's own rewrite (medinfer.export.variants.whole_slice_graph). The threshold defaults to the median golden
    score (both labels occur).

    ``guarded``: both graphs carry :func:`hu_guard` as the exporter adds it (``domain_score`` per patch; per window
    and ``domain_score_slice`` in the slice variant), threshold :data:`GUARD_THRESHOLD`.

    ``guard``: a domain threshold for the hand-built tiny guard instead — the patch graph then has its
    ``domain_score`` output (:func:`guard_reference`) and the manifest its ``domain`` section, and the slice variant
    (unless ``slice_guard=False``) the same score per window, as its contract declares (an output named like the
    manifest's ``domain.output``, one value per window)."""
    import onnxruntime as ort
    from medinfer.export.variants.whole_slice import GOLDEN_SIDE, _mosaic, slice_contract
    from medinfer.export.variants.whole_slice_graph import fcn_graph
    from medinfer.manifest import Domain

    patches = np.stack([ct_image((PATCH, PATCH), seed)[:, :, None] for seed in range(2, 6)])
    probe = ort.InferenceSession(patch_graph(name), providers=["CPUExecutionProvider"])
    golden_scores = probe.run(None, {"hu": patches})[0]
    if threshold is None:
        threshold = float(np.float32(np.median(golden_scores)))
    doc = contract(name, threshold)
    domain = None
    if guard is not None:
        doc["outputs"] = [*doc["outputs"], *to_json((TensorSpec("domain_score", "float32", ("N",)),))]
        domain = Domain(output="domain_score", threshold=guard, coverage=0.99, method="|mean HU + 300| / 400 (test)")
    graph = patch_graph(name, threshold=threshold, doc=doc)
    if guard is not None:
        graph = _with_guard(graph, pooled=False)
    if guarded:
        import onnx
        from medinfer.export.domain_graph import add_domain_output

        onx = onnx.load_from_string(graph)
        add_domain_output(onx, hu_guard())
        doc["outputs"] += to_json((TensorSpec("domain_score", "float32", ("N",)),))
        next(p for p in onx.metadata_props if p.key == "medinfer.contract_sha256").value = contract_digest(doc)
        graph = onx.SerializeToString()
        domain = Domain(output="domain_score", threshold=GUARD_THRESHOLD, coverage=0.99, method=hu_guard().method,
                        calibration={"data": "none (test)"}, evaluation={})
    variants: dict[str, Variant] = {"default": Variant(file="model.onnx")}
    files = {}
    golden_in: dict[str, np.ndarray] = {"hu": patches}
    golden_out = {"probability": golden_scores}  # the guard's outputs are not golden outputs (as the exporter's)
    own_goldens = {}
    if slice_variant:
        from medinfer.schema import parse

        spec_in = parse(TensorSpec, doc["inputs"][0])
        outputs = tuple(parse(TensorSpec, o) for o in doc["outputs"])
        _, geo = fcn_graph(graph, input_name="hu", score_output="probability")
        inputs, outs = slice_contract(spec_in, outputs, "probability", geo, (2, 12), guarded=guarded)
        guarded_slice = guard is not None and slice_guard
        if guarded_slice:
            outs = (*outs, TensorSpec("domain_score", "float32", ("K",), description="per window"))
        draft = Variant(file="model.slice.onnx", inputs=inputs, outputs=outs, windows_of="default",
                        max_elements=max_elements)
        data, _ = fcn_graph(graph, input_name="hu", score_output="probability",
                            metadata={"medinfer.variant_contract_sha256": variant_contract_digest(draft)})
        if guarded:
            from medinfer.export.variants.whole_slice_guard import add_slice_guard

            data = add_slice_guard(data, hu_guard(), "hu", geo)
        if guarded_slice:
            data = _with_guard(data, pooled=True)
        image = _mosaic(patches, GOLDEN_SIDE)
        feeds = {"hu": image[None, :, :, None], "stride_cells": np.array([3], np.int64)}
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        names = [o.name for o in outs]
        out = dict(zip(names, session.run(names, feeds)))
        variants["slice"] = Variant(file="model.slice.onnx", precision="fp32", inputs=inputs, outputs=outs,
                                    windows_of="default", max_elements=max_elements,
                                    golden_digest=outputs_digest(out, tuple(out)), golden_atol=1e-5,
                                    parity={"max_abs_diff": 0.0, "decision_flips": 0, "windows": 0})
        files["model.slice.onnx"] = (data, "variant")
        own_goldens["slice"] = (feeds, out)
    from medinfer.export.writer import golden_npz, write_bundle
    from medinfer.manifest import Card

    from .fields import bundle_fields, synthetic_data

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fields = bundle_fields(
        doc, golden_out, description=f"{name}: tiny CNN of the seed CNN's shape family (random "
        "weights)", n_test=4, variants=variants, data=synthetic_data("synthetic CT-like images"),
        profile={"intra_op_num_threads": 1, "inter_op_num_threads": 1, "chunk": 64, "max_batch": 4096},
        card=Card(summary="tiny CNN", intended_use="tests only"), **({"domain": domain} if domain else {}))
    write_bundle(folder, fields, {"model.onnx": (graph, "model"), **files,
                                  "golden.npz": golden_npz(golden_in, golden_out, own_goldens)})
    return folder
