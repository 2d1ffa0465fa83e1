"""The promise catalogue (``promises/catalogue.toml``): each guarantee, the mechanism that keeps it, a small
mutation that removes that mechanism, and the tests that must notice.

A mutation is a list of edits ``{file, find, replace}``: ``find`` is an exact snippet that must occur exactly once
in ``file`` (robust to line moves; an edit that no longer applies is reported by name, never skipped).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomllib

ROOT = Path(__file__).resolve().parents[1]
CATALOGUE = ROOT / "promises" / "catalogue.toml"
DOCS = ("SECURITY.md", "README.md")


class CatalogueError(ValueError):
    """The catalogue is malformed, or a mutation no longer applies to the tree."""


@dataclass(frozen=True)
class Edit:
    file: str
    find: str
    replace: str

    def apply(self, root: Path) -> tuple[Path, str]:
        """The edited text of ``root/file`` (not written) and the original.

        Raises:
            CatalogueError: the file is missing, or ``find`` does not occur exactly once in it.
        """
        path = root / self.file
        if not path.is_file():
            raise CatalogueError(f"{self.file} does not exist (moved? re-point the mutation in {CATALOGUE.name})")
        text = path.read_text()
        count = text.count(self.find)
        if count != 1:
            raise CatalogueError(f"{self.file}: the snippet to mutate occurs {count} times (needs exactly 1; the code "
                                 f"changed? re-point it in {CATALOGUE.name}): {self.find[:120]!r}")
        return path, text.replace(self.find, self.replace)


@dataclass(frozen=True)
class Promise:
    id: str
    doc: str
    row: str
    promise: str
    mechanism: str
    mutation: str
    edits: tuple[Edit, ...]
    tests: tuple[str, ...]

    @property
    def mutation_sha256(self) -> str:
        """Digest of the mutation and the tests it is checked with (a change asks for a new run)."""
        doc = {"edits": [e.__dict__ for e in self.edits], "tests": list(self.tests)}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()

    def mutated(self, root: Path) -> dict[Path, tuple[str, str]]:
        """``{path: (original, mutated)}`` for the tree at ``root``; several edits of one file apply in order.

        Raises:
            CatalogueError: an edit does not apply, or the mutated Python does not compile.
        """
        out: dict[Path, tuple[str, str]] = {}
        for edit in self.edits:
            path = root / edit.file
            original = out[path][0] if path in out else None
            if original is not None:  # a second edit of the same file applies to the first one's result
                current = out[path][1]
                count = current.count(edit.find)
                if count != 1:
                    raise CatalogueError(f"{self.id}: {edit.file}: a later snippet occurs {count} times")
                out[path] = (original, current.replace(edit.find, edit.replace))
            else:
                _, text = edit.apply(root)
                out[path] = (path.read_text(), text)
        for path, (_, text) in out.items():
            if path.suffix == ".py":
                try:
                    compile(text, str(path), "exec")
                except SyntaxError as exc:
                    raise CatalogueError(f"{self.id}: the mutated {path.name} does not compile: {exc}") from None
        return out


def _str(entry: dict[str, Any], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise CatalogueError(f"{where}: '{key}' must be a non-empty string")
    return value


def load(path: Path = CATALOGUE) -> list[Promise]:
    """Every promise of the catalogue, checked for shape (ids unique, docs known, tests named as paths).

    Raises:
        CatalogueError: naming the entry and the field.
    """
    doc = tomllib.loads(path.read_text())
    out: list[Promise] = []
    for i, entry in enumerate(doc.get("promise", [])):
        where = f"{path.name} promise #{i + 1} ({entry.get('id', '?')})"
        pid = _str(entry, "id", where)
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", pid):
            raise CatalogueError(f"{where}: id must be lower-case words joined by '-'")
        if entry.get("doc") not in DOCS:
            raise CatalogueError(f"{where}: doc must be one of {DOCS}")
        edits = tuple(Edit(_str(e, "file", where), _str(e, "find", where), str(e.get("replace", "")))
                      for e in entry.get("edit", []))
        tests = tuple(entry.get("tests", []))
        if not edits or not tests or not all(isinstance(t, str) and t.startswith("tests/") for t in tests):
            raise CatalogueError(f"{where}: needs at least one [[promise.edit]] and tests = ['tests/...']")
        out.append(Promise(pid, entry["doc"], _str(entry, "row", where), _str(entry, "promise", where),
                           _str(entry, "mechanism", where), _str(entry, "mutation", where), edits, tests))
    ids = [p.id for p in out]
    dup = sorted({x for x in ids if ids.count(x) > 1})
    if dup:
        raise CatalogueError(f"{path.name}: duplicate ids {dup}")
    return out


def security_rows(text: str) -> list[str]:
    """The guarantees SECURITY.md states: each threat row's first cell and each bold Guarantees item."""
    rows = []
    table = text.split("## Threat model and defences", 1)[1].split("\n## ", 1)[0]
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] not in ("threat", "") and not set(cells[0]) <= set("-"):
            rows.append(cells[0])
    guarantees = text.split("## Guarantees", 1)[1].split("\n## ", 1)[0]
    rows += re.findall(r"^- \*\*(.+?)\*\*", guarantees, re.M)
    return rows
