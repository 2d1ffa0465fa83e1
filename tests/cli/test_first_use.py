"""What a new user met on the first day (issue 32), each fixed for its whole class: input files (row ids,
semicolon/decimal-comma CSVs, every cell error with its line and column, the CLI's own flag in the float64
advice), one exit code for "not a bundle", no folder created for an audit trail, and ``medinfer info`` naming the
features with their units and the data's commercial-use verdict."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import medinfer
import numpy as np
import pytest
from medinfer.cli import main
from medinfer.cli.features import feature_line
from medinfer.manifest import TensorSpec
from medinfer.tools.licences import LICENCES, commercial_summary, commercial_use, spdx_id
from medinfer.tools.tabular import detect_delimiter, read_rows

from ..helpers import tiny

ROWS = np.array([[1.5, 2.0, 3.0], [-1.0, 0.25, 4.5]], dtype=np.float32)


def _predict_json(capsys, *args: str) -> dict:
    assert main(["predict", *args, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def _error(capsys, code: int, *args: str) -> str:
    assert main(list(args)) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


# -- row ids ---------------------------------------------------------------------------------------------------
@pytest.mark.hostile("input files (CLI readers)")
def test_predict_takes_an_id_column_anywhere_and_shows_the_ids(tiny_bundle_ro: Path, tmp_path: Path,
                                                                capsys) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text("alpha,barcode,beta,gamma\n1.5,AAAC-1,2,3\n-1,AAAG-1,0.25,4.5\n")
    expected = medinfer.load(tiny_bundle_ro).predict(ROWS).scores.tolist()
    got = _predict_json(capsys, str(tiny_bundle_ro), str(rows), "--id-column", "barcode")
    assert got["ids"] == ["AAAC-1", "AAAG-1"] and got["scores"] == expected
    assert main(["predict", str(tiny_bundle_ro), str(rows), "--id-column", "barcode"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].startswith("barcode") and "AAAG-1" in table.splitlines()[3]
    # without the flag the column is a feature the model does not have: named, exit 5
    assert "'barcode'" in _error(capsys, 5, "predict", str(tiny_bundle_ro), str(rows))
    assert "no column 'cell'" in _error(capsys, 5, "predict", str(tiny_bundle_ro), str(rows), "--id-column", "cell")
    np.save(tmp_path / "rows.npy", ROWS)
    assert "--id-column names a column of a .csv or .tsv" in _error(
        capsys, 2, "predict", str(tiny_bundle_ro), str(tmp_path / "rows.npy"), "--id-column", "barcode")


def test_a_leading_id_column_is_shown_without_the_flag(tiny_bundle_ro: Path, tmp_path: Path, capsys) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text("id,alpha,beta,gamma\nP-1,1.5,2,3\nP-2,-1,0.25,4.5\n")
    assert _predict_json(capsys, str(tiny_bundle_ro), str(rows))["ids"] == ["P-1", "P-2"]


# -- delimiters and decimal commas ---------------------------------------------------------------------------------
@pytest.mark.hostile("input files (CLI readers)")
@pytest.mark.parametrize(("name", "text"), [
    ("semicolon.csv", "alpha;beta;gamma\n1,5;2;3\n-1;0,25;4,5\n"),  # a European spreadsheet export
    ("tab.csv", "alpha\tbeta\tgamma\n1,5\t2\t3\n-1\t0,25\t4,5\n"),
    ("comma.tsv", "id\talpha\tbeta\tgamma\na\t1,5\t2\t3\nb\t-1\t0,25\t4,5\n"),
    ("bar.csv", "alpha|beta|gamma\n1.5|2|3\n-1|0.25|4.5\n"),
    ("plain.csv", "alpha,beta,gamma\n1.5,2,3\n-1,0.25,4.5\n"),
])
def test_delimiters_and_decimal_commas_are_read_as_meant(tiny_bundle_ro: Path, tmp_path: Path, name: str,
                                                         text: str) -> None:
    model = medinfer.load(tiny_bundle_ro)
    (tmp_path / name).write_text(text)
    _, x = read_rows(tmp_path / name, model)
    np.testing.assert_array_equal(x, ROWS)


@pytest.mark.hostile("input files (CLI readers)")
def test_a_point_in_a_decimal_comma_file_is_refused_with_its_cell(tiny_bundle_ro: Path, tmp_path: Path) -> None:
    (tmp_path / "mixed.csv").write_text("alpha;beta;gamma\n1,5;2;3\n-1;1.250;4,5\n")
    with pytest.raises(medinfer.InputError, match=r"line 3, column 2 \('beta'\) holds '1.250': a point in a file "
                                                  "with decimal commas"):
        read_rows(tmp_path / "mixed.csv", medinfer.load(tiny_bundle_ro))


@pytest.mark.hostile("input files (CLI readers)")
def test_a_header_read_with_the_wrong_delimiter_gives_a_short_message(tiny_bundle_ro: Path, tmp_path: Path,
                                                                       capsys) -> None:
    """A delimiter medinfer does not know (':') leaves the whole header as one 'name': the message stays short
    (issue 32: 2.9 kB quoting the header)."""
    names = [f"descriptor_number_{i}" for i in range(150)]
    (tmp_path / "colon.csv").write_text(":".join(names) + "\n" + ":".join("1" for _ in names) + "\n")
    err = _error(capsys, 5, "predict", str(tiny_bundle_ro), str(tmp_path / "colon.csv"))
    assert len(err) < 600, len(err)
    assert "the header is one column 'descriptor_number_0:descriptor_number_1…' when read as comma-separated" \
        in err


def test_the_detection_rule() -> None:
    assert detect_delimiter("a;b;c", ",") == ";" and detect_delimiter("a,b;c", ",") == ","
    assert detect_delimiter("a\tb", ",") == "\t" and detect_delimiter("a;b", "\t") == "\t"  # a .tsv stays a .tsv
    assert detect_delimiter('"a;b"', ",") == ","  # one quoted field


# -- cell errors -------------------------------------------------------------------------------------------------
@pytest.mark.hostile("input files (CLI readers)")
@pytest.mark.parametrize(("body", "match"), [
    ("1,,3", r"line 3, column 2 \('beta'\) is empty"),
    ("1,2,x", r"line 3, column 3 \('gamma'\) holds 'x', not a number"),
    ("1,2,nan", r"line 3, column 3 \('gamma'\) holds 'nan', not a finite number"),
    ("1,2", r"line 3 has 2 columns but the header has 3"),
])
def test_every_cell_error_names_its_line_and_column(tiny_bundle_ro: Path, tmp_path: Path, body: str,
                                                    match: str) -> None:
    (tmp_path / "bad.csv").write_text(f"alpha,beta,gamma\n1,2,3\n\n{body}\n".replace("\n\n", "\n"))
    with pytest.raises(medinfer.InputError, match=match):
        read_rows(tmp_path / "bad.csv", medinfer.load(tiny_bundle_ro))


def test_line_numbers_count_blank_lines_and_headerless_files(tiny_bundle_ro: Path, tmp_path: Path) -> None:
    (tmp_path / "gaps.csv").write_text("1,2,3\n\n4,,6\n")
    with pytest.raises(medinfer.InputError, match=r"line 3, column 2 is empty"):
        read_rows(tmp_path / "gaps.csv", medinfer.load(tiny_bundle_ro))


# -- the float64 advice names the interface's own remedy ---------------------------------------------------------
@pytest.mark.hostile("input files (CLI readers)")
def test_float64_advice_names_the_cli_flag_on_the_cli(tiny_bundle_ro: Path, tmp_path: Path, capsys) -> None:
    np.save(tmp_path / "x64.npy", ROWS.astype(np.float64))
    err = _error(capsys, 5, "predict", str(tiny_bundle_ro), str(tmp_path / "x64.npy"))
    assert "--cast same_kind" in err and "load(" not in err and "astype" not in err
    assert main(["predict", str(tiny_bundle_ro), str(tmp_path / "x64.npy"), "--cast", "same_kind"]) == 0
    with pytest.raises(medinfer.InputTypeError, match=r"load\(\.\.\., cast='same_kind'\)"):  # Python: its own
        medinfer.load(tiny_bundle_ro).predict(ROWS.astype(np.float64))


# -- not a bundle: one exit code -----------------------------------------------------------------------------------
@pytest.mark.hostile("command line")
@pytest.mark.parametrize("command", ["verify", "info", "predict", "bench"])
def test_not_a_bundle_is_exit_4_whatever_the_path_is(tmp_path: Path, command: str, capsys) -> None:
    (tmp_path / "README.md").write_text("# a file\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "x.csv").write_text("1,2,3\n")
    extra = [str(tmp_path / "x.csv")] if command == "predict" else ["--no-cold"] if command == "bench" else []
    for path, what in ((tmp_path / "README.md", "is a file, not a bundle folder"),
                       (tmp_path / "empty", "has no manifest.json")):
        err = _error(capsys, 4, command, str(path), *extra)
        assert f"is not a medinfer bundle: it {what}" in err


# -- audit trails --------------------------------------------------------------------------------------------------
@pytest.mark.hostile("audit trail")
def test_an_audit_trail_in_a_missing_folder_creates_nothing(tiny_bundle_ro: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent" / "dir" / "audit.jsonl"
    with pytest.raises(medinfer.AuditError, match="does not exist; create it first"):
        medinfer.load(tiny_bundle_ro, audit=str(missing))
    with pytest.raises(medinfer.AuditError, match="does not exist"):
        medinfer.AuditLog(missing)
    assert not (tmp_path / "nonexistent").exists()


@pytest.mark.hostile("audit trail")
def test_serve_refuses_an_audit_trail_in_a_missing_folder_before_starting(tiny_bundle_ro: Path,
                                                                          tmp_path: Path) -> None:
    pytest.importorskip("uvicorn")
    missing = tmp_path / "nonexistent" / "dir" / "audit.jsonl"
    proc = subprocess.run([sys.executable, "-m", "medinfer", "serve", str(tiny_bundle_ro), "--port", "0", "--audit",
                           str(missing)], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2 and "listening" not in proc.stdout, proc.stdout + proc.stderr
    assert "--audit" in proc.stderr and "create it first" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "nonexistent").exists()


# -- medinfer info: features, units, licences ---------------------------------------------------------------------
def test_info_names_the_features_with_their_units_and_the_commercial_verdict(tiny_bundle_ro: Path,
                                                                               tmp_path: Path, capsys) -> None:
    assert main(["info", str(tiny_bundle_ro)]) == 0
    out = capsys.readouterr().out
    assert "features of 'x' (3, in this order): alpha, beta, gamma; units: a.u." in out
    assert "commercial use: yes" in out and "(CC0)" in out
    units = [{"name": "level", "unit": "mg/dL"}, {"name": "phase", "unit": "1"}]
    seq = tiny.build_sequence(tmp_path / "seq", names=("level", "phase"), facts={"features": units})
    assert main(["info", str(seq)]) == 0
    assert "features of 'x' (2, in this order): level [mg/dL], phase [1]" in capsys.readouterr().out


def test_a_long_feature_list_shows_the_first_and_last_few_and_the_count() -> None:
    names = tuple(f"G{i}" for i in range(765))
    line = feature_line(TensorSpec("expression", "float32", ("N", 765), units="z-score", names=names))
    assert line == "features of 'expression' (765, in this order): G0, G1, G2, G3, …, G762, G763, G764; units: z-score"


@pytest.mark.parametrize(("text", "spdx", "commercial"), [
    ("CC BY-SA 3.0 (ChEMBL)", "CC-BY-SA-3.0", True), ("MIT", "MIT", True),
    ("BSD-3-Clause (scanpy)", "BSD-3-Clause", True),
    ("CC BY-NC-ND 4.0 (Indiana University chest X-ray collection, Open-i)", "CC-BY-NC-ND-4.0", False),
    ("GPL-2 (Debian package invesalius-examples)", "GPL-2.0-only", True),
])
def test_licence_texts_map_to_one_table(text: str, spdx: str, commercial: bool) -> None:
    assert spdx_id(text) == spdx and LICENCES[spdx].commercial is commercial
    assert commercial_use(text).startswith("yes" if commercial else "NO")


def test_a_model_is_as_restricted_as_its_most_restricted_source() -> None:
    assert commercial_summary(["MIT", "CC BY-NC-ND 4.0 (reports)"]).startswith("NO: CC BY-NC-ND 4.0 (reports)")
    assert commercial_summary(["MIT", "as supplied by the user"]).startswith("unknown: check as supplied")
    assert commercial_summary(["MIT", "BSD-3-Clause"]).startswith("yes")


def test_list_shows_a_bundle_without_held_out_metrics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A model brought without labels has no held-out metrics: `medinfer list` says so on its row (it raised
    StopIteration on the demo's bundles, which include one)."""
    from medinfer.manifest import Metrics

    tiny.build(tmp_path / "measured")
    tiny.build(tmp_path / "unmeasured", name="tiny_unmeasured", metrics=Metrics(heldout={}, n_test=0, method="none"))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "manifest.json").write_text("{")
    assert main(["list", str(tmp_path)]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[2:]}
    assert "none (no labelled held-out data)" in rows["tiny_unmeasured"]
    assert "accuracy 1.000" in rows["tiny_logistic"] and "INVALID" in rows["broken"]
