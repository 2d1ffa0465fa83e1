"""The clinical codings a model declares (manifest ``codings``, part of the schema in manifest.py).

A spec says what its output means in the coded vocabularies of the systems it reports to — the FHIR resource and
codes of its result for an EHR, the finding of its regions in a DICOM SR — and the exporter writes that into the
manifest. The output tools (``medinfer.tools.fhir``, ``medinfer.tools.dicom_out``) read it from the manifest;
they hold no table of models. A model that declares none gets only the generic outputs, on request.

Bundles written before the field existed carry no ``codings``: :func:`codings_of` gives them the codings the
output tools applied to the five shipped models by name at the time (:data:`WRITTEN_BEFORE`), so an old bundle's
FHIR and DICOM output stays what it was. A new model never lands there: its spec declares its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
LOCAL = "urn:medinfer:fhir"  # local code systems, named so that nobody mistakes them for a standard terminology
RESULT_CODES = f"{LOCAL}:CodeSystem:result"  # what was assessed or observed


@dataclass(frozen=True)
class Coding:
    """One code of a code system (FHIR ``Coding``; DICOM code value, scheme designator and meaning)."""

    system: str
    code: str
    display: str


@dataclass(frozen=True)
class FhirResult:
    """How the model's output becomes FHIR: the resource, its code, and for a risk the outcome assessed.

    ``value``: ``probability`` (a risk of ``outcome``), ``forecast`` (a regression in the score output's units,
    effective after the input's ``horizon_minutes``) or ``label`` (a class, with its probability). ``refused``:
    why the output must not become a patient-facing resource (a generic Observation is still given on request).
    """

    resource: Literal["RiskAssessment", "Observation"] = "Observation"
    code: Coding | None = None
    outcome: Coding | None = None
    value: Literal["probability", "forecast", "label"] = "probability"
    refused: str = ""


@dataclass(frozen=True)
class Codings:
    """What a model's results mean in coded vocabularies (manifest ``codings``)."""

    fhir: FhirResult | None = None
    # the finding of each region a CT model reports in a DICOM SR (system = the DICOM coding scheme designator)
    dicom_finding: Coding | None = None


NODULE = Coding("SCT", "786838002", "Pulmonary nodule")  # SNOMED CT "Nodule of lung (disorder)"

#: The codings medinfer's output tools applied BY MODEL NAME before manifests carried them: read only for a
#: manifest without ``codings`` (a bundle exported before the field existed), never for a new one.
WRITTEN_BEFORE: dict[str, Codings] = {
    "lung_nodule_cnn": Codings(
        fhir=FhirResult("RiskAssessment", Coding(RESULT_CODES, "lung-nodule-ct-region", "Lung nodule in a CT image "
                                                 "region (model assessment)"),
                        outcome=Coding(SNOMED, NODULE.code, NODULE.display)),
        dicom_finding=NODULE),
    "clinical_notes_tfidf": Codings(fhir=FhirResult(
        "RiskAssessment", Coding(RESULT_CODES, "chest-xray-report-abnormality", "Abnormal study described by a chest "
                                 "X-ray report's text (model assessment)"),
        outcome=Coding(RESULT_CODES, "abnormal-chest-xray-report", "Chest X-ray report describes an abnormal study"))),
    "glucose_lstm": Codings(fhir=FhirResult(
        "Observation", Coding(RESULT_CODES, "glucose-forecast", "Blood glucose FORECAST (model output, not a "
                              "measurement)"), value="forecast")),
    "gene_expression_svd": Codings(fhir=FhirResult(
        "Observation", Coding(RESULT_CODES, "cell-type", "Cell type of a single-cell expression profile (model "
                              "classification)"), value="label")),
    "drug_activity_rf": Codings(fhir=FhirResult(refused=(
        "is a research tool for ranking compounds of one chemical series, not a patient-facing model; its output is "
        "not a clinical result"))),
}


class _Declares(Protocol):
    """What :func:`codings_of` reads of a :class:`~medinfer.manifest.Manifest` (frozen: read-only attributes)."""

    @property
    def name(self) -> str: ...

    @property
    def codings(self) -> Codings | None: ...


def codings_of(manifest: _Declares) -> Codings:
    """The manifest's codings; for a bundle written before manifests carried them, what the tools applied then."""
    if manifest.codings is not None:
        return manifest.codings
    return WRITTEN_BEFORE.get(manifest.name, Codings())
