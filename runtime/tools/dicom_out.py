"""DICOM results for a PACS (extra ``[dicom]``: highdicom on pydicom, imported lazily).

``medinfer predict lung_nodule_cnn scan.dcm --dicom-out DIR`` writes, for the scored slice and referencing it
(Study, Series and SOP Instance UIDs, Frame of Reference):

- ``<stem>.sr.dcm``: a Comprehensive SR (TID 1500 Measurement Report). The observer is the model as a device
  (name, version, manifest sha256 as its serial number); each window the model decides positive at its operating
  threshold is a planar ROI: a rectangle in image coordinates on the source image, the finding, and the model's
  probability (DCM 122157 "Probability", UCUM "1"), with the algorithm identification (name, version, manifest
  and graph sha256, threshold) of TID 4019. Qualitative evaluations state the operating threshold, what the
  training data were (for lung_nodule_cnn: SIMULATED lesions on real CT) and the intended use.
- ``<stem>.pm.dcm``: the heat map as a Parametric Map (float32 probabilities on the source's pixel grid, plane
  position and orientation of the source, research content qualification). Needs the source's geometry (Frame
  of Reference, Image Position/Orientation, Pixel Spacing) and a single-frame source; otherwise it is skipped and
  the reason is reported (for a frame of a multi-frame image the SR references the frame).
- ``<stem>.sc.dcm`` (``secondary_capture=True``, CLI ``--dicom-sc``): the PNG overlay's figure (heat map, outline at
  the threshold, colour bar, caption without the file name) at the source's resolution, as an RGB Secondary
  Capture for viewers without SR or Parametric Map support.

Validated by dciodvfy (``make check-dicom-out``) and read back with pydicom/highdicom in tests/runtime.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..codings import codings_of
from ..errors import InputError, OutputError, UsageError
from ..extras import optional_import
from ..manifest import Manifest
from ..model import Model
from ..writing import check_folder, write_atomic
from .dicom import DicomPrediction, overlay_figure
from .dicom_domain import (
    LOCAL_SCHEME,
    domain_code,
    domain_evaluation,
    domain_map,
    domain_statements,
    slice_verdict,
)

log = logging.getLogger(__name__)

MANUFACTURER = "medinfer"
SERIES_NUMBERS = {"sr": 9001, "parametric_map": 9002, "secondary_capture": 9003}
KINDS = {"sr": "Comprehensive SR", "parametric_map": "Parametric Map", "secondary_capture": "Secondary Capture"}


@dataclass
class DicomOutputs:
    """What :func:`write_dicom` wrote (kind -> path), what it skipped (kind -> why), and the SR's UID."""

    files: dict[str, Path] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    sr_uid: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"files": {k: str(v) for k, v in self.files.items()}, "skipped": dict(self.skipped),
                "sr_uid": self.sr_uid}


def _libs() -> tuple[Any, Any]:
    return optional_import("highdicom", "dicom", "DICOM output"), optional_import("pydicom", "dicom", "DICOM output")


