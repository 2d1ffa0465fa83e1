"""FHIR R4 for one scored CT slice (``medinfer predict scan.dcm --fhir-out``): a RiskAssessment whose probability is
the highest window the model may report (answered and inside the applicability domain), tagged with the slice's
domain flag; a slice that got no result is a cancelled assessment without a probability (:mod:`.fhir`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import UsageError
from ..model import Model
from .fhir import (
    Source,
    checked_digest,
    flag_domain,
    instant,
    new_urn,
    references,
    refused_resource,
    require_fhir,
    result_mapping,
    risk_assessment,
    transaction,
)
from .fhir_map import DICOM_UID, check_subject, domain_flag


class ScoredSlice(Protocol):
    """What :func:`slice_bundle` reads of a :class:`medinfer.tools.dicom.DicomPrediction`."""

    centres: np.ndarray
    scores: np.ndarray
    labels: list[str]
    threshold: float | None

    @property
    def image(self) -> Any: ...  # CTImage: path, frame, uids


def slice_bundle(model: Model, result: ScoredSlice, *, subject: str, basis: Sequence[str] = (),
                 manufacturer: str | None = None, sr_uid: str | None = None,
                 input_sha256: str | None = None) -> dict[str, Any]:
    """FHIR R4 for one scored CT slice: a RiskAssessment whose probability is the highest window score.

    ``basis`` gains the slice's study (an ImagingStudy by its DICOM Study Instance UID) when the file has one;
    ``sr_uid`` (the SOP Instance UID of the DICOM SR written for the slice) is named in a note.

    Raises:
        MissingExtraError: fhir.resources is not installed.
        UsageError: the model has no patient-facing mapping, or a bad subject or basis.
    """
    manifest = model.manifest
    require_fhir()
    subject = check_subject(subject)
    refs = references(basis)
    study = result.image.uids.get("StudyInstanceUID")
    if study:
        refs.insert(0, {"type": "ImagingStudy", "identifier": {"system": DICOM_UID, "value": f"urn:oid:{study}"}})
    mapping = result_mapping(manifest, False)
    if mapping is None or mapping.resource != "RiskAssessment":
        raise UsageError(f"{manifest.name} has no risk mapping for a scored DICOM slice")
    src = Source(manifest, model.model_sha256, model.manifest_sha256, model.variant, new_urn())
    extra = [f"Per-window regions: DICOM SR {sr_uid}."] if sr_uid else []
    refusal = getattr(result, "refusal", None)
    if refusal is not None:  # the slice got no result: a cancelled assessment without a probability
        resource = refused_resource(src, mapping, refusal, subject=subject, basis=refs, at=instant(None),
                            issued=instant(None))
        resource.setdefault("meta", {}).setdefault("tag", []).append(domain_flag(False))
        resource["note"] += [{"text": t} for t in extra]
        return transaction(src, [resource], manufacturer, input_sha256=checked_digest(input_sha256), basis=refs)
    confident = np.asarray(getattr(result, "confident", np.ones(len(result.scores), dtype=bool)))
    inside = bool(confident.any())  # the highest window the model may report; else the slice is flagged
    pool = confident if inside else np.isfinite(result.scores)
    best = int(np.argmax(np.where(pool, result.scores, -np.inf)))
    row, col = (int(v) for v in result.centres[best])
    t = result.threshold
    above = sum(label == manifest.decision.positive_label and bool(ok)
                for label, ok in zip(result.labels, confident))
    outside = len(result.scores) - int(confident.sum())
    rationale = (f"highest of {len(result.scores)} windows{' inside the applicability domain' if outside else ''}, "
                 f"centred at row {row}, col {col} of {Path(result.image.path).name} (frame "
                 f"{result.image.frame + 1}); {above} window(s) at or above the operating threshold "
                 f"{f'{t:g}' if t is not None else '-'}"
                 + (f"; {outside} window(s) outside the applicability domain or without a result are not counted"
                    if outside else ""))
    resource = risk_assessment(src, mapping, subject=subject, basis=refs, when=instant(None),
                     probability=float(result.scores[best]), rationale=rationale, extra_notes=extra)
    if getattr(result, "guard", None) is not None:
        flag_domain(resource, inside and bool(getattr(result, "slice_in_domain", True)), manifest)
    return transaction(src, [resource], manufacturer, input_sha256=checked_digest(input_sha256), basis=refs)
