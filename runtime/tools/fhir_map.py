"""What medinfer's FHIR results are made of besides the model's own codes: code systems, the Device and notes.

What a result MEANS (its resource, code and outcome) is declared by the model's spec and read from the manifest
(:mod:`medinfer.codings`; the shipped specs use SNOMED CT 786838002 "Pulmonary nodule" — looked up: "Nodule of
lung (disorder)", synonym "Pulmonary nodule" — for the nodule outcome and local codes elsewhere: no LOINC code
describes a *predicted* glucose value, a model's reading of report text, or a cell-type label of these training
classes). Here: UCUM for units, FHIR's ``urn:dicom:uid`` for DICOM UIDs, and the local code systems under
:data:`LOCAL` (``urn:medinfer:fhir:...``, so that nobody mistakes them for a standard terminology). Replace
:data:`LOCAL` by your organisation's canonical base when you register the code systems.
"""

from __future__ import annotations

import re
from typing import Any

from .._version import __version__
from ..codings import LOCAL, RESULT_CODES, SNOMED, UCUM, Coding
from ..errors import UsageError
from ..manifest import Manifest

__all__ = ["DATA_ABSENT", "DICOM_UID", "DOMAIN_CODES", "FHIR_VERSION", "LOCAL", "MANIFEST_ID", "MANUFACTURER",
           "MODEL_ID", "RESULT_CODES", "SNOMED", "UCUM", "absent_reason", "check_subject", "coding", "concept",
           "device_resource", "domain_flag", "notes"]

FHIR_VERSION = "4.0.1"
DICOM_UID = "urn:dicom:uid"  # FHIR's system for DICOM UIDs (ImagingStudy.identifier)
MANIFEST_ID = f"{LOCAL}:identifier:manifest-sha256"
MODEL_ID = f"{LOCAL}:identifier:model-sha256"
INPUT_ID = f"{LOCAL}:identifier:input-sha256"  # the digest the audit record holds as input_sha256
# HL7 AI Transparency on FHIR (STU1): every AI-influenced resource carries the security label AIAST ("Artificial
# Intelligence asserted", from v3-ObservationValue) in meta.security; its Provenance gives AIAST as the reason.
AIAST = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "AIAST",
         "display": "Artificial Intelligence asserted"}
PARTICIPANT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
# FHIR R4's DataAbsentReason code system: why an Observation carries no value (a refused sample has none).
DATA_ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
# Whether a result lies inside the model's applicability domain: no standard terminology has this, so a local code
# system, carried in meta.tag of every result of a guarded model and, when outside, in Observation.interpretation.
DOMAIN_CODES = f"{LOCAL}:CodeSystem:applicability-domain"
_DOMAIN_DISPLAY = {"in-domain": "Inside the model's applicability domain",
                   "out-of-domain": "OUTSIDE the model's applicability domain: not backed by its training data"}
# A refusal that the model decided (no information, outside the domain): the procedure was not performed;
# anything else (invalid input, a failed run, a timeout, an unwritable audit record) is an error.
_NOT_PERFORMED = ("out_of_domain", "no_information")
MANUFACTURER = "medinfer"

# FHIR R4's own forms (http://hl7.org/fhir/R4/references.html#literal and the uuid / oid datatypes): a relative
# Type/id[/_history/vid], the same after an http(s) base of the characters the spec's regex allows, a urn:uuid: with
# an RFC 4122 UUID (lowercase, as FHIR's uuid type), a urn:oid: with an OID. Nothing else (no markup, no spaces).
_LITERAL = r"[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}(/_history/[A-Za-z0-9\-.]{1,64})?"
REFERENCE = re.compile(rf"^({_LITERAL}"
                       rf"|https?://[A-Za-z0-9\-.:%$]+(/[A-Za-z0-9\-.:%$]+)*/{_LITERAL}"
                       r"|urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
                       r"|urn:oid:[0-2](\.(0|[1-9][0-9]*))+)$")


