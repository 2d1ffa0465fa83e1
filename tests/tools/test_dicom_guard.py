"""The guard on the DICOM path (issue 26): ``medinfer predict CT.dcm`` — one pass (the whole-slice variant's
per-window ``domain_score``), ``--patchwise`` and ``--center`` — returns each window's domain flag and the slice's
calibration verdict, honours the out-of-domain policy (flag, no_result per window and per slice, raise), and a
slice whose calibration is wrong (other intercepts and slopes, another modality passed as CT, stored values
without their rescale, undeclared padding) gets no confident finding: flagged everywhere or refused.

The tiny CNN's guard (tests/helpers/tiny_cnn.py) scores a window |mean HU + 300| / 400; at the threshold 1.5 a
window of air alone (mean -1024) is outside, as is any window brighter than 300 HU on average."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import medinfer
import numpy as np
import pytest
from medinfer.cli import main
from medinfer.tools import ct_slice, dicom

from ..helpers import tiny_cnn
from ..helpers.checks import dciodvfy

pydicom = pytest.importorskip("pydicom")
from pydicom.data import get_testdata_file  # noqa: E402

CT = Path(get_testdata_file("CT_small.dcm"))
MR = Path(get_testdata_file("MR_small.dcm"))
GUARD = 1.5


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # under the shipped CT model's name: its DICOM finding and FHIR codes apply (tests/tools/conftest.py)
    return tiny_cnn.build(tmp_path_factory.mktemp("guarded") / "lung_nodule_cnn", name="lung_nodule_cnn", guard=GUARD,
                          threshold=0.0)


def _edited(tmp_path: Path, name: str, edit: Callable[[object], None], source: Path = CT) -> Path:
    ds = pydicom.dcmread(source)
    edit(ds)
    path = tmp_path / f"{name}.dcm"
    ds.save_as(path)
    return path


def _rescale(slope: float, intercept: float) -> Callable[[object], None]:
    def edit(ds) -> None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    return edit


def _as_ct(ds) -> None:
    ds.Modality, ds.RescaleSlope, ds.RescaleIntercept = "CT", 1, 0


def _high_padding(ds) -> None:
    """An undeclared padding ring of a high stored value around the field of view (what a scanner writes outside
    the reconstruction circle, here without PixelPaddingValue)."""
    px = ds.pixel_array.copy()
    rr, cc = np.mgrid[:px.shape[0], :px.shape[1]]
    px[np.hypot(rr - px.shape[0] / 2, cc - px.shape[1] / 2) > 0.45 * px.shape[0]] = 8000
    ds.PixelData = px.astype(np.int16).tobytes()
    del ds.PixelPaddingValue


#: miscalibrated slices: each must get no confident finding on every path and under every policy
MISCALIBRATED: dict[str, tuple[Callable[[object], None], Path]] = {
    "intercept -2048": (_rescale(1, -2048), CT),
    "intercept +1024": (_rescale(1, 1024), CT),
    "intercept 0 (stored values unrescaled)": (_rescale(1, 0), CT),
    "slope 0.5": (_rescale(0.5, -1024), CT),
    "slope 2": (_rescale(2, -1024), CT),
    "slope 1000": (_rescale(1000, -1024), CT),
    "MR passed as CT": (_as_ct, MR),
    "undeclared high padding": (_high_padding, CT),
}
PATHS = {"one pass": [], "patchwise": ["--patchwise"], "centre": ["--center", "60,60"]}


def _predict(model: medinfer.Model, path: Path, how: str) -> dicom.DicomPrediction:
    if how == "centre":
        return dicom.predict_file(model, path, centre=(60, 60))
    return dicom.predict_file(model, path)


def _no_confident_finding(result: dicom.DicomPrediction) -> bool:
    positive = np.array([lab == "nodule" for lab in result.labels])
    return not (positive & result.confident).any() and (result.refusal is not None or not result.slice_in_domain)


@pytest.mark.parametrize("variant", sorted(MISCALIBRATED))
@pytest.mark.parametrize("how", sorted(PATHS))
@pytest.mark.parametrize("policy", ["flag", "no_result", "raise"])
def test_a_miscalibrated_slice_gets_no_confident_finding(guarded: Path, tmp_path: Path, variant: str, how: str,
                                                          policy: str) -> None:
    edit, source = MISCALIBRATED[variant]
    path = _edited(tmp_path, "slice", edit, source)
    model = medinfer.load(guarded, variant="slice" if how == "one pass" else None, out_of_domain=policy)
    try:
        result = _predict(model, path, how)
    except medinfer.InputError:
        return  # refused outright: the values are not HU at all
    except medinfer.OutOfDomainError:
        assert policy == "raise"
        return
    assert policy != "raise"
    assert _no_confident_finding(result), result.guard.calibration.to_dict()
    if policy == "no_result":
        assert result.refusal is not None and result.refusal.reason == "out_of_domain"
        assert np.isnan(result.scores).all() and result.to_dict()["status"] == "no_result"
    else:
        assert not result.in_domain.any() and result.to_dict()["domain"]["slice_in_domain"] is False


def test_the_cli_refuses_or_flags_a_miscalibrated_slice_on_every_path(guarded: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = _edited(tmp_path, "shifted", _rescale(1, -2048))
    for how, extra in PATHS.items():
        assert main(["predict", str(guarded), str(path), "--json", *extra]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["domain"]["slice_in_domain"] is False and ("one_pass" in out) == (how == "one pass")
        assert all(w["in_domain"] is False for w in out["windows"])
        assert main(["predict", str(guarded), str(path), "--out-of-domain", "no_result", *extra]) == 5
        captured = capsys.readouterr()
        assert "NO RESULT" in captured.err and "RescaleSlope/RescaleIntercept" in captured.err


def _synthetic(tmp_path: Path, hu: np.ndarray, name: str = "synthetic") -> Path:
    """A CT slice of ``hu`` with CT_small's header (stored = HU + 1024)."""
    def edit(ds) -> None:
        ds.Rows, ds.Columns = hu.shape
        ds.PixelData = np.round(hu + 1024).astype(np.int16).tobytes()
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    return _edited(tmp_path, name, edit)


