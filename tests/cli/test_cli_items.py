"""``medinfer predict`` per item (issue 26, the default ``--on-error item``): every valid row of a file is answered
and every invalid or refused row gets its own reason, in the table and in ``--json``; the exit status is the first
refusal's; ``--on-error raise`` refuses the whole file as before."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from medinfer.cli import main

from ..helpers import tiny

ROWS = "id,alpha,beta,gamma\nr1,1,1,1\nr2,50,0,0\nr3,5,5,5\nr4,0.5,-0.5,0\n"  # valid, out of range, outside, valid


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.build_domain(tmp_path_factory.mktemp("cli_items") / "tiny_domain", threshold=1.0)


def test_the_table_answers_each_valid_row_and_names_each_refused_one(guarded: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text(ROWS)
    assert main(["predict", str(guarded), str(rows), "--out-of-domain", "no_result"]) == 5
    captured = capsys.readouterr()
    lines = {line.split()[0]: line for line in captured.out.splitlines() if line.startswith("r")}
    assert "NO RESULT" in lines["r2"] and "input" in lines["r2"]
    assert "NO RESULT" in lines["r3"] and "out_of_domain" in lines["r3"]
    assert "NO RESULT" not in lines["r1"] and "NO RESULT" not in lines["r4"]
    assert "NO RESULT id r2: InputError" in captured.err and "NO RESULT id r3: OutOfDomainError" in captured.err
    assert "2 of 4 item(s) got no result" in captured.err


def test_json_carries_each_row_s_status_and_the_default_flag_policy_answers_outsiders(
        guarded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text(ROWS)
    assert main(["predict", str(guarded), str(rows), "--json"]) == 5  # the invalid row still refused
    doc = json.loads(capsys.readouterr().out)
    assert doc["ids"] == ["r1", "r2", "r3", "r4"] and doc["status"] == ["ok", "no_result", "ok", "ok"]
    assert doc["in_domain"] == [True, None, False, True] and doc["labels"][1] is None and doc["scores"][1] is None
    np.testing.assert_allclose([doc["scores"][i] for i in (0, 2, 3)],
                               tiny.reference(np.array([[1, 1, 1], [5, 5, 5], [0.5, -0.5, 0]], np.float32))[:, 1],
                               rtol=1e-6)
    assert [(r["index"], r["reason"]) for r in doc["no_results"]] == [(1, "input")]


def test_on_error_raise_refuses_the_whole_file(guarded: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text(ROWS)
    assert main(["predict", str(guarded), str(rows), "--on-error", "raise"]) == 5
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("medinfer: error: InputError")


def test_a_file_of_valid_rows_exits_0(guarded: Path, tmp_path: Path) -> None:
    rows = tmp_path / "ok.csv"
    rows.write_text("id,alpha,beta,gamma\nr1,1,1,1\nr4,0.5,-0.5,0\n")
    assert main(["predict", str(guarded), str(rows)]) == 0
