"""The rule for ``benchmarks/results/*.json``: raw measurements plus the command that made them, never prose.

REPORT.md and README's numbers are rendered from these files (:mod:`benchmarks.report`, :mod:`benchmarks.readme`);
a results file that carries its own markdown would let a hand-written sentence pass for a measurement. The check is
mechanical: a ``command`` (top level, or in every row of a top-level list), no ``markdown``/``notes``/``findings``
key, and no string that looks like rendered text (a table row, emphasis, a bullet, a line break, or a long
sentence). Short descriptive labels (a data set's name, an error message of a failed run) are data and pass.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
FOLDER = HERE / "results"
PROSE_KEYS = {"markdown", "notes", "findings", "text", "prose", "summary_md"}
MAX_LABEL = 240  # characters; a longer string is a paragraph, not a label
_RENDERED = (re.compile(r"^\s*\|.*\|\s*$", re.M), re.compile(r"\*\*[^*]+\*\*"), re.compile(r"^\s*[-*] ", re.M),
             re.compile(r"\n"), re.compile(r"^#+ ", re.M))
# strings under these keys are recorded output of a tool (an error, a command line, a trace), not prose
TOOL_TEXT_KEYS = {"error", "command", "trace", "why", "stderr", "reason", "path", "out", "tree", "venv"}
# Maps whose values are a tool's own words keyed by what failed (a peer's error message, keyed by the peer).
TOOL_TEXT_MAPS = {"peers_unavailable"}


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, f"{path}[{i}]")


def _keys(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield f"{path}.{k}", k
            yield from _keys(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _keys(v, f"{path}[{i}]")


def has_command(doc: Any) -> bool:
    """A ``command`` string at the top, or in every element of the top-level lists that hold the rows."""
    if not isinstance(doc, dict):
        return False
    if isinstance(doc.get("command"), str) and doc["command"].strip():
        return True
    lists = [v for v in doc.values() if isinstance(v, list) and v and all(isinstance(e, dict) for e in v)]
    return bool(lists) and all(isinstance(e.get("command"), str) and e["command"].strip() for lst in lists for e in lst)


def problems(doc: Any) -> list[str]:
    """Why ``doc`` is not a raw results document (empty: it is one)."""
    out = []
    if not has_command(doc):
        out.append("no 'command' (the command that made these numbers)")
    for path, key in _keys(doc, "$"):
        if key.lower() in PROSE_KEYS:
            out.append(f"{path}: a '{key}' key (rendered text belongs in report.py, not in a results file)")
    for path, text in _strings(doc, "$"):
        if re.split(r"[.\[]", path)[-1] in TOOL_TEXT_KEYS or any(f".{m}." in path for m in TOOL_TEXT_MAPS):
            continue
        if len(text) > MAX_LABEL:
            out.append(f"{path}: a {len(text)}-character string (prose, not a measurement)")
        elif any(p.search(text) for p in _RENDERED):
            out.append(f"{path}: rendered text {text[:60]!r}")
    return out


def check_folder(folder: Path = FOLDER) -> dict[str, list[str]]:
    """{file name: problems} for every results file that is not raw data."""
    bad = {}
    for path in sorted(folder.glob("*.json")):
        found = problems(json.loads(path.read_text()))
        if found:
            bad[path.name] = found
    return bad


def load(name: str, folder: Path = FOLDER) -> dict[str, Any] | None:
    """One results file (``suite`` -> ``results/suite.json``), or None when it is not there."""
    path = folder / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def write(name: str, doc: dict[str, Any], folder: Path = FOLDER) -> Path:
    """Write a results file after checking it holds data only (raises ValueError naming the problems)."""
    found = problems(doc)
    if found:
        raise ValueError(f"results/{name}.json would not be raw data: {'; '.join(found[:5])}")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
    return path
