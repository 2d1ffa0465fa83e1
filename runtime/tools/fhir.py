"""FHIR R4 resources for medinfer results, for an EHR (extra ``[fhir]``: fhir.resources, imported lazily).

Every answer is a ``transaction`` Bundle that an EHR can take as it is (``POST [base]``):

- a ``Device`` for the bundle that made the result: name, version, variant, the sha256 of ``manifest.json``
  (which pins every file, so it identifies the whole bundle) and of the graph, the manufacturer, and the model
  card's intended use; created only if no Device carries that manifest sha256 yet (``ifNoneExist``);
- per result, a ``Provenance`` (HL7 AI Transparency on FHIR): ``target`` the result, ``agent`` the Device (author,
  identified by the bundle's manifest sha256), ``entity`` the input (source: the sha256 of the request's input,
  the digest its audit record holds, when the caller gives it; and each ``basis`` resource), ``reason`` AIAST; and
  every result carries the AIAST security label in ``meta.security``;
- per sample, the result in the resource its model declares (the manifest's ``codings``, from its spec):
  ``RiskAssessment`` (lung nodule, clinical-note abnormality: the model's probability of the finding),
  ``Observation`` (the glucose FORECAST in mg/dL with UCUM units, effective 30 minutes after the last input step;
  the cell type of the gene model with its probability). Each references the Device (``performer`` /
  ``device``), the resources the input came from (``basis`` / ``derivedFrom``) and carries the model card's
  intended-use limits in ``note``. Status is ``preliminary``: a person has not reviewed it.

What a result means is the spec's declaration (:mod:`medinfer.codings`: SNOMED CT where it fits, plainly local
code systems otherwise); code systems, Device and notes: :mod:`medinfer.tools.fhir_map`.

The drug-activity model is a research tool: its output is refused unless asked for as a generic Observation
(``generic=True``, ``--fhir-generic``), which any model can produce. Models that declare none are refused the
same way. Every Bundle is validated with fhir.resources before it is returned; R4 is read with its ``R4B``
models, which are identical for Device, Observation, RiskAssessment and Bundle as used here.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import numpy as np

from ..codings import FhirResult, codings_of
from ..errors import UsageError
from ..extras import optional_import
from ..manifest import Manifest
from ..prediction import Prediction

if TYPE_CHECKING:
    from ..items import ItemResults
from .fhir_map import (
    AIAST,
    INPUT_ID,
    LOCAL,
    MANIFEST_ID,
    PARTICIPANT,
    RESULT_CODES,
    UCUM,
    absent_reason,
    check_subject,
    coding,
    concept,
    device_resource,
    domain_flag,
    notes,
)

# No import of .dicom here: FHIR output of a table or a text needs no pydicom.


def require_fhir() -> Any:
    """fhir.resources' R4B bundle module (the [fhir] extra), or MissingExtraError naming it."""
    optional_import("fhir.resources.R4B", "fhir", "FHIR output")
    from fhir.resources.R4B import bundle

    return bundle


def validate(doc: dict[str, Any]) -> dict[str, Any]:
    """Construct fhir.resources models from a Bundle's JSON (every entry's resource by its type).

    Returns:
        The Bundle as fhir.resources writes it back (the JSON an EHR receives).

    Raises:
        MissingExtraError: fhir.resources is not installed.
        UsageError: the document is not a valid FHIR Bundle; the message names the first bad field (e.g.
            ``entry[1].resource.subject.reference``) and what fhir.resources said of it. Nothing is written.
    """
    bundle = require_fhir()
    try:
        model = bundle.Bundle.model_validate(doc)
    except ValueError as exc:
        errors = getattr(exc, "errors", None)
        first = errors()[0] if callable(errors) and errors() else {}
        field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first.get("loc", ())).lstrip(".")
        said = str(first.get("msg", exc))[:200]
        raise UsageError(f"the FHIR Bundle does not validate (fhir.resources): field '{field or '?'}': {said}; "
                         "it is not written (check --fhir-subject, --fhir-basis and --fhir-time)") from None
    return json.loads(model.model_dump_json(exclude_none=True))  # type: ignore[no-any-return]


