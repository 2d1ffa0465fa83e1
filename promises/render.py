"""The promise table in SECURITY.md (between markers), rendered from promises/results.json, and the cheap check
that results, catalogue, tree and SECURITY.md agree (tests/docs/test_promise_catalogue.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .catalogue import ROOT, CatalogueError, Promise, security_rows
from .runner import RESULTS

SECURITY = ROOT / "SECURITY.md"
BEGIN, END = "<!-- promises:begin -->", "<!-- promises:end -->"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _tests(tests: tuple[str, ...]) -> str:
    out, last = [], None
    for t in tests:
        path, _, name = t.partition("::")
        out.append(f"`::{name}`" if name and path == last else f"`{t}`")
        last = path
    return ", ".join(out)


def render(promises: list[Promise], results: dict[str, Any]) -> str:
    rows = {r["id"]: r for r in results.get("rows", [])}
    commits = sorted({f"{r['commit'][:10]}{'+dirty' if r['dirty'] else ''}" for r in rows.values()})
    caught = sum(1 for p in promises if rows.get(p.id, {}).get("caught"))
    lines = [f"{caught} of {len(promises)} promises caught by their tests when the mechanism is removed "
             f"(`make promises`, commit {', '.join(f'`{c}`' for c in commits) or 'none'}; raw data in "
             "`promises/results.json`, mutations in `promises/catalogue.toml`).", "",
             "| promise | mechanism | mutation (removes the mechanism) | test | caught |", "|---|---|---|---|---|"]
    for p in promises:
        r = rows.get(p.id)
        files = ", ".join(sorted({f"`{e.file}`" for e in p.edits}))
        verdict = "not run" if r is None else ("yes" if r["caught"] else
                                               "**no: survived**" if r["unmutated_pass"] else "**no: not passing**")
        lines.append(f"| {_cell(p.row)}: {_cell(p.promise)} | {_cell(p.mechanism)} | {_cell(p.mutation)} ({files}) | "
                     f"{_tests(p.tests)} | {verdict} |")
    return "\n".join(lines)


def rewrite(block: str, path: Path = SECURITY) -> None:
    text = path.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{path} lacks the markers {BEGIN} ... {END}")
    head, rest = text.split(BEGIN, 1)
    path.write_text(f"{head}{BEGIN}\n{block}\n{END}{rest.split(END, 1)[1]}")


def problems(promises: list[Promise], results: dict[str, Any], root: Path = ROOT) -> list[str]:
    """Why the committed results do not prove the current catalogue on the current tree ([] when they do)."""
    out = []
    for p in promises:
        try:
            p.mutated(root)
        except CatalogueError as exc:
            out.append(f"{p.id}: {exc}")
    rows = {r["id"]: r for r in results.get("rows", [])}
    for p in promises:
        r = rows.get(p.id)
        if r is None:
            out.append(f"{p.id}: no result (run: make promises ONLY={p.id})")
        elif r["mutation_sha256"] != p.mutation_sha256:
            out.append(f"{p.id}: its mutation or tests changed since the recorded run (run: make promises ONLY={p.id})")
        elif not r["caught"]:
            out.append(f"{p.id}: not caught (unmutated pass: {r['unmutated_pass']}, mutated fail: {r['mutated_fail']})")
    extra = sorted(set(rows) - {p.id for p in promises})
    if extra:
        out.append(f"results of promises no longer in the catalogue: {extra}")
    security = (root / "SECURITY.md").read_text()
    covered = {p.row for p in promises if p.doc == "SECURITY.md"}
    out += [f"SECURITY.md row {r!r} has no promise in the catalogue" for r in security_rows(security)
            if r not in covered]
    out += [f"promise {p.id} names SECURITY.md row {p.row!r}, which does not exist" for p in promises
            if p.doc == "SECURITY.md" and p.row not in security_rows(security)]
    if BEGIN in security and security.split(BEGIN, 1)[1].split(END, 1)[0].strip() != render(promises, results):
        out.append("SECURITY.md's promise table is not the rendering of promises/results.json (python -m promises "
                   "render)")
    return out


def load_results(path: Path = RESULTS) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {"command": "make promises", "rows": []}
