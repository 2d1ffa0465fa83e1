"""The rows of README's "Runs on" table: kept from each ``edge_check.py ... --record`` run, published together.

A recorded run keeps its row (with the provenance captured when it started: commit, clean tree, date) under
``build/edge/recorded/``; nothing in the repository changes, so the next run of ``make runs-on`` still starts from
the same clean, committed tree. ``python scripts/edge_check.py publish`` then refuses a dirty tree or a row whose
start was dirty or whose commit is not in HEAD's history, replaces those rows (by key) in
``benchmarks/results/runs_on.json`` (rows recorded before provenance existed are dropped: measure them again) and
rewrites the table.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import provenance, results  # noqa: E402

RECORDED = ROOT / "build" / "edge" / "recorded"
RESULTS = results.FOLDER / "runs_on.json"


def keep(row: dict[str, Any], folder: Path = RECORDED) -> Path:
    """Keep one recorded row for :func:`publish` (one file per row key)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (re.sub(r"[^A-Za-z0-9.]+", "-", row["key"]).strip("-") + ".json")
    path.write_text(json.dumps(row, indent=1) + "\n")
    return path


def merged(rows: list[dict[str, Any]], doc: dict[str, Any]) -> dict[str, Any]:
    """runs_on.json with ``rows`` replacing those of the same key (older rows kept only if still publishable)."""
    new = {r["key"] for r in rows}
    old = results.publishable_entries("runs_on", [r for r in doc.get("rows", []) if r["key"] not in new])
    return {"rows": sorted(old + rows, key=lambda r: r["key"])}


def publish(folder: Path = RECORDED, out: Path = RESULTS, root: Path | None = None) -> list[str]:
    """Publish the kept rows into runs_on.json; returns their keys.

    Raises:
        provenance.UnpublishableRun: a dirty tree, or a row measured on a dirty tree or outside HEAD's history.
        ValueError: no kept row, or a row that does not follow the results schema.
    """
    provenance.require_clean(root, "publishing the Runs-on rows")
    rows = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    if not rows:
        raise ValueError(f"no recorded row in {folder}: run `make runs-on` (edge_check.py ... --record) first")
    for row in rows:
        provenance.check_recorded(row.get("provenance"), root, f"the Runs-on row {row['key']!r}")
    doc = merged(rows, json.loads(out.read_text()) if out.is_file() else {})
    results.write(out.stem, doc, out.parent, root=root or provenance.ROOT)
    for p in folder.glob("*.json"):
        p.unlink()
    return [r["key"] for r in rows]
