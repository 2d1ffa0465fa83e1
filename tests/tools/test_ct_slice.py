"""A whole CT slice in one convolutional pass (the 'slice' variant of a tiny CNN of the seed CNN's family): the
same windows, scores and labels as patch-by-patch on the DICOM grid, in bounded tiles; refused at strides off the
8 px grid; its own contract in the manifest, checked like the model's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import medinfer
import numpy as np
import pytest
from medinfer.tools import ct_slice, dicom

from ..helpers import tiny_cnn


@pytest.fixture(scope="module")
def cnn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_cnn.build(tmp_path_factory.mktemp("cnn") / "tiny_cnn")


def _patchwise(model: medinfer.Model, image: np.ndarray, stride: int) -> tuple[np.ndarray, medinfer.Prediction]:
    centres = dicom.window_centres(image.shape, stride)
    return centres, model.predict(dicom.cut_patches(image, centres, tiny_cnn.PATCH, -1024.0))


@pytest.mark.parametrize("stride", [16, 24, 48, 96])
def test_one_pass_gives_the_patch_by_patch_windows_scores_and_labels(cnn: Path, stride: int) -> None:
    patches, one_pass = medinfer.load(cnn), medinfer.load(cnn, variant="slice")
    image = tiny_cnn.ct_image((212, 251), seed=stride)
    centres, expected = _patchwise(patches, image, stride)  # the DICOM grid, air beyond the borders
    scores, labels = ct_slice.score_slice(one_pass, image, centres, stride, -1024.0)
    np.testing.assert_allclose(scores, expected.scores, rtol=0, atol=1e-6)
    assert labels == [str(x) for x in expected.labels]
    assert stride > 48 or {"nodule", "no_nodule"} <= set(labels)  # both decisions occur on the denser grids


def test_a_slice_beyond_the_per_call_bound_is_scored_in_tiles(tmp_path: Path) -> None:
    bundle = tiny_cnn.build(tmp_path / "small_calls", max_elements=200 * 200)
    patches, one_pass = medinfer.load(bundle), medinfer.load(bundle, variant="slice")
    image = tiny_cnn.ct_image((300, 260), seed=5)
    calls = []
    real = one_pass.predict

    def counted(x, **kw):
        calls.append(x["hu"].shape)
        return real(x, **kw)

    one_pass.predict = counted  # type: ignore[method-assign]
    centres, expected = _patchwise(patches, image, 24)
    scores, _ = ct_slice.score_slice(one_pass, image, centres, 24, -1024.0)
    np.testing.assert_allclose(scores, expected.scores, rtol=0, atol=1e-6)
    assert len(calls) > 1 and all(h * w <= 200 * 200 for _, h, w, _ in calls)
    with pytest.raises(medinfer.InputError, match="at most 40000"):
        real({"hu": image[None, :, :, None], "stride_cells": np.array([3])})  # the variant bounds a call itself


@pytest.mark.parametrize("stride", [25, 12, 8, 104])
def test_strides_off_the_cell_grid_or_outside_the_range_are_refused(cnn: Path, stride: int) -> None:
    one_pass = medinfer.load(cnn, variant="slice")
    image = tiny_cnn.ct_image((150, 150))
    with pytest.raises(medinfer.InputError, match=r"--patchwise"):
        ct_slice.score_slice(one_pass, image, dicom.window_centres(image.shape, stride), stride, -1024.0)
    with pytest.raises(medinfer.InputError, match="stride_cells"):
        one_pass.predict({"hu": image[None, :, :, None], "stride_cells": np.array([13])})


def test_the_slice_variant_has_its_own_contract_and_golden_self_test(cnn: Path) -> None:
    m = medinfer.load_manifest(cnn)
    entry = m.variants["slice"]
    assert entry.windows_of == "default" and ct_slice.slice_variant_of(m, None) == "slice"
    assert ct_slice.slice_variant_of(m, "slice") is None
    one_pass = medinfer.load(cnn, variant="slice")
    assert one_pass.input_names == ("hu", "stride_cells")
    assert one_pass.self_test().status in ("bit_exact", "within_tolerance")  # golden made with other threads
    assert one_pass.manifest.inputs[0].shape == (1, "H", "W", 1) and medinfer.load(cnn).manifest.inputs == m.inputs
    pred = one_pass.predict({"hu": tiny_cnn.ct_image((124, 148))[None, :, :, None], "stride_cells": np.array([3])})
    assert len(pred) == 2 * 3 and pred.outputs["centres"].tolist() == [[50, 50], [50, 74], [50, 98], [74, 50],
                                                                       [74, 74], [74, 98]]


def test_auto_takes_the_one_pass_variant_of_the_patch_variant_this_cpu_runs(cnn: Path) -> None:
    import dataclasses

    m = medinfer.load_manifest(cnn)
    prefers_fp32 = dataclasses.replace(m, profile=dataclasses.replace(m.profile, variant_by_cpu={"generic": "default"}))
    assert ct_slice.slice_variant_of(prefers_fp32, "auto") == "slice"  # every CPU is "generic" at least
    assert ct_slice.slice_variant_of(dataclasses.replace(m, profile=dataclasses.replace(m.profile, variant_by_cpu={})),
                                     "auto") == "slice"  # no preference: the fp32 graph's one-pass variant


def _edit_manifest(bundle: Path, edit) -> None:
    doc = json.loads((bundle / "manifest.json").read_text())
    edit(doc)
    (bundle / "manifest.json").write_text(json.dumps(doc))


def test_a_variant_contract_edited_after_export_is_refused(tmp_path: Path) -> None:
    import shutil

    bundle = tmp_path / "b"
    shutil.copytree(tiny_cnn.build(tmp_path / "src"), bundle)

    def widen(doc: dict) -> None:
        doc["variants"]["slice"]["inputs"][1]["range"] = [1, 100]  # e.g. to allow stride 8 without its gate

    _edit_manifest(bundle, widen)
    with pytest.raises(medinfer.IntegrityError, match="variant_contract_sha256"):
        medinfer.load(bundle, variant="slice")
    assert medinfer.load(bundle).variant == "default"  # the other variants are untouched

    def half(doc: dict) -> None:
        del doc["variants"]["slice"]["outputs"]

    _edit_manifest(bundle, half)
    with pytest.raises(medinfer.ManifestError, match="come together"):
        medinfer.load_manifest(bundle)


def test_the_dicom_path_takes_the_one_pass_variant_unless_patchwise(cnn: Path) -> None:
    pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    ct = get_testdata_file("CT_small.dcm")

    def run(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "medinfer", "predict", str(cnn), ct, "--json", *extra],
                              capture_output=True, text=True, timeout=120, check=False)

    one, patchwise = run(), run("--patchwise")
    assert one.returncode == 0 and patchwise.returncode == 0, one.stderr + patchwise.stderr
    a, b = json.loads(one.stdout), json.loads(patchwise.stdout)
    assert a["one_pass"]["variant"] == "slice" and "one_pass" not in b
    assert [(w["row"], w["col"], w["label"]) for w in a["windows"]] == [(w["row"], w["col"], w["label"])
                                                                       for w in b["windows"]]
    np.testing.assert_allclose([w["score"] for w in a["windows"]], [w["score"] for w in b["windows"]], atol=1e-6)
    refused = run("--stride", "25")
    assert refused.returncode == 5 and "--patchwise" in refused.stderr and "Traceback" not in refused.stderr
    assert run("--stride", "25", "--patchwise").returncode == 0


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny CNN with a domain guard on the HU statistics, in the patch graph and (per window and per slice) in
    its whole-slice variant, as the exporter adds them."""
    return tiny_cnn.build(tmp_path_factory.mktemp("guarded") / "tiny_cnn", guarded=True)


