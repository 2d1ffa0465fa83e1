"""The whole-slice graph carries the patch model's domain guard: each window's domain score equals the patch graph's
on that window, the slice's is the upper median of the windows holding tissue, the variant's contract declares both,
and Model.predict / tools.ct_slice return them."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import onnx
import pytest
from medinfer.export.domain_graph import add_domain_output
from medinfer.export.variants.whole_slice_graph import FcnError, fcn_graph
from medinfer.export.variants.whole_slice_guard import DOMAIN_OUTPUTS, TISSUE, add_slice_guard, slice_score
from medinfer.manifest import Variant
from medinfer.train import patch_stats
from medinfer.train.domain import DomainGuard
from medinfer.train.spec import Dataset
from medinfer.train.specs.lung_nodule_cnn import LungNoduleCNN
from medinfer.windows import cut_patches, window_centres

from ..helpers import tiny_cnn
from .test_fcn import _session, _TinySpec


def _tissue_windows(seeds: range) -> np.ndarray:
    """100 px windows (stride 24) of CT-like images that hold tissue, as training patches do."""
    out = []
    for seed in seeds:
        image = tiny_cnn.ct_image((292, 292), seed)
        out.append(cut_patches(image, window_centres(image.shape, 24), 100, -1024.0))
    patches = np.concatenate(out)
    return patches[patch_stats.features(patches)[:, TISSUE] >= patch_stats.MIN_TISSUE]


@pytest.fixture(scope="module")
def guarded() -> tuple[bytes, DomainGuard]:
    """The tiny CNN with the CT spec's guard (HU statistics: kNN, z-scores, the tissue rule) in its graph."""
    patches = _tissue_windows(range(50, 56))
    ds = Dataset(X_train=patches, y_train=np.zeros(len(patches)), X_test=patches, y_test=np.zeros(len(patches)),
                 sources=(), split={})
    spec = LungNoduleCNN()
    guard = DomainGuard(spec.domain_parts(None, ds), "t", spec.domain_features(None)).calibrate(
        _tissue_windows(range(60, 63)))
    guard.sources = {"hu_stats": "@patch_stats:hu"}
    graph = onnx.load_from_string(tiny_cnn.patch_graph())
    add_domain_output(graph, guard)
    return graph.SerializeToString(), guard


def _windows(data: bytes, image: np.ndarray, k: int) -> dict[str, np.ndarray]:
    names = ["probability", "centres", *DOMAIN_OUTPUTS]
    return dict(zip(names, _session(data).run(names, {"hu": image[None, :, :, None], "stride_cells": np.array([k])})))