def instant(at: datetime | None) -> datetime:
    """``at`` (default: now, UTC, whole seconds) checked: a time zone, a year FHIR arithmetic can reach."""
    if at is None:
        return datetime.now(timezone.utc).replace(microsecond=0)
    if at.tzinfo is None:
        raise UsageError(f"the FHIR time {at.isoformat()} has no time zone; give one, e.g. "
                         f"{at.isoformat()}+00:00 (FHIR dateTime values with a time must carry one)")
    if not FIRST_YEAR <= at.year <= LAST_YEAR:  # far times overflow date arithmetic (a forecast's horizon, UTC)
        raise UsageError(f"the FHIR time {at.isoformat()} is outside the years {FIRST_YEAR} to {LAST_YEAR}; give the "
                         "time the input's last observation was made")
    return at


FIRST_YEAR, LAST_YEAR = 1900, 2200


def new_urn() -> str:
    """A new ``urn:uuid:`` (a Bundle entry's fullUrl)."""
    return f"urn:uuid:{uuid.uuid4()}"


@dataclass(frozen=True)
class Source:
    """What made a result: the manifest and digests of the bundle, the Device's fullUrl."""

    manifest: Manifest
    model_sha256: str
    manifest_sha256: str
    variant: str
    device_url: str


def references(refs: Sequence[str]) -> list[dict[str, Any]]:
    """FHIR Reference objects of ``refs``, each checked as a reference (:func:`check_subject`)."""
    if isinstance(refs, str):
        refs = [refs]
    return [{"reference": check_subject(ref, "basis reference")} for ref in refs]


def result_mapping(manifest: Manifest, generic: bool) -> FhirResult | None:
    """What the model's manifest declares its FHIR result to be; None for a generic Observation.

    Raises:
        UsageError: the model declares none, or declares its output refused.
    """
    if generic:
        return None
    mapping = codings_of(manifest).fhir
    if mapping is None:
        raise UsageError(f"{manifest.name} has no patient-facing FHIR mapping (its spec declares no FHIR coding: "
                         "codings.fhir in the manifest); ask for a generic Observation of its output with "
                         "generic=True (CLI: --fhir-generic)")
    if mapping.refused:
        raise UsageError(f"FHIR output of {manifest.name} is refused: it {mapping.refused}. Ask for a generic "
                         "Observation with generic=True (CLI: --fhir-generic) if you need it recorded anyway")
    return mapping


def _probability(value: float) -> float:
    return round(float(value), 6)


def risk_assessment(src: Source, mapping: FhirResult, *, subject: str, basis: list[dict[str, Any]], when: datetime,
                    probability: float, rationale: str, extra_notes: Sequence[str] = ()) -> dict[str, Any]:
    """A preliminary RiskAssessment of the model's probability of its declared outcome, performed by the Device."""
    return {
        "resourceType": "RiskAssessment",
        "status": "preliminary",
        "code": concept(mapping.code),
        "method": coding(f"{LOCAL}:CodeSystem:model", src.manifest.name,
                         f"{src.manifest.name} {src.manifest.version} ({src.variant})"),
        "subject": {"reference": subject},
        "occurrenceDateTime": when.isoformat(),
        "performer": {"reference": src.device_url},
        **({"basis": basis} if basis else {}),
        "prediction": [{"outcome": concept(mapping.outcome), "probabilityDecimal": _probability(probability),
                        "rationale": rationale}],
        "note": notes(src.manifest, *extra_notes),
    }


def _observation(src: Source, code: dict[str, Any], *, subject: str, basis: list[dict[str, Any]],
                 effective: datetime, issued: datetime, value: dict[str, Any],
                 components: Sequence[dict[str, Any]] = (), extra_notes: Sequence[str] = ()) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "preliminary",
        "code": code,
        "subject": {"reference": subject},
        "effectiveDateTime": effective.isoformat(),
        "issued": issued.isoformat(),
        **value,
        "method": coding(f"{LOCAL}:CodeSystem:model", src.manifest.name,
                         f"{src.manifest.name} {src.manifest.version} ({src.variant})"),
        "device": {"reference": src.device_url},
        **({"derivedFrom": basis} if basis else {}),
        **({"component": list(components)} if components else {}),
        "note": notes(src.manifest, *extra_notes),
    }


def _probability_component(p: float, of: str) -> dict[str, Any]:
    return {"code": coding(RESULT_CODES, "model-probability", f"Model probability of '{of}'"),
            "valueQuantity": {"value": _probability(p), "unit": "1", "system": UCUM, "code": "1"}}


def _label_value(manifest: Manifest, label: str) -> dict[str, Any]:
    return {"valueCodeableConcept": coding(f"{LOCAL}:CodeSystem:{manifest.name}:label", label, label)}


def _score_units(manifest: Manifest) -> str | None:
    return next((o.units for o in manifest.outputs if o.name == manifest.decision.score_output), None)