def test_one_pass_gives_each_window_the_patch_guards_score_and_flag(guarded: Path) -> None:
    from medinfer.export.variants.whole_slice_guard import TISSUE, slice_score
    from medinfer.train import patch_stats

    patches, one_pass = medinfer.load(guarded), medinfer.load(guarded, variant="slice")
    assert one_pass.self_test().status == "bit_exact"
    image = tiny_cnn.ct_image((230, 250), seed=5)
    centres, expected = _patchwise(patches, image, 24)
    got = ct_slice.score_slice_with_domain(one_pass, image, centres, 24, -1024.0)
    np.testing.assert_allclose(got.scores, np.asarray(expected.scores).reshape(-1), rtol=0, atol=1e-6)
    assert got.domain_scores is not None and got.in_domain is not None
    np.testing.assert_allclose(got.domain_scores, expected.domain_scores, rtol=1e-4, atol=1e-4)
    clear = np.abs(np.asarray(expected.domain_scores) - tiny_cnn.GUARD_THRESHOLD) > 1e-3  # not on the threshold
    np.testing.assert_array_equal(got.in_domain[clear], np.asarray(expected.in_domain)[clear])
    assert got.in_domain.any() and not got.in_domain.all()  # the image has windows of both kinds
    cut = dicom.cut_patches(image, centres, tiny_cnn.PATCH, -1024.0)
    want = slice_score(np.asarray(expected.domain_scores), patch_stats.features(cut)[:, TISSUE])  # one tile
    assert got.slice_domain_score == pytest.approx(want, rel=1e-4, abs=1e-4)
    assert got.slice_in_domain == (want <= tiny_cnn.GUARD_THRESHOLD)
    assert ct_slice.score_slice(one_pass, image, centres, 24, -1024.0)[1] == got.labels