def coding(system: str, code: str, display: str) -> dict[str, Any]:
    """A one-coding CodeableConcept whose text repeats the display."""
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def concept(code: Coding | None) -> dict[str, Any] | None:
    """A declared :class:`~medinfer.codings.Coding` as a one-coding CodeableConcept (None stays None)."""
    return None if code is None else coding(code.system, code.code, code.display)


def check_subject(subject: str, what: str = "subject") -> str:
    """``subject`` when it is a FHIR R4 reference (:data:`REFERENCE`): ``Patient/123``, an absolute URL ending in
    ``Type/id`` (``https://ehr.example/fhir/Patient/123``), ``urn:uuid:`` with a UUID or ``urn:oid:`` with an OID.

    Raises:
        UsageError: anything else (a bare id, an empty string, a malformed UUID or OID, markup or spaces in a URL);
            ``what`` names the argument in the message.
    """
    if not isinstance(subject, str) or len(subject) > 2048 or not REFERENCE.match(subject):
        shown = subject[:80] if isinstance(subject, str) else subject
        raise UsageError(f"the FHIR {what} must be a reference such as 'Patient/123', "
                         "'https://ehr.example/fhir/Patient/123', 'urn:uuid:<a lowercase RFC 4122 UUID>' or "
                         f"'urn:oid:<an OID>'; got {shown!r}")
    return subject


def notes(manifest: Manifest, *extra: str) -> list[dict[str, str]]:
    """The model card's intended-use limits (and what the training data were) as FHIR Annotations."""
    card, data = manifest.card, manifest.data
    texts = [f"Intended use of {manifest.name} {manifest.version}: {card.intended_use}"]
    if card.out_of_scope:
        texts.append("Out of scope: " + " ".join(card.out_of_scope))
    if card.limitations:
        texts.append("Limitations: " + " ".join(card.limitations))
    if data.synthetic:
        texts.append("Trained and evaluated on SYNTHETIC data: " + (data.description or "see the model card"))
    return [{"text": t} for t in (*texts, *extra)]


def device_resource(manifest: Manifest, *, model_sha256: str, manifest_sha256: str, variant: str,
                    manufacturer: str | None = None) -> dict[str, Any]:
    """The ``Device`` of a bundle: name, versions, sha256 identifiers, manufacturer, intended use."""
    return {
        "resourceType": "Device",
        "identifier": [{"system": MANIFEST_ID, "value": manifest_sha256},
                       {"system": MODEL_ID, "value": model_sha256}],
        "status": "active",
        "manufacturer": manufacturer or MANUFACTURER,
        "deviceName": [{"name": manifest.name, "type": "model-name"}],
        "modelNumber": manifest.name,
        "type": {"text": "medical inference software (medinfer ONNX bundle)"},
        "version": [{"type": {"text": "model version"}, "value": manifest.version},
                    {"type": {"text": "variant"}, "value": variant},
                    {"type": {"text": "medinfer runtime"}, "value": __version__}],
        "note": notes(manifest)[:2],
    }


def domain_flag(inside: bool) -> dict[str, str]:
    """The coding of an applicability-domain flag (:data:`DOMAIN_CODES`)."""
    code = "in-domain" if inside else "out-of-domain"
    return {"system": DOMAIN_CODES, "code": code, "display": _DOMAIN_DISPLAY[code]}


def absent_reason(reason: str, message: str) -> dict[str, Any]:
    """``Observation.dataAbsentReason`` of a sample that got no result: ``not-performed`` when the model refused it
    (no information, outside the domain), ``error`` otherwise; the text says which refusal and why."""
    code = "not-performed" if reason in _NOT_PERFORMED else "error"
    display = "Not Performed" if code == "not-performed" else "Error"
    return {"coding": [{"system": DATA_ABSENT, "code": code, "display": display}],
            "text": f"no result ({reason}): {message}"[:1000]}
