"""The whole-image rewrite of a patch CNN (export/variants/whole_slice_graph.py) and the slice variants' gate
(export/variants/whole_slice.py), on a tiny
CNN of the seed CNN's shape family: equal to patch-by-patch at window offsets on the 8 px grid, refused off it, and
refused for graphs where one pass would not be exact."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import onnxruntime as ort
import pytest
from medinfer.export.variants.whole_slice_graph import FcnError, fcn_graph
from medinfer.manifest import TensorSpec, Variant
from medinfer.schema import parse
from medinfer.windows import cut_patches

from ..helpers import tiny_cnn


def _session(data: bytes) -> Any:
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"])


def _patchwise(graph: bytes, image: np.ndarray, centres: np.ndarray) -> np.ndarray:
    return _session(graph).run(None, {"hu": cut_patches(image, centres, tiny_cnn.PATCH, -1024.0)})[0].reshape(-1)


@pytest.mark.parametrize("entry,flatten", [("reshape", "nhwc"), ("transpose", "nhwc"), ("reshape", "nchw")])
def test_one_pass_equals_patch_by_patch_at_aligned_offsets(entry: str, flatten: str) -> None:
    graph = tiny_cnn.patch_graph(entry=entry, flatten=flatten)
    data, geo = fcn_graph(graph, input_name="hu", score_output="probability")
    assert (geo.patch, geo.cell, geo.kernel, geo.offset) == (100, 8, (10, 10), 50)
    fcn = _session(data)
    for shape in ((100, 100), (131, 207), (244, 180)):
        image = tiny_cnn.ct_image(shape, seed=sum(shape))
        for k in (1, 2, 3, 5):
            scores, centres = fcn.run(None, {"hu": image[None, :, :, None], "stride_cells": np.array([k])})
            rows, cols = np.unique(centres[:, 0]), np.unique(centres[:, 1])
            np.testing.assert_array_equal(centres, np.stack(np.meshgrid(rows, cols, indexing="ij"), -1).reshape(-1, 2))
            # on the grid 50 + 8k i, every window whose 100 px lie inside the image among them (the valid convs
            # and floor pools never read a window's last 6 px, so a window may end up to 6 px past the image)
            for axis, got in enumerate((rows, cols)):
                inside = np.arange(50, shape[axis] - 49, 8 * k)
                np.testing.assert_array_equal(got[:len(inside)], inside)
                assert got[-1] + 44 <= shape[axis]  # its last read pixel: centre + 43
            np.testing.assert_allclose(scores.reshape(-1), _patchwise(graph, image, centres), rtol=0, atol=1e-6)


def test_windows_off_the_cell_grid_are_refused_because_one_pass_cannot_give_them() -> None:
    graph = tiny_cnn.patch_graph()
    data, geo = fcn_graph(graph, input_name="hu", score_output="probability")
    assert geo.stride_cells(24) == 3 and geo.stride_cells(8) == 1
    for stride in (25, 12, 4, 0):
        with pytest.raises(FcnError, match="multiple of the 8 px cell"):
            geo.stride_cells(stride)
    # why: a window 4 px off the grid splits the pools' 2x2 blocks differently: its score is none of the pass's
    image = tiny_cnn.ct_image((160, 160), seed=7)
    fcn = _session(data)
    scores, centres = fcn.run(None, {"hu": image[None, :, :, None], "stride_cells": np.array([1])})
    aligned = dict(zip(map(tuple, centres.tolist()), scores.reshape(-1).tolist()))
    off = _patchwise(graph, image, np.array([[54, 54]]))[0]
    assert min(abs(off - aligned[(50, 50)]), abs(off - aligned[(58, 58)])) > 1e-4
    # it takes another pass, on the input shifted by those 4 px, to get it exactly
    shifted, _ = fcn.run(None, {"hu": image[None, 4:, 4:, None], "stride_cells": np.array([1])})
    assert shifted.reshape(-1)[0] == pytest.approx(off, abs=1e-6)


@pytest.mark.parametrize("broken", [{"pads": 1}, {"ceil_mode": 1}, {"spatial_bias": True}])
def test_graphs_where_one_pass_would_not_be_exact_are_refused(broken: dict) -> None:
    with pytest.raises(FcnError):
        fcn_graph(tiny_cnn.patch_graph(**broken), input_name="hu", score_output="probability")


class _TinySpec:
    """The part of a ModelSpec the slice export reads, for the tiny CNN (no training framework involved)."""

    from medinfer.train.spec import ModelSpec as _Base

    name = "tiny_cnn"
    task = "binary_classification"
    labels = ("no_nodule", "nodule")
    positive_label = "nodule"
    score_output = "probability"
    variants: ClassVar[tuple[str, ...]] = ("slice",)
    variant_settings: ClassVar[dict[str, Any]] = {}
    scores = _Base.scores
    decisions = _Base.decisions
    positive = _Base.positive

    def __init__(self) -> None:
        from medinfer.train.spec import ParityTolerance

        self.parity = ParityTolerance(atol=1e-5)
        doc = tiny_cnn.contract()
        self._inputs = (parse(TensorSpec, doc["inputs"][0]),)
        self._outputs = tuple(parse(TensorSpec, o) for o in doc["outputs"])

    def inputs(self, _ds: Any) -> tuple[TensorSpec, ...]:
        return self._inputs

    def outputs(self) -> tuple[TensorSpec, ...]:
        return self._outputs

    def extra_outputs(self) -> tuple[TensorSpec, ...]:
        return ()

    def parity_slices(self, _ds: Any) -> dict[str, np.ndarray]:
        return {"ct-like 230x250": tiny_cnn.ct_image((230, 250), seed=11)}


def _dataset() -> Any:
    from medinfer.train.spec import Dataset

    X = np.stack([tiny_cnn.ct_image((100, 100), seed)[:, :, None] for seed in range(20, 40)])
    return Dataset(X_train=X, y_train=np.zeros(len(X)), X_test=X, y_test=np.zeros(len(X)), sources=(), split={})


def test_the_slice_gate_ships_an_exact_graph_and_refuses_a_wrong_one(monkeypatch) -> None:
    import medinfer.export.variants.whole_slice as slice_export
    from medinfer.export.variants import VariantJob
    from medinfer.manifest import SessionProfile
    from onnx import numpy_helper

    spec, ds, graph = _TinySpec(), _dataset(), tiny_cnn.patch_graph()
    threshold = float(np.median(_session(graph).run(None, {"hu": ds.X_test})[0]))
    shipped = {"default": Variant(file="model.onnx")}
    job = VariantJob(spec, ds, graph, "hu", ds.X_test[:4], threshold, SessionProfile(intra_op_num_threads=1),
                     shipped=shipped)  # type: ignore[arg-type]
    variants, files, report, goldens = slice_export.build_slice_variants(job, ["slice"])
    assert report["slice"]["shipped"] and report["slice"]["decision_flips"] == 0
    assert report["slice"]["max_abs_diff"] <= 1e-6 and report["slice"]["windows"] > 300
    assert set(report["slice"]["sets"]) >= {"slice ct-like 230x250 @ 24 px", "mosaic of held-out patches 0..8 @ 16 px"}
    entry = variants["slice"]
    assert entry.windows_of == "default" and [i.name for i in entry.inputs] == ["hu", "stride_cells"]
    golden_in, golden_out = goldens["slice"]
    assert (set(golden_in), set(golden_out)) == ({"hu", "stride_cells"}, {"probability", "centres"})
    assert list(files) == ["model.slice.onnx"]

    real = slice_export.fcn_graph

    def wrong(model_bytes: bytes, **kwargs: Any) -> Any:  # a rewrite that mis-orders the Dense weights' rows
        import onnx

        data, geo = real(model_bytes, **kwargs)
        m = onnx.load_from_string(data)
        w = next(i for i in m.graph.initializer if i.name == "dense_w")
        w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w)[::-1].copy(), "dense_w"))
        return m.SerializeToString(), geo

    monkeypatch.setattr(slice_export, "fcn_graph", wrong)
    variants, files, report, _ = slice_export.build_slice_variants(job, ["slice"])
    assert not variants and not files
    assert not report["slice"]["shipped"] and "exceeds tolerance" in report["slice"]["reason"]


def test_outputs_off_the_score_path_do_not_stop_the_rewrite() -> None:
    """A bundle graph also computes e.g. the domain guard from the same input: the rewrite keeps only what the
    score needs (before, a second reader of the input refused every slice variant)."""
    import onnx
    from medinfer.export.domain_graph import add_domain_output
    from medinfer.train import domain

    graph = onnx.load_from_string(tiny_cnn.patch_graph())
    patches = tiny_cnn.ct_image((300, 300), seed=1)[None, :100, :100, None].repeat(4, 0)
    guard = domain.DomainGuard([domain.value_stats("input", patches)], "test", features=lambda X: {"input": X},
                               sources={"input": "hu"}).calibrate(patches)
    add_domain_output(graph, guard)
    with_guard = graph.SerializeToString()
    plain, _ = fcn_graph(tiny_cnn.patch_graph(), input_name="hu", score_output="probability")
    data, _ = fcn_graph(with_guard, input_name="hu", score_output="probability")
    image = tiny_cnn.ct_image((180, 200), seed=3)[None, :, :, None]
    feed = {"hu": image, "stride_cells": np.array([2])}
    for got, want in zip(_session(data).run(None, feed), _session(plain).run(None, feed)):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("atol,ships", [(1e-6, False), (0.5, True)])
def test_slice_int8_ships_only_through_its_own_gate(atol: float, ships: bool) -> None:
    """The int8 variant shipped, slice_int8 made from it: whether it ships is its own gate's decision against
    patch-by-patch fp32 (the full lung_nodule_cnn build refuses it this way). With a tolerance below int8's
    quantisation error the gate refuses it: no file, no manifest variant, the reason and the numbers in the report,
    the refusal in the progress log; with a tolerance above the error the same graph ships."""
    import dataclasses

    import medinfer.export.variants.whole_slice as slice_export
    from medinfer.export.variants import VariantJob
    from medinfer.manifest import SessionProfile
    from medinfer.train.variants import WholeSlice

    spec, ds, graph = _TinySpec(), _dataset(), tiny_cnn.patch_graph()
    spec.variants = ("slice", "slice_int8")
    spec.variant_settings = {"slice": WholeSlice(int8_atol=atol)}
    spec.parity = dataclasses.replace(spec.parity, max_decision_flips=10_000)  # only max abs diff decides here
    threshold = float(np.median(_session(graph).run(None, {"hu": ds.X_test})[0]))
    shipped = {"default": Variant(file="model.onnx"), "int8": Variant(file="model.int8.onnx", golden_atol=0.05)}
    progress: list[str] = []
    job = VariantJob(spec, ds, graph, "hu", ds.X_test[:4], threshold, SessionProfile(intra_op_num_threads=1),
                     progress=progress.append, shipped=shipped)  # type: ignore[arg-type]
    variants, files, report, _ = slice_export.build_slice_variants(job, ["slice", "slice_int8"])
    gate = report["slice_int8"]
    assert gate["max_abs_diff"] > 1e-6 and gate["tolerance"]["atol"] == atol  # int8 is not exact
    assert "slice" in variants and report["slice"]["shipped"]
    assert gate["shipped"] is ships and ("slice_int8" in variants) is ships
    assert ("model.slice.int8.onnx" in files) is ships
    if not ships:
        assert "exceeds tolerance" in gate["reason"]
        assert any("slice_int8 variant REFUSED by its gate" in line for line in progress), progress
    else:
        assert variants["slice_int8"].windows_of == "int8" and variants["slice_int8"].precision == "int8"