def _forecast(src: Source, mapping: FhirResult, value: float, *, subject: str, basis: list[dict[str, Any]],
              at: datetime, issued: datetime, at_given: bool) -> dict[str, Any]:
    manifest = src.manifest
    units = _score_units(manifest)
    if units != "mg/dL":
        raise UsageError(f"{manifest.name}'s score output declares units {units!r}; the FHIR glucose forecast "
                         "needs mg/dL")
    horizon = next((s.facts.get("horizon_minutes") for s in manifest.inputs if s.facts.get("horizon_minutes")),
                   None)
    if not horizon:
        raise UsageError(f"{manifest.name}'s manifest declares no forecast horizon (input facts "
                         "'horizon_minutes'): the forecast's effective time would be unknown")
    horizon = int(horizon)
    declared = concept(mapping.code)
    code = {"coding": declared["coding"] if declared else [],
            "text": f"Blood glucose FORECAST {horizon} minutes ahead (model output, not a measurement)"}
    return _observation(
        src, code, subject=subject, basis=basis, effective=at + timedelta(minutes=horizon), issued=issued,
        value={"valueQuantity": {"value": round(float(value), 1), "unit": "mg/dL", "system": UCUM,
                                 "code": "mg/dL"}},
        extra_notes=(f"FORECAST, not a measured glucose value: effective time = the last input step "
                     f"({at.isoformat()}{'' if at_given else ', taken as the time of the request'}) + {horizon} "
                     "minutes. Coded in a local code system because no LOINC code describes a predicted glucose "
                     "value.",))


def _generic(src: Source, scores: np.ndarray, labels: np.ndarray | None, i: int, *, subject: str,
             basis: list[dict[str, Any]], at: datetime, issued: datetime) -> dict[str, Any]:
    manifest = src.manifest
    code = coding(f"{LOCAL}:CodeSystem:model-output", manifest.name,
                  f"{manifest.name} {manifest.version} output (research use; not a clinical observation)")
    components: list[dict[str, Any]] = []
    if labels is not None:
        label = str(labels[i])
        value = _label_value(manifest, label)
        components.append(_probability_component(_label_probability(manifest, scores[i], label), label))
    else:
        units = _score_units(manifest) or ""
        quantity: dict[str, Any] = {"value": float(np.ravel(scores[i])[0])}
        if units:
            quantity["unit"] = units
        if units in ("mg/dL", "1"):
            quantity.update(system=UCUM, code=units)
        value = {"valueQuantity": quantity}
    return _observation(src, code, subject=subject, basis=basis, effective=at, issued=issued, value=value,
                        components=components,
                        extra_notes=("Generic record of a model output, asked for explicitly: not a clinical "
                                     "observation and not to be used for patient care.",))


def _provenance(src: Source, target: str, when: datetime, input_sha256: str | None,
                basis: list[dict[str, Any]], sample: str) -> dict[str, Any]:
    """The Provenance of one result (see the module docstring)."""
    entities = []
    if input_sha256:
        entities.append({"role": "source", "what": {
            "identifier": {"system": INPUT_ID, "value": input_sha256},
            "display": f"model input ({sample}): sha256 of the request's input as its audit record holds it (of "
                       "the input file for a DICOM slice); the input itself is not stored"}})
    entities += [{"role": "source", "what": ref} for ref in basis]
    return {
        "resourceType": "Provenance",
        "target": [{"reference": target}],
        "occurredDateTime": when.isoformat(),
        "recorded": instant(None).isoformat(),
        "reason": [{"coding": [AIAST], "text": "produced by an AI model"}],
        "agent": [{"type": {"coding": [{"system": PARTICIPANT, "code": "author", "display": "Author"}]},
                   "who": {"reference": src.device_url,
                           "display": f"{src.manifest.name} {src.manifest.version} ({src.variant}), manifest sha256 "
                                      f"{src.manifest_sha256}"}}],
        **({"entity": entities} if entities else {}),
    }