def write_dicom(model: Model, result: DicomPrediction, out_dir: str | Path, *, secondary_capture: bool = False,
                manufacturer: str | None = None) -> DicomOutputs:
    """Write the SR, the Parametric Map and optionally a Secondary Capture for one scored slice.

    Args:
        model: the loaded bundle that scored the slice (its manifest and digests identify the algorithm).
        result: what :func:`medinfer.tools.dicom.predict_file` returned for the slice.
        out_dir: folder for the files (created); files of the same name are replaced.
        secondary_capture: also write the overlay as an RGB Secondary Capture image.
        manufacturer: Manufacturer of the series (default ``"medinfer"``).

    Raises:
        MissingExtraError: highdicom or pydicom is not installed.
        OutputError: ``out_dir`` is not a folder, cannot be created or written, or a target is not a regular file.
        InputError: the slice cannot be referenced (UIDs missing, invalid dates: :func:`referable_source`) or a
            result cannot be made from it.
    """
    hd, pydicom = _libs()
    out = output_folder(out_dir)
    source = referable_source(pydicom.dcmread(result.image.path), Path(result.image.path).name)
    stem = Path(result.image.path).stem + (f"_frame{result.image.frame + 1}" if result.image.n_frames > 1 else "")
    maker = manufacturer or MANUFACTURER
    outputs = DicomOutputs()
    sr = _built("SR", source, lambda: build_sr(model, result, source, maker))
    outputs.sr_uid = str(sr.SOPInstanceUID)
    outputs.files["sr"] = _save(sr, out / f"{stem}.sr.dcm")
    if result.refusal is not None:  # no values to show: the SR says why, nothing presents a score
        why = "the slice got no result (outside the applicability domain): the SR says why"
        outputs.skipped["parametric_map"] = why
        if secondary_capture:
            outputs.skipped["secondary_capture"] = why
    elif result.image.n_frames > 1:
        why = (f"the source is a multi-frame image (frame {result.image.frame + 1} of {result.image.n_frames}): this "
               "is written for single-frame slices only; the SR references the frame")
        outputs.skipped["parametric_map"] = why
        if secondary_capture:
            outputs.skipped["secondary_capture"] = why
    elif why := _no_geometry(source):
        outputs.skipped["parametric_map"] = why
    else:
        pm = _built("Parametric Map", source, lambda: build_parametric_map(model, result, source, maker))
        outputs.files["parametric_map"] = _save(pm, out / f"{stem}.pm.dcm")
    if secondary_capture and result.image.n_frames == 1 and result.refusal is None:
        orientation = patient_orientation(source)
        if orientation is None:
            outputs.skipped["secondary_capture"] = "the source has no ImageOrientationPatient"
        else:
            sc = _built("Secondary Capture", source,
                        lambda: build_secondary_capture(model, result, source, maker, orientation))
            outputs.files["secondary_capture"] = _save(sc, out / f"{stem}.sc.dcm")
    for kind, reason in outputs.skipped.items():
        log.warning("%s not written for %s: %s", kind, result.image.path, reason)
    return outputs


def output_folder(out_dir: str | Path) -> Path:
    """The ``--dicom-out`` folder, created when it does not exist (its parent must).

    Raises:
        OutputError: it is not a folder, cannot be created, or is not writable.
    """
    out = Path(out_dir)
    if not os.path.lexists(out):
        check_folder(out.parent if str(out.parent) else Path("."), f"--dicom-out {out}")
        try:
            out.mkdir()
        except FileExistsError:
            pass
        except OSError as exc:
            raise OutputError(f"--dicom-out {out} cannot be created ({exc.strerror or exc})") from None
    return check_folder(out, f"--dicom-out {out}")


#: What a result copies from its source: the UIDs it references (Type 1: without them nothing can be referenced)
#: and the Patient / General Study attributes of Type 2 (present, possibly empty: an empty value means unknown).
REFERENCED_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")
TYPE2_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                "ReferringPhysicianName", "StudyID", "AccessionNumber")


def referable_source(ds: Any, name: str) -> Any:
    """The source slice as the results reference it: refused without the UIDs a reference needs or with a date or
    time a result would copy that is not one; an absent Type 2 attribute is given its empty value (unknown), as the
    standard allows, on this in-memory copy only.

    Raises:
        InputError: a referenced UID missing or empty, or an invalid date/time in an attribute the results copy.
    """
    from pydicom.valuerep import DA, TM

    missing = [k for k in REFERENCED_UIDS if not str(ds.get(k, "") or "").strip()]
    if missing:
        raise InputError(f"{name} lacks {', '.join(missing)}: a DICOM result must reference its source slice by these "
                         "UIDs; fix the file (e.g. re-export it from the PACS) before asking for --dicom-out")
    for keyword in TYPE2_COPIED:
        if keyword not in ds:
            setattr(ds, keyword, "")
    for keyword, kind, parse in (("PatientBirthDate", "date", DA), ("StudyDate", "date", DA),
                                 ("StudyTime", "time", TM)):
        raw = ds[keyword].value
        text = str(raw).strip() if raw is not None else ""
        if not text:
            continue
        try:
            parse(text) if isinstance(raw, str) else None
        except (ValueError, TypeError):
            raise InputError(f"{name} has {keyword} {text!r}, which is not a valid DICOM {kind} "
                             f"({'YYYYMMDD' if kind == 'date' else 'HHMMSS.FFFFFF'}): a DICOM result copies it; fix "
                             "the file before asking for --dicom-out") from None
    return ds


def _built(kind: str, source: Any, build: Any) -> Any:
    """``build()``, with anything highdicom or pydicom raises about the source's content as a typed InputError."""
    try:
        return build()
    except (InputError, UsageError):
        raise
    except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
        raise InputError(f"{Path(str(source.filename or 'the slice')).name}: the DICOM {kind} cannot be made from "
                         f"this slice ({type(exc).__name__}: {exc}); nothing was written for it") from None