def test_a_slice_in_tiles_is_out_of_domain_when_any_tile_is(guarded: Path, tmp_path: Path) -> None:
    bundle = tiny_cnn.build(tmp_path / "small_calls", guarded=True, max_elements=200 * 200)
    one_pass = medinfer.load(bundle, variant="slice")
    image = tiny_cnn.ct_image((300, 260), seed=5)
    image[:120] = -1000.0  # the first rows of tiles: air only, out of the domain as a whole
    tiles: list[float] = []
    real = one_pass.predict

    def recorded(x, **kw):
        pred = real(x, **kw)
        tiles.append(float(pred.outputs["domain_score_slice"][0]))
        return pred

    one_pass.predict = recorded  # type: ignore[method-assign]
    centres = dicom.window_centres(image.shape, 24)
    got = ct_slice.score_slice_with_domain(one_pass, image, centres, 24, -1024.0)
    whole = ct_slice.score_slice_with_domain(medinfer.load(guarded, variant="slice"), image, centres, 24, -1024.0)
    assert len(tiles) > 1 and got.slice_domain_score == max(tiles)
    assert got.slice_in_domain is False and min(tiles) <= tiny_cnn.GUARD_THRESHOLD < max(tiles)
    np.testing.assert_allclose(got.domain_scores, whole.domain_scores, rtol=1e-4, atol=1e-4)  # windows: same


def test_a_guard_without_one_row_per_window_is_refused_and_a_guardless_variant_gives_none(guarded: Path,
                                                                                          cnn: Path) -> None:
    one_pass = medinfer.load(guarded, variant="slice")
    image = tiny_cnn.ct_image((150, 150))
    centres = dicom.window_centres(image.shape, 24)
    real = one_pass.predict

    class Short:  # the model's own answer with one domain score missing (a broken bundle)
        def __init__(self, pred: medinfer.Prediction) -> None:
            self._pred = pred

        def __getattr__(self, name: str):
            return getattr(self._pred, name)

        @property
        def domain_scores(self) -> np.ndarray:
            return np.asarray(self._pred.domain_scores)[:-1]

    one_pass.predict = lambda x, **kw: Short(real(x, **kw))  # type: ignore[method-assign]
    with pytest.raises(medinfer.InferenceError, match="domain scores for"):
        ct_slice.score_slice_with_domain(one_pass, image, centres, 24, -1024.0)
    plain = ct_slice.score_slice_with_domain(medinfer.load(cnn, variant="slice"), image, centres, 24, -1024.0)
    assert plain.domain_scores is None and plain.slice_domain_score is None and len(plain.scores) == len(centres)