def transaction(src: Source, resources: list[dict[str, Any]], manufacturer: str | None, *,
            input_sha256: str | None = None, basis: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """The transaction Bundle: the Device (if new), each result with the AIAST label, each result's Provenance;
    validated (:func:`validate`)."""
    device = device_resource(src.manifest, model_sha256=src.model_sha256, manifest_sha256=src.manifest_sha256,
                             variant=src.variant, manufacturer=manufacturer)
    entries = [{"fullUrl": src.device_url, "resource": device,
                "request": {"method": "POST", "url": "Device",
                            "ifNoneExist": f"identifier={MANIFEST_ID}|{src.manifest_sha256}"}}]
    provenances = []
    for i, r in enumerate(resources):
        r.setdefault("meta", {}).setdefault("security", []).append(dict(AIAST))
        url = new_urn()
        entries.append({"fullUrl": url, "resource": r, "request": {"method": "POST", "url": r["resourceType"]}})
        when = datetime.fromisoformat(r.get("occurrenceDateTime") or r.get("effectiveDateTime")
                                      or instant(None).isoformat())
        sample = f"sample {i + 1} of {len(resources)}"
        provenances.append(_provenance(src, url, when, input_sha256, list(basis), sample))
    entries += [{"fullUrl": new_urn(), "resource": p, "request": {"method": "POST", "url": "Provenance"}}
                for p in provenances]
    doc = {"resourceType": "Bundle", "type": "transaction",
           "timestamp": datetime.now(timezone.utc).replace(microsecond=0).isoformat(), "entry": entries}
    return validate(doc)


def to_fhir(pred: Prediction | ItemResults, subject: str, *, basis: Sequence[str] = (), at: datetime | None = None,
            generic: bool = False, manufacturer: str | None = None,
            input_sha256: str | None = None) -> dict[str, Any]:
    """FHIR R4 resources for a prediction: a transaction Bundle with a Device for the bundle, one RiskAssessment
    or Observation per sample, as the model's manifest declares, and each result's Provenance (needs the [fhir]
    extra).

    A model with a domain guard tags every result with its flag (``meta.tag``, :data:`~.fhir_map.DOMAIN_CODES`);
    a sample outside the domain also says so in a note (and, for an Observation, its ``interpretation``). A sample
    that got no result (per-item answers, ``predict(x, on_error="item")``) gets a ``cancelled`` resource without a
    value: an Observation with its ``dataAbsentReason``, a RiskAssessment without a prediction, each with the reason
    in a note — never a value presented as valid.

    Args:
        pred: what :meth:`medinfer.Model.predict` returned (a Prediction, or per-item :class:`ItemResults`).
        subject: the reference of the patient (or group) the input came from, e.g. ``"Patient/123"``.
        basis: references of the resources the input was taken from (``RiskAssessment.basis`` /
            ``Observation.derivedFrom``), e.g. ``["DocumentReference/report-7"]``.
        at: when the input's last observation was made (default: now, UTC); a forecast's effective time is this
            plus the model's horizon.
        generic: a plain Observation of the model output, for models that declare no clinical coding (research
            tools such as the drug-activity model are refused otherwise).
        manufacturer: ``Device.manufacturer`` (default: ``"medinfer"``).
        input_sha256: the digest of the request's input (:func:`medinfer.audit.input_digest` of the validated
            feeds, what the audit record holds): the input entity of each result's Provenance.

    Raises:
        MissingExtraError: fhir.resources is not installed.
        UsageError: a refused or unmapped model without ``generic``, a bad subject, basis or time.
    """
    from ..items import ItemResults

    items = pred if isinstance(pred, ItemResults) else None
    manifest = pred.manifest
    if manifest is None:
        raise UsageError("this Prediction carries no manifest; make it with medinfer.load(...).predict(...)")
    subject = check_subject(subject)
    refs = references(basis)
    mapping = result_mapping(manifest, generic)  # a wrong request is named before a missing extra
    require_fhir()
    when, issued = instant(at), instant(None)
    src = Source(manifest, pred.model_sha256, pred.manifest_sha256, pred.variant, new_urn())
    scores, labels, inside = np.asarray(pred.scores), pred.labels, pred.in_domain
    failures = items.failures if items is not None else {}
    threshold = manifest.decision.threshold
    resources = []
    for i in range(len(pred)):
        if i in failures:
            resources.append(refused_resource(src, mapping, failures[i], subject=subject, basis=refs, at=when,
                                      issued=issued))
            continue
        if mapping is None:
            resources.append(_generic(src, scores, labels, i, subject=subject, basis=refs, at=when, issued=issued))
        elif mapping.value == "probability":
            label = str(labels[i]) if labels is not None else ""
            at_t = f" at the operating threshold {threshold:g}" if threshold is not None else ""
            resources.append(risk_assessment(src, mapping, subject=subject, basis=refs, when=issued,
                                   probability=float(scores[i]),
                                   rationale=f"model decision '{label}'{at_t} (score {float(scores[i]):.4f})"))
        elif mapping.value == "forecast":
            resources.append(_forecast(src, mapping, float(np.ravel(scores[i])[0]), subject=subject, basis=refs,
                                       at=when, issued=issued, at_given=at is not None))
        else:
            label = str(labels[i]) if labels is not None else ""
            resources.append(_observation(
                src, concept(mapping.code) or {}, subject=subject, basis=refs, effective=when, issued=issued,
                value=_label_value(manifest, label),
                components=[_probability_component(_label_probability(manifest, scores[i], label), label)]))
        if inside is not None and inside[i] is not None:
            flag_domain(resources[-1], bool(inside[i]), manifest)
    if pred.explanation is not None:  # predict(..., explain=True): why, as a note of each sample's resource
        from .explain_text import note

        rows = items.answered.tolist() if items is not None else list(range(len(resources)))
        for row, i in enumerate(rows):
            resources[i].setdefault("note", []).append({"text": note(pred.explanation, row)})
    return transaction(src, resources, manufacturer, input_sha256=checked_digest(input_sha256), basis=refs)


def flag_domain(resource: dict[str, Any], inside: bool, manifest: Manifest) -> None:
    """Tag a result with its applicability-domain flag; outside the domain also say so where a reader looks."""
    resource.setdefault("meta", {}).setdefault("tag", []).append(domain_flag(inside))
    if inside:
        return
    domain = manifest.domain
    limit = f" (domain score above {domain.threshold:.4g}, the threshold that accepts {domain.coverage:.0%} of " \
            "held-out in-domain data)" if domain is not None else ""
    resource.setdefault("note", []).insert(0, {"text": f"OUTSIDE the model's applicability domain{limit}: this "
                                                       "answer is not backed by its training data; do not rely on it"})
    if resource["resourceType"] == "Observation":
        resource["interpretation"] = [{"coding": [domain_flag(False)], "text": "outside the model's applicability "
                                                                              "domain"}]


def refused_resource(src: Source, mapping: FhirResult | None, refusal: Any, *, subject: str,
                     basis: list[dict[str, Any]], at: datetime, issued: datetime) -> dict[str, Any]:
    """A sample that got no result: ``cancelled``, no value, the reason in a note (and an Observation's
    ``dataAbsentReason``)."""
    manifest = src.manifest
    why = [f"NO RESULT for this sample ({refusal.reason}): {refusal.message}"]
    if mapping is not None and mapping.resource == "RiskAssessment":
        risk = risk_assessment(src, mapping, subject=subject, basis=basis, when=issued, probability=0.0, rationale="",
                     extra_notes=())
        risk.pop("prediction")
        risk["status"] = "cancelled"
        risk["note"] = [{"text": t} for t in why] + risk["note"]
        return risk
    code = (concept(mapping.code) or {}) if mapping is not None else \
        coding(f"{LOCAL}:CodeSystem:model-output", manifest.name, f"{manifest.name} {manifest.version} output")
    obs = _observation(src, code, subject=subject, basis=basis, effective=at, issued=issued, value={})
    obs["status"] = "cancelled"
    obs["dataAbsentReason"] = absent_reason(refusal.reason, refusal.message)
    obs["note"] = [{"text": t} for t in why] + obs["note"]
    return obs


def checked_digest(value: str | None) -> str | None:
    """``value`` when it is a sha256 hex digest (or None); else UsageError."""
    if value is not None and (not isinstance(value, str) or len(value) != 64 or
                              any(c not in "0123456789abcdef" for c in value)):
        raise UsageError(f"input_sha256 must be 64 lowercase hex digits (medinfer.audit.input_digest), got {value!r}")
    return value


def _label_probability(manifest: Manifest, row: np.ndarray, label: str) -> float:
    """The probability of the decided label: its column (multiclass) or from the positive-class score (binary)."""
    if np.ndim(row):
        return float(np.ravel(row)[list(manifest.labels or ()).index(label)])
    return float(row) if label == manifest.decision.positive_label else 1.0 - float(row)


def parse_time(text: str | None) -> datetime | None:
    """``--fhir-time`` / the serve parameter: an ISO 8601 date-time with a time zone (None: now).

    Raises:
        UsageError: not ISO 8601, or no time zone.
    """
    if text is None:
        return None
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"the FHIR time must be ISO 8601 with a time zone, e.g. 2026-01-31T08:00:00+00:00; "
                         f"got {text!r}") from None
    return instant(at)
