"""Every promise names its test: each test that SECURITY.md, README.md and docs/*.md cite must exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
def _citations(doc: str) -> list[tuple[str, str | None]]:
    text = (ROOT / doc).read_text()
    found: list[tuple[str, str | None]] = []
    for chunk in re.findall(r"`[^`]*tests/[^`]*`(?:, `::[^`]*`)*", text):
        current = None
        for token in re.findall(r"tests/[\w/]+\.py(?:::\w+)?|::\w+", chunk):
            if token.startswith("tests/"):
                current, _, name = token.partition("::")
                found.append((current, name or None))
            elif current:
                found.append((current, token[2:]))
    return found


@pytest.mark.parametrize("doc", ["SECURITY.md", "README.md",
                                 *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))])
def test_every_cited_test_exists(doc: str) -> None:
    cited = _citations(doc)
    assert len(cited) > (30 if doc == "SECURITY.md" else 0)
    missing = []
    for file, name in cited:
        path = ROOT / file
        if not path.is_file():
            missing.append(file)
        elif name and not re.search(rf"^(async )?def {name}\(", path.read_text(), re.M):
            missing.append(f"{file}::{name}")
    assert not missing, f"{doc} cites tests that do not exist: {missing}"