def _save(ds: Any, path: Path) -> Path:
    """One DICOM file, written atomically (:func:`medinfer.writing.write_atomic`)."""
    return write_atomic(path, lambda fh: ds.save_as(fh, enforce_file_format=True), "the DICOM output")


def _no_geometry(ds: Any) -> str:
    missing = [k for k in ("FrameOfReferenceUID", "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing",
                           "SliceThickness") if not ds.get(k)]
    if missing:
        return f"the source lacks {', '.join(missing)}: a Parametric Map needs the slice's geometry"
    return ""


def _laterality(target: Any, source: Any) -> None:
    # General Series Laterality is Type 2C; dciodvfy wants it present (empty = unknown) when the body part is not
    # known to be unpaired, as in the source.
    if "Laterality" not in target:
        target.Laterality = source.get("Laterality", "") or ""


def _selected(result: DicomPrediction, manifest: Manifest, confident: bool = True) -> list[int]:
    """Indices of the windows the model's decision calls positive (score at or above the threshold) that are
    answered and inside the applicability domain (``confident``), or answered and outside it (``confident=False``:
    flagged, reported as such, never as the finding)."""
    positive = manifest.decision.positive_label
    ok, inside = result.answered, result.confident
    chosen = [i for i, lab in enumerate(result.labels) if lab == positive and ok[i] and bool(inside[i]) == confident]
    return sorted(chosen, key=lambda i: -float(result.scores[i]))  # the most probable region first


def _algorithm(hd: Any, model: Model, result: DicomPrediction, maker: str) -> Any:
    m = model.manifest
    params = [f"manifest sha256 {model.manifest_sha256}", f"graph sha256 ({model.variant}) {model.model_sha256}",
              f"operating threshold {m.decision.threshold!r}", f"window {result.patch} px, step {result.cell} px"]
    return hd.sr.AlgorithmIdentification(name=m.name, version=m.version, parameters=params, manufacturer=maker)


def _finding(hd: Any, manifest: Manifest) -> Any:
    """The finding the model's spec declares (manifest ``codings.dicom_finding``), else a local code of its
    positive label."""
    from pydicom.sr.coding import Code

    declared = codings_of(manifest).dicom_finding
    if declared is not None:
        return Code(declared.code, declared.system, declared.display)
    label = str(manifest.decision.positive_label or "positive")
    return Code(label[:16], LOCAL_SCHEME, label)


def _statements(model: Model, result: DicomPrediction, selected: int) -> list[str]:
    m = model.manifest
    t = m.decision.threshold
    lines = [
        f"Operating threshold {f'{t:g}' if t is not None else '(none)'} on the model's probability of "
        f"'{m.decision.positive_label}': {selected} of {len(result.scores)} windows ({result.patch} x "
        f"{result.patch} px, every {result.cell} px) are at or above it"
        + (" and inside the applicability domain" if result.guard is not None else "")
        + " and are reported as regions.",
        *domain_statements(result),
        (f"The training data were SYNTHETIC: {m.data.description}" if m.data.synthetic
         else f"Training data: {m.data.description}"),
        f"Intended use: {m.card.intended_use}",
    ]
    if m.card.out_of_scope:
        lines.append("Out of scope: " + " ".join(m.card.out_of_scope))
    if result.extra.get("explanation"):  # predict --explain: why, per finding
        from .explain_text import sr_statements

        lines += sr_statements(result.extra["explanation"])
    return lines