@pytest.mark.parametrize("shape,k", [((100, 100), 2), ((228, 260), 2), ((244, 292), 3), ((292, 196), 6)])
def test_each_window_gets_the_patch_guard_score_and_the_slice_its_median(guarded, shape, k: int) -> None:
    model, guard = guarded
    data, geo = fcn_graph(model, input_name="hu", score_output="probability")
    data = add_slice_guard(data, guard, "hu", geo)
    image = tiny_cnn.ct_image(shape, seed=7)
    image[: shape[0] // 3] = np.clip(image[: shape[0] // 3] - 1024.0, -1024, 3071)  # a band of wrong intercept
    out = _windows(data, image, k)
    patches = cut_patches(image, out["centres"], geo.patch, -1024.0)
    reference = _session(model).run(["domain_score"], {"hu": patches})[0]
    np.testing.assert_allclose(out["domain_score"], reference, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(out["domain_score"], guard.score(patches), rtol=2e-3, atol=2e-3)  # native too
    tissue = patch_stats.features(patches)[:, TISSUE]
    assert out["domain_score_slice"].shape == (1,)
    np.testing.assert_allclose(out["domain_score_slice"][0], slice_score(reference, tissue), rtol=1e-3, atol=1e-3)


def test_a_slice_of_another_calibration_is_out_of_domain_as_a_whole(guarded) -> None:
    model, guard = guarded
    data, geo = fcn_graph(model, input_name="hu", score_output="probability")
    data = add_slice_guard(data, guard, "hu", geo)
    threshold = 2.0  # each part's 99th percentile of the calibration windows is 1
    image = tiny_cnn.ct_image((292, 292), seed=9)
    assert _windows(data, image, 3)["domain_score_slice"][0] <= threshold
    rng = np.random.default_rng(0)
    shuffled = rng.permutation(image.reshape(-1)).reshape(image.shape)
    for wrong in (image + 1024.0, image - 2048.0, (image + 1024.0) * 2.0 - 1024.0, shuffled):
        assert _windows(data, np.clip(wrong, -1024, 3071), 3)["domain_score_slice"][0] > threshold
    assert slice_score(np.array([5.0, 1.0]), np.array([0.0, 0.0])) == 5.0  # no tissue: the largest window score


def test_a_guard_the_pass_cannot_compute_per_window_refuses_the_variant(guarded) -> None:
    model, guard = guarded
    data, geo = fcn_graph(model, input_name="hu", score_output="probability")
    other = dataclasses.replace(guard, sources={"hu_stats": "some_embedding"})
    with pytest.raises(FcnError, match="does not compute per window"):
        add_slice_guard(data, other, "hu", geo)


def test_the_gate_ships_the_guard_in_the_contract_and_refuses_a_wrong_one(guarded, monkeypatch) -> None:
    import medinfer.export.variants.whole_slice as slice_export
    from medinfer.export.variants import VariantJob
    from medinfer.manifest import SessionProfile

    model, guard = guarded
    spec = _TinySpec()
    X = np.stack([tiny_cnn.ct_image((100, 100), s)[:, :, None] for s in range(20, 40)])
    ds = Dataset(X_train=X, y_train=np.zeros(len(X)), X_test=X, y_test=np.zeros(len(X)), sources=(), split={})
    threshold = float(np.median(_session(model).run(["probability"], {"hu": X})[0]))

    def job() -> VariantJob:
        return VariantJob(spec, ds, model, "hu", X[:4], threshold, SessionProfile(intra_op_num_threads=1),
                          guard=guard, shipped={"default": Variant(file="model.onnx")})  # type: ignore[arg-type]

    variants, files, report, goldens = slice_export.build_slice_variants(job(), ["slice"])
    assert report["slice"]["shipped"], report["slice"].get("reason")
    assert [o.name for o in variants["slice"].outputs] == ["probability", "centres", *DOMAIN_OUTPUTS]
    assert all("domain_score_max_abs_diff" in s for s in report["slice"]["sets"].values())
    assert set(goldens["slice"][1]) == {"probability", "centres"}  # the guard: gated above, not a golden output

    def broken(data: bytes, guard: Any, input_name: str, geo: Any) -> bytes:  # windows one cell off
        shifted = dataclasses.replace(geo, cell=geo.cell * 2)
        return add_slice_guard(data, guard, input_name, shifted)

    monkeypatch.setattr(slice_export, "add_slice_guard", broken)
    variants, _, report, _ = slice_export.build_slice_variants(job(), ["slice"])
    assert not variants and "domain_score" in report["slice"]["reason"]


def test_a_slice_prediction_gives_each_window_its_domain_score_and_flag(tmp_path) -> None:
    """The runtime side of the contract: a whole-slice variant whose outputs hold domain_score keeps the bundle's
    domain section (Manifest.for_variant), so Prediction.domain_scores / in_domain are per window and the slice's
    score is among the outputs."""
    import medinfer
    from medinfer.export.variants.whole_slice_guard import guard_outputs
    from medinfer.manifest import Domain
    from medinfer.prediction import Prediction, PredictionMeta

    m = medinfer.load_manifest(tiny_cnn.build(tmp_path / "cnn"))
    slice_variant = dataclasses.replace(m.variants["slice"], outputs=m.variants["slice"].outputs + guard_outputs())
    domain_spec = dataclasses.replace(guard_outputs()[0], shape=("N",))
    m = dataclasses.replace(m, outputs=m.outputs + (domain_spec,), variants={**m.variants, "slice": slice_variant},
                            domain=Domain(output="domain_score", threshold=1.5, coverage=0.99, method="t"))
    contract = m.for_variant("slice")
    assert contract.domain is not None and contract.domain.threshold == 1.5
    meta = PredictionMeta.build(contract, "slice", "0" * 64, "0" * 64, "CPUExecutionProvider", every_output=True)
    assert meta.fetch == ("probability", "domain_score", "centres", "domain_score_slice")
    raw = [np.array([[0.2], [0.9], [0.4]], np.float32), np.array([0.5, 2.0, 1.5], np.float32),
           np.zeros((3, 2), np.int64), np.array([1.5], np.float32)]
    pred = Prediction(meta, raw, False)
    np.testing.assert_array_equal(pred.in_domain, [True, False, True])
    assert pred.outputs["domain_score_slice"][0] == 1.5 and len(pred.domain_scores) == len(pred.scores) == 3