def test_a_calibrated_slice_is_answered_with_each_window_s_flag(guarded: Path, tmp_path: Path) -> None:
    hu = tiny_cnn.ct_image((260, 236), seed=11)  # a body disk in air: windows of air alone are outside
    path = _synthetic(tmp_path, hu)
    one_pass = dicom.predict_file(medinfer.load(guarded, variant="slice"), path, stride=24)
    patchwise = dicom.predict_file(medinfer.load(guarded), path, stride=24)
    assert one_pass.slice_in_domain and patchwise.slice_in_domain
    patches = dicom.cut_patches(np.clip(hu, -1024, 3071), one_pass.centres, tiny_cnn.PATCH, -1024.0)
    expected = tiny_cnn.guard_reference(patches)  # the guard's own definition, in numpy
    np.testing.assert_allclose(one_pass.domain_scores, expected, atol=1e-4)
    np.testing.assert_allclose(patchwise.domain_scores, expected, atol=1e-4)
    inside = expected <= GUARD
    assert 0 < inside.sum() < len(inside)  # both verdicts occur on this slice
    assert one_pass.in_domain.tolist() == patchwise.in_domain.tolist() == inside.tolist()
    windows = one_pass.to_dict()["windows"]
    assert [w["in_domain"] for w in windows] == inside.tolist() and all(w["status"] == "ok" for w in windows)