def build_sr(model: Model, result: DicomPrediction, source: Any, maker: str) -> Any:
    """The Comprehensive SR (TID 1500) of one scored slice, referencing ``source``."""
    hd, pydicom = _libs()
    from pydicom.sr.codedict import codes
    from pydicom.sr.coding import Code

    m = model.manifest
    algorithm = _algorithm(hd, model, result, maker)
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=pydicom.uid.generate_uid(entropy_srcs=[model.manifest_sha256]), name=m.name,
        manufacturer_name=maker, model_name=f"{m.name} {m.version}"[:64], serial_number=model.manifest_sha256[:16])
    context = hd.sr.ObservationContext(observer_device_context=hd.sr.ObserverContext(
        observer_type=codes.DCM.Device, observer_identifying_attributes=device))
    frames = [result.image.frame + 1] if result.image.n_frames > 1 else None
    try:
        image = hd.sr.SourceImageForRegion.from_source_image(source, referenced_frame_numbers=frames)
    except (TypeError, ValueError) as exc:  # e.g. several frames in a single-frame SOP class
        raise InputError(f"{Path(result.image.path).name} cannot be referenced by an SR: {exc}") from None
    finding = _finding(hd, m)
    selected = _selected(result, m)
    # a positive window outside the domain (flag policy) is reported as outside it, never as the finding
    flagged = _selected(result, m, confident=False) if result.guard is not None else []
    groups = [_window_group(hd, result, image, algorithm, i, k, finding, True)
              for k, i in enumerate(selected, start=1)]
    groups += [_window_group(hd, result, image, algorithm, i, k, domain_code("outside"), False)
               for k, i in enumerate(flagged, start=len(groups) + 1)]
    whole = _slice_group(hd, result, source, frames, algorithm)
    if whole is not None:
        groups.append(whole)
    report = hd.sr.MeasurementReport(observation_context=context, procedure_reported=codes.LN.CTUnspecifiedBodyRegion,
                                     imaging_measurements=groups or None)
    evaluations = hd.sr.ContainerContentItem(name=Code("C0034375", "UMLS", "Qualitative Evaluations"),
                                             relationship_type="CONTAINS")
    evaluations.ContentSequence = hd.sr.ContentSequence([
        hd.sr.TextContentItem(name=codes.DCM.Comment, value=text[:1024], relationship_type="CONTAINS")
        for text in _statements(model, result, len(selected))])
    report[0].ContentSequence.append(evaluations)
    sr = hd.sr.ComprehensiveSR(
        evidence=[source], content=report[0], series_instance_uid=hd.UID(), series_number=SERIES_NUMBERS["sr"],
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer=maker, is_complete=True, is_final=False,
        is_verified=False)
    sr.SeriesDescription = f"{m.name} {m.version} results (not verified)"[:64]
    if codings_of(m).dicom_finding is None or result.guard is not None:
        sr.CodingSchemeIdentificationSequence = [_local_scheme(pydicom)]
    return sr


def _slice_group(hd: Any, result: DicomPrediction, source: Any, frames: list[int] | None, algorithm: Any) -> Any:
    """The slice as a whole (TID 1501): its applicability-domain verdict, coded (inside / outside / no result), and
    the highest probability the model may report (an answered window inside the domain; none for a refused or
    flagged slice). Also what keeps the SR valid when no window is reported (TID 1500 needs a measurement group)."""
    from pydicom.sr.codedict import codes

    confident = result.confident
    measurements = []
    if confident.any():
        best = float(np.max(result.scores[confident]))
        measurements.append(hd.sr.Measurement(name=codes.DCM.Probability, value=best, unit=codes.UCUM.NoUnits,
                                              algorithm_id=algorithm))
    evaluations = [hd.sr.QualitativeEvaluation(name=domain_code("concept"), value=domain_code(slice_verdict(result)))
                   ] if result.guard is not None else []
    if not measurements and not evaluations:
        return None
    what = "the slice: highest probability inside the domain" if measurements else "the slice: no finding reported"
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=what), algorithm_id=algorithm,
        measurements=measurements or None, qualitative_evaluations=evaluations or None,
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(source,
                                                                              referenced_frame_numbers=frames)])


def _window_group(hd: Any, result: DicomPrediction, image: Any, algorithm: Any, i: int, k: int, finding: Any,
                  inside: bool) -> Any:
    """One window as a planar ROI: its rectangle, its finding, its probability and (with a guard) whether it is
    inside the applicability domain."""
    from pydicom.sr.codedict import codes

    rows, cols = result.image.hu.shape
    r, c = (int(v) for v in result.centres[i])
    half = result.patch // 2
    r0, r1 = max(0, r - half), min(rows, r - half + result.patch)
    c0, c1 = max(0, c - half), min(cols, c - half + result.patch)
    corners = np.array([[c0, r0], [c1, r0], [c1, r1], [c0, r1], [c0, r0]], dtype=np.float64)
    region = hd.sr.ImageRegion(graphic_type=hd.sr.GraphicTypeValues.POLYLINE, graphic_data=corners,
                               source_image=image)
    probability = hd.sr.Measurement(name=codes.DCM.Probability, value=float(result.scores[i]),
                                     unit=codes.UCUM.NoUnits, algorithm_id=algorithm)
    where = f"window {k}: centre row {r}, col {c}" + ("" if inside else " (OUTSIDE the applicability domain)")
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=where[:64]),
        referenced_region=region, finding_type=finding, algorithm_id=algorithm, measurements=[probability],
        qualitative_evaluations=[domain_evaluation(hd, inside)] if result.guard is not None else None)


