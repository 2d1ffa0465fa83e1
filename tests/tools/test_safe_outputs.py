"""Output writers fail safe (issue 26): every writer error is typed with its exit code, only a regular file (or a
new name) is ever written or replaced, nothing partial survives, a FIFO never hangs the command, and a FHIR Bundle
is validated before it is written, a refusal naming the bad field. One writer for every output:
``medinfer.writing.write_atomic``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import medinfer
import pytest
from medinfer.cli import main
from medinfer.writing import check_target, write_atomic


@pytest.fixture
def ct() -> Path:
    """pydicom's CT_small.dcm (the DICOM cases need the [dicom] extra; the writer's own cases do not)."""
    pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file("CT_small.dcm"))


def _read_only_folder(tmp_path: Path) -> Path:
    """A folder this process cannot create files in: mode 0555, or (as root, whom modes do not stop) sysfs."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    return Path("/sys") if os.geteuid() == 0 else folder


def _leftovers(folder: Path) -> list[str]:
    if not folder.is_dir() or not os.access(folder, os.R_OK) or folder == Path("/sys"):
        return []
    return sorted(p.name for p in folder.iterdir() if ".part" in p.name)


@pytest.mark.parametrize("kind", ["folder", "fifo", "symlink", "chardev"])
def test_only_a_regular_file_or_a_new_name_is_written(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "out.json"
    if kind == "folder":
        target.mkdir()
    elif kind == "fifo":
        os.mkfifo(target)
    elif kind == "symlink":
        (tmp_path / "elsewhere.json").write_text("keep")
        target.symlink_to(tmp_path / "elsewhere.json")
    else:
        target = Path("/dev/null")
    with pytest.raises(medinfer.OutputError, match=r"only a regular file \(or a new name\)") as info:
        write_atomic(target, b"{}", "--fhir-out")
    assert medinfer.errors.exit_code(info.value) == 2 and isinstance(info.value, OSError)
    assert _leftovers(tmp_path) == [] and _leftovers(target.parent) == []
    if kind == "fifo":
        assert os.path.exists(target) and not target.is_file()  # still the FIFO, never replaced
    if kind == "symlink":
        assert (tmp_path / "elsewhere.json").read_text() == "keep" and target.is_symlink()
    write_atomic(tmp_path / "new.json", b"{}")
    write_atomic(tmp_path / "new.json", b"[]")  # a regular file is replaced
    assert (tmp_path / "new.json").read_bytes() == b"[]"


def test_a_failing_writer_leaves_the_old_file_and_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "sr.dcm"
    target.write_bytes(b"old")

    def broken(fh) -> None:
        fh.write(b"half of a file")
        raise ValueError("encoder failed halfway")

    with pytest.raises(ValueError, match="halfway"):
        write_atomic(target, broken)
    assert target.read_bytes() == b"old" and _leftovers(tmp_path) == []


def test_missing_and_read_only_folders_are_typed(tmp_path: Path) -> None:
    with pytest.raises(medinfer.OutputError, match="does not exist"):
        write_atomic(tmp_path / "missing" / "x.json", b"{}")
    with pytest.raises(medinfer.OutputError, match="not writable|cannot be written"):
        write_atomic(_read_only_folder(tmp_path) / "x.json", b"{}")
    with pytest.raises(medinfer.OutputError, match="names no file"):
        check_target(tmp_path / "..", "--overlay")


def _fhir(ct: Path, bundle: Path, out: str, subject: str = "Patient/p1", *extra: str) -> list[str]:
    return ["predict", str(bundle), str(ct), "--fhir-out", out, "--fhir-subject", subject, *extra]


@pytest.mark.parametrize("case", ["folder", "missing_folder", "read_only", "fifo", "chardev"])
def test_fhir_out_refuses_each_bad_target_before_any_work(ct: Path, lung_ct_bundle: Path, tmp_path: Path, case: str,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("fhir.resources")
    target = {"folder": tmp_path / "a_folder", "missing_folder": tmp_path / "nowhere" / "x.json",
              "read_only": _read_only_folder(tmp_path) / "x.json", "fifo": tmp_path / "pipe.json",
              "chardev": Path("/dev/null")}[case]
    if case == "folder":
        target.mkdir()
    if case == "fifo":
        os.mkfifo(target)
    assert main(_fhir(ct, lung_ct_bundle, str(target))) == 2
    err = capsys.readouterr().err
    assert "OutputError" in err and "unexpected" not in err and "Traceback" not in err
    assert _leftovers(tmp_path) == [] and _leftovers(target.parent) == []
    if case in ("fifo", "chardev"):
        assert not target.is_file()  # a FIFO or device is never replaced by a regular file


def test_overlay_to_a_fifo_does_not_hang(ct: Path, lung_ct_bundle: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "heat.png"
    os.mkfifo(fifo)
    done = subprocess.run([sys.executable, "-m", "medinfer", "predict", str(lung_ct_bundle), str(ct), "--overlay",
                           str(fifo)], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2 and "FIFO" in done.stderr and "Traceback" not in done.stderr
    assert not fifo.is_file()


@pytest.mark.parametrize("subject", ["urn:uuid:not-a-uuid", "http://ehr.example/<b>Patient</b>/1",
                                     "https://ehr.example/fhir/Patient/1\"><script>", "urn:oid:abc",
                                     "urn:uuid:9B2A3C1E-7D3F-4D8E-9A1B-2C3D4E5F6A7B"])
def test_fhir_subjects_fhir_itself_does_not_allow_are_refused(ct: Path, lung_ct_bundle: Path, tmp_path: Path,
                                                              subject: str,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("fhir.resources")
    out = tmp_path / "slice.json"
    assert main(_fhir(ct, lung_ct_bundle, str(out), subject)) == 2
    assert "must be a reference" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("subject", ["urn:uuid:9b2a3c1e-7d3f-4d8e-9a1b-2c3d4e5f6a7b", "urn:oid:1.2.840.10008",
                                     "https://ehr.example/fhir/Patient/123", "Patient/123/_history/2"])
def test_fhir_references_in_r4_forms_are_taken(ct: Path, lung_ct_bundle: Path, tmp_path: Path,
                                               subject: str) -> None:
    pytest.importorskip("fhir.resources")
    out = tmp_path / "slice.json"
    assert main(_fhir(ct, lung_ct_bundle, str(out), subject)) == 0 and out.is_file() and _leftovers(tmp_path) == []


def test_an_invalid_bundle_is_refused_naming_the_field() -> None:
    pytest.importorskip("fhir.resources")
    from medinfer.tools.fhir import validate

    doc = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:9b2a3c1e-7d3f-4d8e-9a1b-2c3d4e5f6a7b",
         "resource": {"resourceType": "RiskAssessment", "status": "preliminary", "subject": {"reference": 5}},
         "request": {"method": "POST", "url": "RiskAssessment"}}]}
    with pytest.raises(medinfer.UsageError, match=r"field 'entry\[0\]\.resource\.subject\.reference'"):
        validate(doc)


def _slice(ct: Path, tmp_path: Path, name: str, edit) -> Path:
    import pydicom

    ds = pydicom.dcmread(ct)
    edit(ds)
    path = tmp_path / f"{name}.dcm"
    ds.save_as(path)
    return path


def _set(keyword: str, value: str):
    return lambda ds: setattr(ds, keyword, value)


def _drop(keyword: str):
    return lambda ds: delattr(ds, keyword)


@pytest.mark.parametrize("name,edit,code,says", [
    ("no_patient_id", _drop("PatientID"), 0, None),
    ("no_patient_name", _drop("PatientName"), 0, None),
    ("no_study_date", _drop("StudyDate"), 0, None),
    ("no_sop_instance_uid", _drop("SOPInstanceUID"), 5, "lacks SOPInstanceUID"),
    ("no_study_uid", _drop("StudyInstanceUID"), 5, "lacks StudyInstanceUID"),
    ("no_series_uid", _drop("SeriesInstanceUID"), 5, "lacks SeriesInstanceUID"),
    ("bad_study_date", _set("StudyDate", "20241345"), 5, "StudyDate '20241345'"),
    ("bad_birth_date", _set("PatientBirthDate", "1999"), 5, "PatientBirthDate '1999'"),
    ("bad_study_time", _set("StudyTime", "256199"), 5, "StudyTime '256199'"),
])
def test_dicom_out_is_typed_for_every_slice_it_cannot_reference(ct: Path, lung_ct_bundle: Path, tmp_path: Path,
                                                                name: str,
                                                                edit, code: int, says: str | None,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("highdicom")
    source = _slice(ct, tmp_path, name, edit)
    out = tmp_path / "out"
    assert main(["predict", str(lung_ct_bundle), str(source), "--dicom-out", str(out)]) == code
    captured = capsys.readouterr()
    assert "window(s) scored" in captured.out  # the scores are printed whatever happens to the files beside them
    assert "unexpected" not in captured.err and "Traceback" not in captured.err
    assert _leftovers(out) == []
    if code == 0:  # an absent Type 2 attribute is copied as empty (unknown), as the standard allows
        import pydicom

        sr = pydicom.dcmread(next(out.glob("*.sr.dcm")))
        keyword = {"no_patient_id": "PatientID", "no_patient_name": "PatientName",
                   "no_study_date": "StudyDate"}[name]
        assert keyword in sr and str(sr[keyword].value or "") == ""
    else:
        assert says in captured.err and not (out.exists() and list(out.glob("*.dcm")))


@pytest.mark.parametrize("case", ["file", "missing_parent", "read_only"])
def test_dicom_out_folder_errors_are_typed(ct: Path, lung_ct_bundle: Path, tmp_path: Path, case: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("highdicom")
    target = {"file": tmp_path / "a_file", "missing_parent": tmp_path / "nowhere" / "out",
              "read_only": _read_only_folder(tmp_path) / "out"}[case]
    if case == "file":
        target.write_text("not a folder")
    assert main(["predict", str(lung_ct_bundle), str(ct), "--dicom-out", str(target)]) == 2
    err = capsys.readouterr().err
    assert "OutputError" in err and "unexpected" not in err
