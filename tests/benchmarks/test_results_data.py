"""Results files hold raw data with what made them, never prose (benchmarks/schema.py, benchmarks/results.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import provenance, results, schema

ROOT = Path(__file__).resolve().parents[2]
COMMIT = "0123456789abcdef0123456789abcdef01234567"
CLEAN = {"commit": COMMIT, "dirty": False, "changed": 0, "changed_paths": [], "started": "2026-12-01T09:00:00Z"}
BUNDLES = {"m": {"manifest_sha256": "a" * 64, "graphs": {"default": "b" * 64}}}


def _doc(**extra: object) -> dict:
    return {"command": "python -m benchmarks x", "provenance": CLEAN, "bundles": BUNDLES,
            "rows": [{"model": "m", "p50_us": 7.2, "candidate": "medinfer [default]"}], **extra}


def _folders() -> list[Path]:
    """Every folder of results files in the repository (a stray prose file beside the tests counts too)."""
    return [results.FOLDER, *sorted(p for p in (ROOT / "tests").glob("**/results") if p.is_dir())]


def test_every_committed_results_file_follows_the_schema() -> None:
    """Only the explicit legacy list (files written before provenance and the schema) is tolerated."""
    for folder in _folders():
        assert results.check_folder(folder, tolerate=results.LEGACY) == {}, folder


def test_the_legacy_list_names_only_problems_that_are_still_there() -> None:
    """Each entry must still tolerate something: once a file is re-published, its entry must go (empty the list)."""
    used: dict[str, set[str]] = {}
    results.check_folder(tolerate=results.LEGACY, used=used)
    stale = {name: sorted(set(entries) - used.get(name, set())) for name, entries in results.LEGACY.items()}
    assert {k: v for k, v in stale.items() if v} == {}, "re-published: remove these entries from results.LEGACY"


def test_committed_results_with_provenance_were_measured_on_this_history_from_a_clean_tree() -> None:
    for path in sorted(results.FOLDER.glob("*.json")):
        doc = json.loads(path.read_text())
        entries = doc.get(schema.ROWS[path.stem], []) if path.stem in schema.ROWS else [doc]
        for entry in entries:
            if "provenance" in entry:
                provenance.check_recorded(entry["provenance"], what=path.name)


def test_raw_data_with_its_provenance_passes() -> None:
    assert results.problems(_doc(), "x") == []
    peer = {"reason": "peer_failed", "error": schema.captured("Fail: " + "x" * 900, exit_status=3)}
    assert results.problems(_doc(models=[{"peers_unavailable": {"OpenVINO EP [default]": peer}}]), "x") == []
    assert len(peer["error"]["message"]) == schema.MESSAGE_MAX  # bounded, not refused: a tool's words, captured
    http = {"error_sample": schema.captured("b'{\"detail\": 1}'", http_status=422)}
    assert results.problems(_doc(runs=[{"server": "mlserver", "errors": 3, **http}]), "x") == []


@pytest.mark.parametrize(("extra", "said"), [
    ({"markdown": ["| a | b |"]}, "markdown"),
    ({"rows": [{"note": "medinfer is fast"}]}, "undeclared key 'note'"),  # a short invented claim
    ({"rows": [{"why": "word " * 60}]}, "not a valid 'why'"),  # an essay under why
    ({"rows": [{"reason": "the venv is missing, build it"}]}, "not a valid 'reason'"),  # a sentence, not a code
    ({"rows": [{"candidate": "**OpenVINO does not win**"}]}, "not a valid 'candidate'"),
    ({"rows": [{"candidate": "medinfer 3x faster"}]}, "a speed or ratio"),
    ({"rows": [{"label": "onnxruntime 2.7 times slower"}]}, "a speed or ratio"),
    ({"rows": [{"error": "RuntimeError: " + "x" * 40}]}, "captured error belongs"),  # words without a status
    ({"rows": [{"error": {"message": "failed"}}]}, "names the status"),
    ({"rows": [{"error": {"message": "a\nb", "exit_status": 1}}]}, "one line"),
    ({"rows": [{"error": {"message": "**it failed**", "exit_status": 1}}]}, "markdown"),
    ({"rows": [{"error": {"message": "x", "exit_status": 1, "why": "because"}}]}, "holds only"),
    ({"provenance": None}, "no provenance"),
    ({"provenance": {**CLEAN, "dirty": None}}, "dirty"),
    ({"provenance": {**CLEAN, "commit": "abc+dirty"}}, "commit"),
    ({"bundles": {}}, "no bundle digests"),
    ({"command": ""}, "command"),
])
def test_prose_claims_and_missing_provenance_fail(extra: dict, said: str) -> None:
    found = results.problems(_doc(**extra), "x")
    assert any(said in p for p in found), found


def test_entries_of_separate_runs_carry_their_own_provenance() -> None:
    row = {"key": "min|x86_64|1.18.0|3 test", "command": "python scripts/edge_check.py min", "provenance": CLEAN,
           "check": "min", "result": "pass"}
    assert results.problems({"rows": [row]}, "runs_on") == []
    assert any("provenance" in p for p in results.problems({"rows": [{**row, "provenance": None}]}, "runs_on"))
    kept = results.publishable_entries("runs_on", [row, {**row, "key": "old", "provenance": None}])
    assert [r["key"] for r in kept] == [row["key"]]  # an entry written before provenance is dropped, not published


def test_write_refuses_a_document_that_is_not_raw_data(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="markdown"):
        results.write("x", _doc(markdown=["text"]), tmp_path)
    assert not (tmp_path / "x.json").exists()
