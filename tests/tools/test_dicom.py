"""DICOM CT input in the runtime: HU conversion, refusals, sliding window, PNG overlay (pydicom's own files)."""

from __future__ import annotations

import io
from pathlib import Path

import medinfer
import numpy as np
import pytest
from medinfer.tools import dicom, overlay

pydicom = pytest.importorskip("pydicom")
from pydicom.data import get_testdata_file  # noqa: E402

CT = Path(get_testdata_file("CT_small.dcm"))
MR = Path(get_testdata_file("MR_small.dcm"))


def test_ct_small_is_read_in_hounsfield_units() -> None:
    image = dicom.read_ct(CT)
    ds = pydicom.dcmread(CT)
    expected = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert image.hu.shape == (128, 128) and image.hu.dtype == np.float32
    np.testing.assert_array_equal(image.hu, expected.astype(np.float32))
    assert (image.slope, image.intercept) == (1.0, -1024.0)
    assert image.hu.min() == -896.0 and image.hu.max() == 1167.0  # stored 128..2191, shifted by -1024


def test_mr_is_refused_by_modality() -> None:
    with pytest.raises(medinfer.InputError, match=r"MR_small.dcm has Modality 'MR', but lung_nodule_cnn takes CT"):
        dicom.read_ct(MR, owner="lung_nodule_cnn")


@pytest.mark.parametrize("keep", [1000, 30000])
def test_truncated_files_are_refused(tmp_path: Path, keep: int) -> None:
    bad = tmp_path / "cut.dcm"
    bad.write_bytes(CT.read_bytes()[:keep])
    with pytest.raises(medinfer.InputError, match="truncated"):
        dicom.read_ct(bad)


def test_non_dicom_file_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "notes.dcm"
    bad.write_text("this is not a DICOM file\n" * 10)
    with pytest.raises(medinfer.InputError, match="is not a DICOM file"):
        dicom.read_ct(bad)
    with pytest.raises(medinfer.InputError, match="does not exist"):
        dicom.read_ct(tmp_path / "missing.dcm")


def test_unsupported_photometric_interpretation_is_refused(tmp_path: Path) -> None:
    ds = pydicom.dcmread(CT)
    ds.PhotometricInterpretation = "RGB"
    path = tmp_path / "rgb.dcm"
    ds.save_as(path)
    with pytest.raises(medinfer.InputError, match="PhotometricInterpretation 'RGB'"):
        dicom.read_ct(path)


def test_is_dicom_file_by_marker(tmp_path: Path) -> None:
    copy = tmp_path / "scan.bin"
    copy.write_bytes(CT.read_bytes())
    assert dicom.is_dicom_file(copy) and dicom.is_dicom_file(tmp_path / "x.dcm")
    (tmp_path / "a.npy").write_bytes(b"\x93NUMPY")
    assert not dicom.is_dicom_file(tmp_path / "a.npy")


def test_patches_cover_the_slice_and_pad_with_air() -> None:
    hu = np.arange(12 * 10, dtype=np.float32).reshape(12, 10)
    centres = dicom.window_centres(hu.shape, 4)
    assert centres.min() >= 0 and centres[:, 0].max() < 12 and centres[:, 1].max() < 10
    patches = dicom.cut_patches(hu, np.array([[0, 0], [6, 5]]), 4, -1024.0)
    assert patches.shape == (2, 4, 4, 1)
    assert patches[0, 0, 0, 0] == -1024.0 and patches[0, 2, 2, 0] == hu[0, 0]
    np.testing.assert_array_equal(patches[1, :, :, 0], hu[4:8, 3:7])


def test_png_encoder_round_trips_through_an_independent_decoder() -> None:
    image = pytest.importorskip("PIL.Image")
    rgb = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    decoded = np.asarray(image.open(io.BytesIO(overlay.png_bytes(rgb))).convert("RGB"))
    np.testing.assert_array_equal(decoded, rgb)


def test_a_bundle_without_ct_input_refuses_dicom(tiny_bundle_ro: Path) -> None:
    model = medinfer.load(tiny_bundle_ro)
    assert dicom.dicom_input(model.manifest) is None
    with pytest.raises(medinfer.InputError, match="does not take DICOM input"):
        dicom.predict_file(model, CT)


