"""Results files hold raw measurements plus the command that made them, never prose (benchmarks/results.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import results


def test_every_committed_results_file_is_raw_data() -> None:
    assert results.check_folder() == {}, "a results file carries prose or lacks its command (benchmarks/results.py)"


def test_a_results_file_with_prose_fails(tmp_path: Path) -> None:
    (tmp_path / "ok.json").write_text(json.dumps({"command": "python -m benchmarks x", "rows": [{"p50_us": 7.2}]}))
    (tmp_path / "markdown.json").write_text(json.dumps({"command": "c", "markdown": ["| a | b |"]}))
    (tmp_path / "table.json").write_text(json.dumps({"command": "c", "rows": [{"note": "| m | 1.0 |"}]}))
    (tmp_path / "essay.json").write_text(json.dumps({"command": "c", "why": "x", "claim": "word " * 80}))
    (tmp_path / "bold.json").write_text(json.dumps({"command": "c", "claim": "**OpenVINO does not win**"}))
    (tmp_path / "nocommand.json").write_text(json.dumps({"rows": [{"p50_us": 1.0}]}))
    bad = results.check_folder(tmp_path)
    assert set(bad) == {"markdown.json", "table.json", "essay.json", "bold.json", "nocommand.json"}
    assert any("command" in p for p in bad["nocommand.json"])


def test_rows_may_carry_their_own_command_and_errors_are_data() -> None:
    doc = {"rows": [{"command": "a", "error": "RuntimeError: " + "x" * 400}, {"command": "b"}]}
    assert results.problems(doc) == []
    assert results.problems({"rows": [{"command": "a"}, {}]})  # one row without its command
    # a peer that failed is recorded with its own error message, keyed by the peer (the full run's OpenVINO EP
    # on the LSTM: a 506-character onnxruntime message stopped the publish)
    failed_peer = {"command": "c", "models": [{"peers_unavailable": {"OpenVINO EP [default]": "Fail: " + "x" * 500}}]}
    assert results.problems(failed_peer) == []
    assert results.problems({"command": "c", "models": [{"note": "x" * 500}]})  # prose elsewhere still fails


def test_write_refuses_prose(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="markdown"):
        results.write("x", {"command": "c", "markdown": ["text"]}, tmp_path)
    assert not (tmp_path / "x.json").exists()
