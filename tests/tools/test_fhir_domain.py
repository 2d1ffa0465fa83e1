"""FHIR carries the guard (issue 26): every result of a guarded model is tagged with its applicability-domain flag;
one outside the domain says so in a note and (an Observation) in its interpretation; an item without a result is a
cancelled resource without a value, its dataAbsentReason saying why."""

from __future__ import annotations

from pathlib import Path

import medinfer
import numpy as np
import pytest

from ..helpers import tiny

X = np.array([[1.0, 1.0, 1.0], [5.0, 5.0, 5.0], [50.0, 0.0, 0.0]], np.float32)  # inside, outside, invalid


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.build_domain(tmp_path_factory.mktemp("fhir_domain") / "tiny_domain", threshold=1.0)


def _observations(doc: dict) -> list[dict]:
    return [e["resource"] for e in doc["entry"] if e["resource"]["resourceType"] == "Observation"]


def test_a_flagged_result_says_it_is_outside_the_domain(guarded: Path) -> None:
    pytest.importorskip("fhir.resources")
    from medinfer.tools.fhir import to_fhir

    inside, outside = _observations(to_fhir(medinfer.load(guarded).predict(X[:2]), "Patient/p1", generic=True))
    assert inside["meta"]["tag"][0]["code"] == "in-domain" and "interpretation" not in inside
    assert outside["meta"]["tag"][0]["code"] == "out-of-domain"
    assert outside["interpretation"][0]["coding"][0]["code"] == "out-of-domain"
    assert outside["note"][0]["text"].startswith("OUTSIDE the model's applicability domain")
    plain = _observations(to_fhir(medinfer.load(tiny.build(guarded.parent / "plain")).predict(X[:1]), "Patient/p1",
                                  generic=True))[0]
    assert "tag" not in plain.get("meta", {})  # a model without a guard claims nothing


def test_an_item_without_a_result_has_no_value(guarded: Path) -> None:
    pytest.importorskip("fhir.resources")
    from medinfer.tools.fhir import to_fhir

    got = medinfer.load(guarded, out_of_domain="no_result").predict(X, on_error="item")
    first, second, third = _observations(to_fhir(got, "Patient/p1", generic=True))
    assert first["status"] == "preliminary" and "valueCodeableConcept" in first
    for refused, code in ((second, "not-performed"), (third, "error")):
        assert refused["status"] == "cancelled" and refused["dataAbsentReason"]["coding"][0]["code"] == code
        assert not any(k.startswith("value") for k in refused) and "component" not in refused
        assert refused["note"][0]["text"].startswith("NO RESULT")
