"""docs/data-licences.md is the rendering of the source registry and the one licence table
(scripts/data_licences.py), and every model card carries the same verdicts from its own manifest."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytest.importorskip("medinfer.train.datasets.sources")


def _render() -> str:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import data_licences
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    return data_licences.render()


def test_the_page_is_current() -> None:
    assert (ROOT / "docs" / "data-licences.md").read_text() == _render(), (
        "docs/data-licences.md is stale: .venv/bin/python scripts/data_licences.py > docs/data-licences.md")


def test_every_source_has_a_known_licence_and_the_notes_model_is_not_commercial() -> None:
    from medinfer.tools.licences import spdx_id
    from medinfer.train.datasets.sources import all_sources

    unknown = {n: s.licence for n, s in all_sources().items() if spdx_id(s.licence) is None}
    assert unknown == {}
    rows = [r for r in _render().splitlines() if r.startswith("| `clinical_notes_tfidf`")]
    assert rows and all("| NO (" in r for r in rows)


def test_the_card_shows_each_sources_verdict(tmp_path: Path) -> None:
    from medinfer.export.card import render
    from medinfer.manifest import load_manifest

    from ..helpers import tiny

    card = render(load_manifest(tiny.build(tmp_path / "tiny")))
    assert "| licence | commercial use |" in card
    assert "| CC0 | yes (none) |" in card
    assert "**Commercial use of this model:** yes" in card
