"""Hostile DICOM: corrupt rescale values, truncated pixel data, corrupt elements, decompression bombs, bad strides
and unwritable overlays each get a typed refusal — never a scored slice of garbage, a traceback or minutes of CPU."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import medinfer
import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
from pydicom.data import get_testdata_file  # noqa: E402
from pydicom.uid import DeflatedExplicitVRLittleEndian  # noqa: E402

CT = Path(get_testdata_file("CT_small.dcm"))
pytestmark = pytest.mark.hostile("DICOM files")


@pytest.fixture(scope="module")
def ct_model(lung_ct_bundle: Path) -> medinfer.Model:
    return medinfer.load(lung_ct_bundle)


def _edited(tmp_path: Path, edit) -> Path:
    ds = pydicom.dcmread(CT)
    edit(ds)
    out = tmp_path / "edited.dcm"
    ds.save_as(out)
    return out


def _raw_edit(tmp_path: Path, find: bytes, replace: bytes) -> Path:
    data = CT.read_bytes()
    assert find in data
    out = tmp_path / "raw.dcm"
    out.write_bytes(data.replace(find, replace, 1))
    return out


RESCALE = {
    "RescaleSlope inf": (lambda ds: setattr(ds, "RescaleSlope", "inf"), "RescaleSlope inf"),
    "RescaleSlope 1e30": (lambda ds: setattr(ds, "RescaleSlope", "1e30"), "outside"),
    "RescaleSlope 0": (lambda ds: setattr(ds, "RescaleSlope", "0"), "RescaleSlope 0"),
    "RescaleIntercept -1e9": (lambda ds: setattr(ds, "RescaleIntercept", "-1e9"), "outside"),
    "RescaleSlope two values": (lambda ds: setattr(ds, "RescaleSlope", ["1", "2"]), "values in RescaleSlope"),
    "declares 8192 x 8192 pixels": (lambda ds: (setattr(ds, "Rows", 8192), setattr(ds, "Columns", 8192)),
                                    "8192 x 8192"),
    "Modality MR": (lambda ds: setattr(ds, "Modality", "MR"), "Modality 'MR'"),
}


@pytest.mark.parametrize("case", list(RESCALE))
def test_corrupt_values_are_refused_not_scored(ct_model, tmp_path: Path, case: str) -> None:
    from medinfer.tools.dicom import predict_file

    edit, words = RESCALE[case]
    path = _edited(tmp_path, edit)
    with pytest.raises(medinfer.InputError, match=words):
        predict_file(ct_model, path)


def test_the_real_rescale_is_reported_as_read(ct_model, tmp_path: Path) -> None:
    from medinfer.tools.dicom import predict_file

    path = _edited(tmp_path, lambda ds: setattr(ds, "RescaleSlope", "1.0"))
    result = predict_file(ct_model, path).to_dict()
    assert result["rescale"] == {"slope": 1.0, "intercept": -1024.0}


def test_a_slope_that_is_not_a_number_is_refused(ct_model, tmp_path: Path) -> None:
    from medinfer.tools.dicom import predict_file

    path = _raw_edit(tmp_path, b"(\x00S\x10DS\x02\x001 ", b"(\x00S\x10DS\x02\x00x ")  # RescaleSlope "1 " -> "x "
    with pytest.raises(medinfer.InputError, match="RescaleSlope|corrupt"):
        predict_file(ct_model, path)


def _pixel_data_end(data: bytes) -> int:
    import struct

    at = data.rfind(b"\xe0\x7f\x10\x00OW")  # (7FE0,0010) PixelData, explicit VR little endian
    return at + 12 + struct.unpack("<I", data[at + 8:at + 12])[0]


@pytest.mark.parametrize("missing", [1, 2, 1000])
def test_truncated_pixel_data_is_refused(ct_model, tmp_path: Path, missing: int) -> None:
    """The file ends ``missing`` bytes before its pixel data does (e.g. the last pixel byte is gone)."""
    from medinfer.tools.dicom import predict_file

    data = CT.read_bytes()
    short = tmp_path / "short.dcm"
    short.write_bytes(data[:_pixel_data_end(data) - missing])
    with pytest.raises(medinfer.InputError, match="truncated|corrupt"):
        predict_file(ct_model, short)


@pytest.mark.parametrize(("find", "replace"), [(b"1.2.840.10008.1.2.1\x00", b"9.9.9.9.9.9.9.9.9.9\x00"),
                                              (b"CS\x02\x00CT", b"XX\x02\x00CT")])
def test_corrupt_elements_are_refused(ct_model, tmp_path: Path, find: bytes, replace: bytes) -> None:
    """A corrupted transfer syntax UID; a corrupted value representation on Modality."""
    from medinfer.tools.dicom import predict_file

    path = _raw_edit(tmp_path, find, replace)
    with pytest.raises(medinfer.InputError):
        predict_file(ct_model, path)


def test_a_small_deflated_file_declaring_a_huge_image_is_refused_before_decoding(ct_model, tmp_path: Path) -> None:
    from medinfer.tools.dicom import predict_file

    ds = pydicom.dcmread(CT)
    ds.Rows = ds.Columns = 8192
    ds.PixelData = np.zeros((8192, 8192), np.int16).tobytes()
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    path = tmp_path / "bomb.dcm"
    ds.save_as(path, enforce_file_format=True)
    assert path.stat().st_size < 2_000_000
    with pytest.raises(medinfer.InputError, match="8192 x 8192"):
        predict_file(ct_model, path)


@pytest.mark.parametrize("stride", [-5, 0, 100_000])
def test_strides_out_of_range_are_refused(ct_model, stride: int) -> None:
    from medinfer.tools.dicom import predict_file

    with pytest.raises(medinfer.InputError, match="stride"):
        predict_file(ct_model, CT, stride=stride)


def test_too_many_windows_are_refused(ct_model) -> None:
    from medinfer.tools.dicom import predict_file

    with pytest.raises(medinfer.InputError, match="windows"):
        predict_file(ct_model, CT, stride=1, max_windows=1000)


def test_an_unwritable_overlay_is_refused_before_any_work(ct_model, tmp_path: Path) -> None:
    bundle = Path(ct_model.path)
    cmd = [sys.executable, "-m", "medinfer", "predict", str(bundle), str(CT), "--json", "--overlay",
           str(tmp_path / "no" / "such" / "folder" / "heat.png")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    # refused before any work (medinfer.writing.check_target), typed, exit 2; a write that fails after the scoring
    # still prints the scores (tests/tools/test_safe_outputs.py: the DICOM cases)
    assert proc.returncode == 2 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr
    assert io
