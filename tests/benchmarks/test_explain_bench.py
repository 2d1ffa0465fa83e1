"""``python -m benchmarks explain`` writes raw data with its provenance: the document it builds for tiny bundles of
each explanation kind (linear, occlusion, masking) follows the results schema."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from benchmarks import explain, provenance, results

from ..helpers import tiny_explain


@pytest.mark.parametrize("make", [tiny_explain.linear, tiny_explain.occlusion, tiny_explain.masking])
def test_the_explain_document_is_raw_data(tmp_path: Path, make: Callable[[Path], Path]) -> None:
    bundle = make(tmp_path / "b")
    started = provenance.capture()
    doc = explain.collect([bundle], 0.05, 1, "python -m benchmarks explain --bundles b", progress=lambda _: None)
    doc = {"kind": "medinfer.explain", "time": started["started"], "provenance": started,
           "bundles": provenance.bundles_of([bundle]), **doc}
    assert doc["models"], "the bundle was not measured"
    assert results.problems(doc, "explain") == []
    assert results.problems({**doc, "note": "medinfer explains 3x faster"}, "explain")  # prose is still refused
