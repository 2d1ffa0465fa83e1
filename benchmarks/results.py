"""``benchmarks/results/*.json``: raw measurements plus what made them, never prose; written only from committed code.

REPORT.md and README's numbers are rendered from these files (:mod:`benchmarks.report`, :mod:`benchmarks.readme`);
a results file that carries its own words would let a hand-written sentence pass for a measurement. Every file is
checked against :mod:`benchmarks.schema` (strings only in declared fields, bounded, no markdown, tool output only as
a captured error with its status; the command, the run's provenance and the sha256 of every bundle it timed).
:func:`write` refuses a document that does not follow it, and, into the repository's own folder, a run whose
provenance says its tree was dirty at its start or whose commit is not in HEAD's history
(:mod:`benchmarks.provenance`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from . import provenance, schema

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
FOLDER = HERE / "results"
# Committed files written before the schema (issue 24), by file: the paths of the problems tolerated until the lead
# re-publishes them (then the entry goes: tests/benchmarks/test_results_data.py fails on an entry that tolerates
# nothing). Nothing else is tolerated, and write() tolerates nothing.
LEGACY: dict[str, list[str]] = {
    "accelerator.json": ["$.provenance", "$.bundles", "$.diagnosis[*].why",
                         "$.results[*].providers.tensorrt.error", "$.first_run_with_tf32.*.cuda.error"],
    "runs_on.json": ["$.rows[*].provenance", "$.description"],
}


def problems(doc: Any, name: str = "") -> list[str]:
    """Why ``doc`` (results file ``name``, e.g. ``suite``) is not raw data with its provenance (empty: it is)."""
    return [f"{path}: {why}" for path, why in schema.problems(doc, name)]


def check_folder(folder: Path = FOLDER, tolerate: dict[str, list[str]] | None = None,
                 used: dict[str, set[str]] | None = None) -> dict[str, list[str]]:
    """{file name: problems} for every results file in ``folder`` that is not raw data, less the problems
    ``tolerate`` names for that file (``used`` collects the entries that tolerated something)."""
    bad = {}
    for path in sorted(folder.glob("*.json")):
        try:
            doc = json.loads(path.read_text())
        except ValueError as exc:
            bad[path.name] = [f"not JSON: {exc}"]
            continue
        left, hit = schema.tolerated(schema.problems(doc, path.stem), (tolerate or {}).get(path.name, []))
        if used is not None:
            used.setdefault(path.name, set()).update(hit)
        if left:
            bad[path.name] = [f"{p}: {why}" for p, why in left]
    return bad


def load(name: str, folder: Path = FOLDER) -> dict[str, Any] | None:
    """One results file (``suite`` -> ``results/suite.json``), or None when it is not there."""
    path = folder / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def write(name: str, doc: dict[str, Any], folder: Path = FOLDER, *, root: Path | None = None) -> Path:
    """Write a results file after checking it follows the schema; into the repository's own results folder (or
    with ``root``: a checkout to check against) only a run whose recorded start was clean and whose commit is in
    HEAD's history.

    Raises:
        ValueError: the document is not raw data with its provenance (naming the problems).
        provenance.UnpublishableRun: the run's tree was dirty at its start, or its commit is not in the history.
    """
    found = problems(doc, name)
    if found:
        raise ValueError(f"results/{name}.json would not be raw data: {'; '.join(found[:5])}")
    if root is not None or folder.resolve() == FOLDER.resolve():
        entries = doc[schema.ROWS[name]] if name in schema.ROWS else [doc]
        for entry in entries:
            provenance.check_recorded(entry.get("provenance"), root, f"results/{name}.json")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
    return path


def publishable_entries(name: str, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The entries of a file made of separate runs (``runs_on``, ``int8_ops``) that follow the schema; the others
    (written before it) are dropped with a warning: they cannot be published again, only measured again."""
    keep = []
    for entry in entries:
        found = problems({schema.ROWS[name]: [entry]}, name)
        if found:
            log.warning("results/%s.json: dropping an entry that cannot be published (%s); measure it again",
                        name, found[0])
            continue
        keep.append(entry)
    return keep
