"""lung_nodule_cnn beyond the registry-wide tests: simulated lesions on real CT, the operating threshold, user
data layouts, the Debian-packaged volume, and the built bundle's graph contract (HU in, windows in the graph)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import medinfer
import numpy as np
import pytest
from medinfer.tools import dicom
from medinfer.train.datasets import ct, lesions, sources, user_images
from medinfer.train.specs.lung_nodule_cnn import WINDOWS, choose_threshold, edge_inputs

pydicom = pytest.importorskip("pydicom")
from pydicom.data import get_testdata_file  # noqa: E402

CT = Path(get_testdata_file("CT_small.dcm"))
MR = Path(get_testdata_file("MR_small.dcm"))


# -- lesions on real CT -----------------------------------------------------------------------------------
def test_simulated_nodules_on_real_ct_are_deterministic_and_in_range() -> None:
    slices = ct.load_slices("pydicom")
    assert slices[0].hu.min() == -896.0 and slices[0].hu.max() == 1167.0
    a = lesions.make_patches(slices, 24, np.random.default_rng(3))
    b = lesions.make_patches(slices, 24, np.random.default_rng(3))
    np.testing.assert_array_equal(a.X, b.X)
    assert a.X.shape == (24, 100, 100, 1) and a.X.dtype == np.float32
    assert a.X.min() >= ct.HU_MIN and a.X.max() <= ct.HU_MAX
    assert set(np.unique(a.y)) == {0, 1}
    assert (a.diameter_mm[a.y == 1] >= 5).all() and (a.diameter_mm[a.y == 0] == 0).all()


def test_a_nodule_changes_the_patch_near_its_centre() -> None:
    rng = np.random.default_rng(0)
    background = np.full((100, 100), -850.0, dtype=np.float32)  # lung-like parenchyma
    patch = background.copy()
    lesions.add_nodule(patch, rng, spacing_mm=0.7)
    changed = np.abs(patch - background) > 100
    rows, cols = np.nonzero(changed)
    centre = np.hypot(rows.mean() - 50, cols.mean() - 50)
    assert changed.sum() > 20 and centre <= lesions.CENTRE_RADIUS + 3


def test_threshold_keeps_target_sensitivity_and_avoids_ties() -> None:
    rng = np.random.default_rng(1)
    y = np.r_[np.ones(50, int), np.zeros(50, int)]
    scores = np.r_[rng.uniform(0.3, 1.0, 50), rng.uniform(0.0, 0.6, 50)]
    t, why = choose_threshold(scores, y, 0.9)
    assert np.mean(scores[y == 1] >= t) >= 0.9
    assert not np.any(scores == t) and "sensitivity" in why
    assert choose_threshold(scores[y == 1], y[y == 1], 0.9)[0] == 0.5  # one class only: documented default


def test_edge_patches_cover_air_bone_and_the_hu_limits() -> None:
    edge = edge_inputs()
    assert edge.shape[1:] == (100, 100, 1)
    per_patch = {(float(e.min()), float(e.max())) for e in edge}
    assert {(-1000.0, -1000.0), (1500.0, 1500.0), (ct.HU_MIN, ct.HU_MIN), (ct.HU_MAX, ct.HU_MAX)} <= per_patch


# -- user-supplied data -----------------------------------------------------------------------------------
def test_user_folder_of_png_and_labels_round_trips(tmp_path: Path) -> None:
    patches = lesions.make_patches(ct.load_slices("pydicom"), 9, np.random.default_rng(0))
    X = np.round(patches.X)
    splits = ["train"] * 5 + ["validation"] * 2 + ["test"] * 2
    user_images.write_example_folder(tmp_path / "mine", X, patches.y, splits)
    ds, val = user_images.load(tmp_path / "mine")
    np.testing.assert_array_equal(ds.X_train, X[:5])
    np.testing.assert_array_equal(ds.y_test, patches.y[7:])
    assert val is not None and len(val[1]) == 2
    assert ds.sources[0].package == "user-supplied" and len(ds.sources[0].sha256) == 64


def test_medmnist_npz_layout(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = {}
    for part, n in (("train", 6), ("val", 2), ("test", 3)):
        arrays[f"{part}_images"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        arrays[f"{part}_labels"] = np.arange(n).reshape(n, 1) % 3
    np.savez(tmp_path / "nodulemnist.npz", **arrays)
    ds, val = user_images.load(tmp_path / "nodulemnist.npz", positive_class=2)
    assert ds.X_train.shape == (6, 100, 100, 1) and ds.X_test.shape == (3, 100, 100, 1)
    assert ds.y_train.tolist() == [0, 0, 1, 0, 0, 1] and val is not None
    assert ds.X_train.min() >= user_images.LUNG_WINDOW[0] and ds.X_train.max() <= user_images.LUNG_WINDOW[1]
    np.savez(tmp_path / "bad.npz", images=np.zeros((1, 28, 28)))
    with pytest.raises(ValueError, match="not a MedMNIST .npz: missing"):
        user_images.load(tmp_path / "bad.npz")


def test_deb_source_needs_apt_and_says_how_to_do_without(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MEDINFER_DATA", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))  # no apt-get, no dpkg-deb
    src = sources.get_source("invesalius_cranium")
    assert src.kind == "deb" and src.provenance().package == "debian:invesalius-examples"
    with pytest.raises(sources.DataFetchError, match="apt-get and dpkg-deb are not available.*copy"):
        sources.fetch("invesalius_cranium")


# -- the built bundles ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_cnn_bundle_takes_hu_and_windows_inside_the_graph(built) -> None:
    art, path = built("lung_nodule_cnn")
    m = medinfer.load_manifest(path)
    facts = m.inputs[0].facts
    assert m.inputs[0].shape == ("N", 100, 100, 1) and m.inputs[0].units == "HU"
    assert facts["modality"] == "CT" and set(facts["windows"]) == {"lung", "mediastinal", "bone"}
    import keras

    windows = keras.Model(art.model.input, art.model.get_layer("window_clip").output)
    hu = np.array([-1350.0, -600.0, 40.0, 400.0, 1500.0], dtype=np.float32)
    got = windows.predict(np.broadcast_to(hu[:, None, None, None], (5, 100, 100, 1)), verbose=0)[:, 0, 0, :]
    expected = np.stack([np.clip((hu - (lv - w / 2)) / w, 0, 1) for _, lv, w in WINDOWS], axis=1)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    card = (path / "model_card.md").read_text().lower()
    assert "simulated lesions on real ct background" in card
    assert "simulated lesions on real ct background" in m.data.description.lower()
    assert {"plots/roc.png", "plots/examples.png", "plots/calibration.png"} <= set(m.files)
    assert m.decision.threshold == art.point.threshold and "validation" in m.decision.rationale
    assert m.parity.sets["edge"]["decision_flips"] == 0


def test_cli_scores_a_ct_slice_with_a_sliding_window_and_writes_an_overlay(built, tmp_path: Path) -> None:
    _, bundle = built("lung_nodule_cnn")
    overlay = tmp_path / "heat.png"
    cmd = [sys.executable, "-m", "medinfer", "predict", str(bundle), str(CT), "--json", "--overlay", str(overlay)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["modality"] == "CT" and (out["hu_min"], out["hu_max"]) == (-896.0, 1167.0)
    assert len(out["windows"]) == len(dicom.window_centres((128, 128), 24))
    image = pytest.importorskip("PIL.Image")
    width, height = image.open(overlay).size
    assert height >= 512 and width > 512 + 60  # the 128 x 128 slice at 4x, a colour bar beside it

    model = medinfer.load(bundle)
    one = dicom.predict_file(model, CT, centre=(64, 70))
    patch = dicom.cut_patches(dicom.read_ct(CT).hu, np.array([[64, 70]]), 100, -1024.0)
    assert one.scores[0] == pytest.approx(float(model.predict(patch).scores[0]), abs=1e-7)

    mr = subprocess.run([sys.executable, "-m", "medinfer", "predict", str(bundle), str(MR)],
                        capture_output=True, text=True, timeout=120, check=False)
    assert mr.returncode == 5 and "Modality 'MR'" in mr.stderr


def test_the_bundle_ships_gated_slice_variants_and_the_dicom_path_uses_them(built) -> None:
    """Issue 16: the whole-slice graphs (fp32, int8) ship only through their gate against patch-by-patch fp32 on
    held-out slices, and `medinfer predict BUNDLE scan.dcm` takes them by default with the same windows and decisions
    as --patchwise."""
    art, bundle = built("lung_nodule_cnn")
    m = medinfer.load_manifest(bundle)
    assert m.variants["slice"].windows_of == "default"
    shipped = ["slice"]
    gate = m.parity.variants["slice_int8"]
    if "int8" not in m.variants:  # on the tiny test sample the int8 variant may miss its clinical budget
        assert "'int8' variant" in gate["reason"] and "slice_int8" not in m.variants and not gate["shipped"]
    else:  # then slice_int8 ships exactly when its own gate passes (the full build refuses it by that gate)
        within = gate["max_abs_diff"] <= gate["tolerance"]["atol"] and \
            gate["decision_flips"] <= gate["tolerance"]["max_decision_flips"]
        assert gate["shipped"] == within == ("slice_int8" in m.variants), gate
        if within:
            assert m.variants["slice_int8"].windows_of == "int8"
            shipped.append("slice_int8")
        else:
            assert "exceeds tolerance" in gate["reason"] or "flip" in gate["reason"], gate["reason"]
    for key in shipped:
        gate = m.variants[key].parity
        assert gate["decision_flips"] == 0 and gate["max_abs_diff"] <= gate["tolerance"]["atol"]
        assert any(name.startswith("slice pydicom_ct_small") for name in gate["sets"])  # a real held-out slice
        assert any(name.startswith("mosaic of held-out patches") for name in gate["sets"])
        assert m.parity.variants[key]["shipped"]
    assert m.variants["slice"].parity["max_abs_diff"] <= 1e-5
    for variant, patch_variant in ((None, None), ("int8", "int8"))[:len(shipped)]:
        extra = ["--variant", variant] if variant else []
        runs = [subprocess.run([sys.executable, "-m", "medinfer", "predict", str(bundle), str(CT), "--json", *extra,
                                *flag], capture_output=True, text=True, timeout=120, check=False)
                for flag in ([], ["--patchwise"])]
        assert all(r.returncode == 0 for r in runs), runs[0].stderr + runs[1].stderr
        one, patchwise = (json.loads(r.stdout) for r in runs)
        assert one["one_pass"]["windows_of"] == (patch_variant or "default") and "one_pass" not in patchwise
        assert [w["label"] for w in one["windows"]] == [w["label"] for w in patchwise["windows"]]
        np.testing.assert_allclose([w["score"] for w in one["windows"]], [w["score"] for w in patchwise["windows"]],
                                   atol=1e-5)


def test_one_pass_is_bit_identical_to_patch_by_patch_on_the_trained_cnn(built) -> None:
    """The whole-slice graph of the sample-trained CNN (trained weights, not a toy) gives exactly (max diff 0) the
    patch-by-patch scores and labels at aligned strides, on a real CT slice, a mosaic of it and a lung-like image
    with two simulated nodules (windows every 16, 24, 48 px).

    Why 0 and not a tolerance: the rewrite changes which rows the convolution and GEMM kernels compute, never the
    order in which any output sums its terms: the trunk's convolutions are the patch graph's own nodes, and the
    Dense layer keeps its weights' row order because the flatten reads channels last (asserted below: a channels-
    first flatten would permute the rows, and the sums with them). A worst-case bound for two summation orders
    (gamma_n = n u / (1 - n u) per dot product, carried through |W| layer by layer) exceeds 1.0 in score for this
    network (12 801-term sums), so it could never fail; equality is what is checked. Measured 0.0 on an AMD EPYC
    (benchmarks/results/slice.json) and an Intel Xeon with AMX."""
    import onnx
    from medinfer.tools.dicom import cut_patches, read_ct

    _, bundle = built("lung_nodule_cnn")
    graph = onnx.load(str(bundle / "model.slice.onnx"))
    assert "fcn/dense_weights" not in {i.name for i in graph.graph.initializer}  # rows kept in order
    patch, one = medinfer.load(bundle), medinfer.load(bundle, variant="slice")
    hu = read_ct(CT).hu.astype(np.float32)
    rng = np.random.default_rng(0)
    lung = (np.full((230, 250), -850.0) + rng.normal(0, 30, (230, 250))).astype(np.float32)
    for r, c in ((60, 70), (150, 170)):
        lesions.add_nodule(lung[r - 50:r + 50, c - 50:c + 50], rng, spacing_mm=0.7)
    images = {"ct": hu, "mosaic": np.block([[hu, hu[:, ::-1]], [hu[::-1], hu[::-1, ::-1]]]), "lung": lung}
    for name, image in images.items():
        for stride in (16, 24, 48):
            out = one.predict({"hu": image[None, :, :, None], "stride_cells": np.array([stride // 8])})
            centres = out.outputs["centres"]
            ref = patch.predict(cut_patches(image, centres, 100, -1024.0))
            assert len(centres) == len(ref.scores) >= 1
            np.testing.assert_array_equal(out.scores, ref.scores, err_msg=f"{name} @ {stride} px")
            assert list(out.labels) == list(ref.labels)
    assert medinfer.load_manifest(bundle).variants["slice"].parity["max_abs_diff"] == 0.0  # the export's gate
