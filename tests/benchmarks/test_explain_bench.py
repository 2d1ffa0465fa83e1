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


def test_readme_examples_are_those_of_the_published_bundles() -> None:
    """README's explanation examples name each model of results/explain.json with its method (both rendered from
    the same built bundles by make bench-explain), and nothing else."""
    import json
    import re

    root = Path(__file__).resolve().parents[2]
    doc = json.loads((root / "benchmarks" / "results" / "explain.json").read_text())
    block = (root / "README.md").read_text().split("<!-- explain-examples:start", 1)[1]
    block = block.split("<!-- explain-examples:end -->", 1)[0]
    shown = dict(re.findall(r"^- \*\*(\w+)\*\* \((\w+)\)", block, re.M))
    assert shown == {name: m["method"] for name, m in doc["models"].items()}