def test_no_result_refuses_each_window_outside_and_answers_the_others(guarded: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = _synthetic(tmp_path, tiny_cnn.ct_image((260, 236), seed=11))
    for extra in ([], ["--patchwise"]):
        assert main(["predict", str(guarded), str(path), "--json", "--stride", "24", "--out-of-domain",
                     "no_result", *extra]) == 0
        out = json.loads(capsys.readouterr().out)
        windows = out["windows"]
        refused = [w for w in windows if w["status"] == "no_result"]
        answered = [w for w in windows if w["status"] == "ok"]
        assert refused and answered and out["status"] == "ok"
        assert all(w["score"] is None and w["label"] is None and w["reason"] == "out_of_domain" for w in refused)
        assert all(w["in_domain"] and isinstance(w["score"], float) for w in answered)
    with pytest.raises(medinfer.OutOfDomainError, match="window"):
        dicom.predict_file(medinfer.load(guarded, out_of_domain="raise"), path, stride=24)


def test_a_one_pass_variant_without_the_window_guard_is_not_taken(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    bundle = tiny_cnn.build(tmp_path / "old_slice", guard=GUARD, slice_guard=False)  # exported before the output
    manifest = medinfer.load_manifest(bundle)
    assert ct_slice.slice_variant_of(manifest, None) is None and not ct_slice.guards_every_window(manifest, "slice")
    assert main(["predict", str(bundle), str(CT), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "one_pass" not in out and all("domain_score" in w for w in out["windows"])  # patch by patch, guarded
    unguarded = tiny_cnn.build(tmp_path / "no_guard")  # a bundle without any guard still takes the one pass
    assert ct_slice.slice_variant_of(medinfer.load_manifest(unguarded), None) == "slice"


def test_declared_padding_is_air_and_not_a_miscalibration(guarded: Path, tmp_path: Path) -> None:
    def pad(ds) -> None:
        px = ds.pixel_array.copy()
        px[:10, :] = -2000  # the value CT_small declares as PixelPaddingValue
        ds.PixelData = px.astype(np.int16).tobytes()
        ds.PixelRepresentation = 1

    result = dicom.predict_file(medinfer.load(guarded), _edited(tmp_path, "padded", pad))
    calibration = result.guard.calibration
    assert calibration.padding_pixels == 10 * 128 and calibration.plausible
    assert result.clipped_pixels == 0  # padding is not counted as clipped image


def test_the_calibration_check_passes_the_real_ct_slices_it_can_read() -> None:
    from medinfer.tools.ct_checks import check_calibration

    for name in ("CT_small.dcm", "693_J2KI.dcm"):
        try:
            image = dicom.read_ct(get_testdata_file(name))
        except medinfer.InputError:  # a JPEG 2000 file needs a decoder plugin
            continue
        verdict = check_calibration(image.hu, image.padding, 3071.0)
        assert verdict.plausible, (name, verdict.to_dict())
        assert verdict.tissue_peak is not None and -200 <= verdict.tissue_peak <= 200


def _codes(ds: object) -> list[tuple[str, str]]:
    out = []
    for elem in ds:  # type: ignore[attr-defined]
        if elem.VR == "SQ":
            for item in elem.value:
                if hasattr(item, "CodeValue"):
                    out.append((item.CodeValue, item.CodingSchemeDesignator))
                out += _codes(item)
    return out


def _findings(sr) -> list[tuple[str, str]]:
    return [(g.finding_type.value, g.finding_type.scheme_designator)
            for g in sr.content.get_planar_roi_measurement_groups()]


@pytest.mark.parametrize("policy", ["flag", "no_result"])
def test_the_outputs_of_a_miscalibrated_slice_present_no_finding_as_valid(guarded: Path, tmp_path: Path,
                                                                          policy: str) -> None:
    hd = pytest.importorskip("highdicom")
    pytest.importorskip("fhir.resources")
    path = _edited(tmp_path, "shifted", _rescale(1, -2048))
    out, fhir = tmp_path / "dicom", tmp_path / "slice.fhir.json"
    code = main(["predict", str(guarded), str(path), "--dicom-out", str(out), "--dicom-sc", "--fhir-out", str(fhir),
                 "--fhir-subject", "Patient/p1", "--out-of-domain", policy])
    assert code == (0 if policy == "flag" else 5)
    for written in out.glob("*.dcm"):  # valid DICOM in every form (no errors from dciodvfy where installed)
        assert not dciodvfy(written)[0], written.name
    sr = hd.sr.srread(next(out.glob("*.sr.dcm")))
    findings = _findings(sr)
    assert ("786838002", "SCT") not in findings  # never "Pulmonary nodule" for a slice outside the domain
    verdict = ("OUTDOMAIN" if policy == "flag" else "NORESULT", "99MEDINFER")
    assert verdict in _codes(sr) and ("APPDOMAIN", "99MEDINFER") in _codes(sr)
    if policy == "flag":  # every window is positive at threshold 0: each reported as outside the domain
        assert findings and set(findings) == {("OUTDOMAIN", "99MEDINFER")}
        assert list(out.glob("*.pm.dcm"))
    else:
        assert not findings and not list(out.glob("*.pm.dcm")) and not list(out.glob("*.sc.dcm"))
    (risk,) = [e["resource"] for e in json.loads(fhir.read_text())["entry"]
               if e["resource"]["resourceType"] == "RiskAssessment"]
    assert {"code": "out-of-domain"}.items() <= risk["meta"]["tag"][0].items()
    if policy == "flag":
        assert risk["status"] == "preliminary" and risk["note"][0]["text"].startswith("OUTSIDE")
    else:
        assert risk["status"] == "cancelled" and "prediction" not in risk
        assert risk["note"][0]["text"].startswith("NO RESULT")


def test_a_calibrated_slice_reports_findings_only_inside_the_domain(guarded: Path, tmp_path: Path) -> None:
    hd = pytest.importorskip("highdicom")
    hu = tiny_cnn.ct_image((260, 236), seed=11)
    path = _synthetic(tmp_path, hu)
    out = tmp_path / "dicom"
    assert main(["predict", str(guarded), str(path), "--stride", "24", "--dicom-out", str(out)]) == 0
    result = dicom.predict_file(medinfer.load(guarded, variant="slice"), path, stride=24)
    for written in out.glob("*.dcm"):
        assert not dciodvfy(written)[0], written.name
    sr = hd.sr.srread(next(out.glob("*.sr.dcm")))
    findings = _findings(sr)
    inside = int(result.in_domain.sum())  # threshold 0: every window positive
    assert findings.count(("786838002", "SCT")) == inside
    assert findings.count(("OUTDOMAIN", "99MEDINFER")) == len(result.scores) - inside > 0
    assert ("INDOMAIN", "99MEDINFER") in _codes(sr)  # the slice's verdict
    pm = pydicom.dcmread(next(out.glob("*.pm.dcm")))
    flags = pm.pixel_array[1]
    for (r, c), ok in zip(result.centres, result.in_domain):
        assert flags[r, c] == float(ok)


@pytest.mark.parametrize("policy", ["flag", "no_result"])
def test_no_window_outside_the_domain_is_explained_as_a_finding(guarded: Path, tmp_path: Path, policy: str) -> None:
    from medinfer.tools.explain_slice import explain_slice

    model = medinfer.load(guarded, out_of_domain=policy)
    shifted = dicom.predict_file(model, _edited(tmp_path, "shifted", _rescale(1, -2048)))
    assert explain_slice(model, shifted).findings == []  # every window positive at threshold 0, none confident
    calibrated = dicom.predict_file(model, CT)
    with pytest.raises(medinfer.UsageError, match="explanation"):  # this tiny bundle has none: findings exist
        explain_slice(model, calibrated)


@pytest.fixture(scope="module")
def slice_guarded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The exporter's guard (tiny_cnn.hu_guard) on both graphs: the slice variant also gives domain_score_slice."""
    return tiny_cnn.build(tmp_path_factory.mktemp("slice_guarded") / "lung_nodule_cnn", name="lung_nodule_cnn",
                          guarded=True, threshold=0.0)


def _mostly_bone(shape: tuple[int, int] = (260, 236)) -> np.ndarray:
    """A calibrated slice (air around, a soft-tissue rim: the calibration check passes) whose body is mostly
    bone-dense: most windows that hold tissue lie outside the tiny guard's domain (synthetic)."""
    hu = tiny_cnn.ct_image(shape, seed=11)
    rr, cc = np.mgrid[:shape[0], :shape[1]]
    core = np.hypot(rr - shape[0] / 2, cc - shape[1] / 2) < 0.42 * min(shape)
    hu[core] = 1500.0 + np.random.default_rng(3).normal(0, 30, int(core.sum()))
    return hu.astype(np.float32)


def test_a_calibrated_slice_mostly_outside_the_domain_is_outside_as_a_whole(
        slice_guarded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The one-pass graph's slice-level score (domain_score_slice: the upper median of the tissue windows') is part
    of the slice's verdict: with the calibration check alone, the soft-tissue windows of this slice would be answered
    as in the domain."""
    path = _synthetic(tmp_path, _mostly_bone())
    result = dicom.predict_file(medinfer.load(slice_guarded, variant="slice"), path, stride=24)
    guard = result.guard
    assert guard.calibration.plausible and guard.slice_score > tiny_cnn.GUARD_THRESHOLD
    assert (guard.window_in_domain.any() and result.slice_in_domain is False and not result.in_domain.any()
            and not result.confident.any())
    out = result.to_dict()["domain"]
    assert out["slice_in_domain"] is False and out["slice_domain_score"] == pytest.approx(guard.slice_score, rel=1e-5)
    refused = dicom.predict_file(medinfer.load(slice_guarded, variant="slice", out_of_domain="no_result"), path,
                                 stride=24)
    assert refused.refusal is not None and "at least half of the windows" in refused.refusal.message
    assert np.isnan(refused.scores).all()
    with pytest.raises(medinfer.OutOfDomainError):
        dicom.predict_file(medinfer.load(slice_guarded, variant="slice", out_of_domain="raise"), path, stride=24)
    from medinfer.tools.dicom_domain import domain_statements, slice_verdict

    assert slice_verdict(result) == "outside" and "above the threshold" in domain_statements(result)[0]  # the SR's
    assert main(["predict", str(slice_guarded), str(path), "--stride", "24", "--json"]) == 0  # the CLI, one pass
    cli = json.loads(capsys.readouterr().out)
    assert cli["domain"]["slice_in_domain"] is False and not any(w["in_domain"] for w in cli["windows"])
    assert main(["predict", str(slice_guarded), str(path), "--stride", "24", "--out-of-domain", "no_result"]) == 5
    assert "at least half of the windows" in capsys.readouterr().err
    calibrated = dicom.predict_file(medinfer.load(slice_guarded, variant="slice"),
                                    _synthetic(tmp_path, tiny_cnn.ct_image((260, 236), seed=11), "plain"), stride=24)
    assert calibrated.slice_in_domain and calibrated.guard.slice_score <= tiny_cnn.GUARD_THRESHOLD