def _local_scheme(pydicom: Any) -> Any:
    item = pydicom.Dataset()
    item.CodingSchemeDesignator = LOCAL_SCHEME
    item.CodingSchemeName = "medinfer model labels"
    item.CodingSchemeResponsibleOrganization = "medinfer"
    return item


def build_parametric_map(model: Model, result: DicomPrediction, source: Any, maker: str) -> Any:
    """The heat map as a float32 Parametric Map on the source's pixel grid (probabilities 0..1)."""
    hd, _ = _libs()
    from pydicom.sr.codedict import codes

    m = model.manifest
    label = str(m.decision.positive_label or "score")
    mapping = hd.pm.RealWorldValueMapping(
        lut_label=label[:16], lut_explanation=f"{m.name} probability of '{label}'"[:64], unit=codes.UCUM.NoUnits,
        value_range=(0.0, 1.0), slope=1.0, intercept=0.0, quantity_definition=codes.DCM.Probability)
    pixels, mappings = result.heat().astype(np.float32), [mapping]
    if result.guard is not None:  # a second frame: 1 where the window is inside the applicability domain, else 0
        flag = hd.pm.RealWorldValueMapping(
            lut_label="in_domain", lut_explanation="1: inside the applicability domain, 0: outside (no finding)",
            unit=codes.UCUM.NoUnits, value_range=(0.0, 1.0), slope=1.0, intercept=0.0,
            quantity_definition=domain_code("inside"))
        pixels = np.stack([pixels, domain_map(result)], axis=-1)[None]
        mappings = [[mapping], [flag]]  # type: ignore[list-item]
    pm = hd.pm.ParametricMap(
        source_images=[source], pixel_array=pixels, series_instance_uid=hd.UID(),
        series_number=SERIES_NUMBERS["parametric_map"], sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer=maker, manufacturer_model_name=f"{m.name} {m.version}"[:64],
        software_versions=f"medinfer {__version__}, {m.name} {m.version}"[:64],
        device_serial_number=model.manifest_sha256[:16], contains_recognizable_visual_features=False,
        real_world_value_mappings=mappings,
        voi_lut_transformations=[hd.VOILUTTransformation(window_center=0.5, window_width=1.0)],
        content_label="HEATMAP", content_description=f"{m.name} window probabilities"[:64])
    pm.SeriesDescription = f"{m.name} {m.version} heat map (not verified)"[:64]
    _laterality(pm, source)
    return pm


def patient_orientation(ds: Any) -> tuple[str, str] | None:
    """Patient Orientation (row, column directions) from Image Orientation (Patient), e.g. ('L', 'P')."""
    iop = ds.get("ImageOrientationPatient")
    if not iop or len(iop) != 6:
        return None

    def letters(v: np.ndarray) -> str:
        names = (("L", "R"), ("P", "A"), ("H", "F"))
        order = np.argsort(-np.abs(v))
        return "".join(names[a][0 if v[a] > 0 else 1] for a in order if abs(v[a]) > 1e-3)[:3]

    row, col = np.asarray([float(x) for x in iop[:3]]), np.asarray([float(x) for x in iop[3:]])
    return letters(row), letters(col)


def build_secondary_capture(model: Model, result: DicomPrediction, source: Any, maker: str,
                            orientation: tuple[str, str]) -> Any:
    """The overlay of the PNG (heat map, outline at the threshold, colour bar, caption) at the source's resolution
    (one figure pixel per slice pixel, so the source's pixel spacing holds) as an RGB Secondary Capture of the
    source's study."""
    hd, _ = _libs()
    m = model.manifest
    spacing = source.get("PixelSpacing")
    sc = hd.sc.SCImage.from_ref_dataset(
        source, pixel_array=overlay_figure(result, min_size=1, file_name=False), photometric_interpretation="RGB",
        bits_allocated=8, coordinate_system="PATIENT", series_instance_uid=hd.UID(),
        series_number=SERIES_NUMBERS["secondary_capture"], sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer=maker, pixel_spacing=tuple(float(v) for v in spacing) if spacing else None,
        patient_orientation=orientation)
    sc.SeriesDescription = f"{m.name} {m.version} overlay (not verified)"[:64]
    sc.ImageComments = (f"{m.name} window probabilities over a lung window, region at or above the threshold "
                        "outlined, colour bar; for viewing only, not for diagnosis")
    sc.BurnedInAnnotation = "NO"
    _laterality(sc, source)
    return sc
