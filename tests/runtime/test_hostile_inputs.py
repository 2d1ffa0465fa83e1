"""Hostile inputs through the library and the CLI's file readers: each gets a typed refusal (or a correct answer),
with bounded memory — never a traceback, a silent conversion or a silent wrong answer."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import medinfer
import numpy as np
import pytest
from medinfer.cli import main
from medinfer.tools.inputs import read_input

from ..helpers import tiny


# -- files the CLI reads ---------------------------------------------------------------------------------------
def _deep_json(p: Path) -> None:
    p.write_text("[" * 100_000 + "]" * 100_000)


def _big_int_json(p: Path) -> None:
    p.write_text("[[1" + "0" * 400 + ", 0, 0]]")


def _bool_json(p: Path) -> None:
    p.write_text("[[true, 0, 0]]")


def _string_number_json(p: Path) -> None:
    p.write_text('[["1.5", 0, 0]]')


def _nan_json(p: Path) -> None:
    p.write_text("[[NaN, 0, 0]]")


def _empty_npy(p: Path) -> None:
    np.save(p, np.zeros((0, 3), np.float32))


def _corrupt_npz(p: Path) -> None:
    p.write_bytes(b"PK\x03\x04" + b"\x00" * 40)


def _lying_npy(p: Path) -> None:
    """A header claiming 10**8 rows in front of 24 bytes of data (numpy would try to allocate 1.2 GB)."""
    buf = io.BytesIO()
    np.save(buf, np.zeros((2, 3), np.float32))
    p.write_bytes(buf.getvalue().replace(b"(2, 3), }", b"(99999999, 3), }"))


def _npz_bomb(p: Path) -> None:
    big = np.zeros((40_000_000,), np.float32)  # 160 MB of zeros compress to ~160 kB
    with zipfile.ZipFile(p, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        buf = io.BytesIO()
        np.save(buf, big)
        zf.writestr("x.npy", buf.getvalue())


def _pickle_npy(p: Path) -> None:
    np.save(p, np.array([[{"a": 1}, 0, 0]], dtype=object), allow_pickle=True)


FILES = {
    "JSON nested 100 000 deep": ("x.json", _deep_json, "deeper than"),
    "JSON 400-digit integer": ("x.json", _big_int_json, "too large"),
    "JSON true where a number belongs": ("x.json", _bool_json, "a boolean"),
    "JSON \"1.5\" string": ("x.json", _string_number_json, "a string"),
    "JSON NaN": ("x.json", _nan_json, "not a number"),
    "empty .npy": ("x.npy", _empty_npy, "empty array"),
    "corrupt .npz": ("x.npz", _corrupt_npz, "could not read"),
    ".npy header lying about its shape": ("x.npy", _lying_npy, "header is wrong|at most"),
    ".npz expanding to 160 MB": ("x.npz", _npz_bomb, "expands to"),
    ".npy of pickled objects": ("x.npy", _pickle_npy, "Python objects"),
}


@pytest.mark.hostile("input files (CLI readers)")
@pytest.mark.parametrize("case", list(FILES))
def test_hostile_files_get_a_typed_refusal(tiny_bundle_ro: Path, tmp_path: Path, case: str, capsys) -> None:
    name, make, words = FILES[case]
    path = tmp_path / name
    make(path)
    model = medinfer.load(tiny_bundle_ro)
    with pytest.raises(medinfer.InputError, match=words):
        model.predict(read_input(path, model, max_bytes=64 << 20))
    assert main(["predict", str(tiny_bundle_ro), str(path)]) == 5
    err = capsys.readouterr().err
    assert err.startswith("medinfer: error: Input") and "Traceback" not in err


@pytest.mark.hostile("input files (CLI readers)")
def test_a_long_note_in_csv_is_read_whole_and_a_short_row_is_refused(tmp_path: Path) -> None:
    """A text model's CSV field may be longer than Python's default 128 KiB field limit; a row without its text
    column is refused, not an IndexError."""
    model = medinfer.load(tiny.build_text(tmp_path / "text"))
    note = "normal " * 40_000  # 280 kB in one cell
    long_csv = tmp_path / "long.csv"
    long_csv.write_text(f"id,text\n1,{note}\n")
    assert read_input(long_csv, model) == [note]
    assert model.predict(read_input(long_csv, model)).labels is not None
    short = tmp_path / "short.csv"
    short.write_text("id,text\n1,fine\n2\n")
    with pytest.raises(medinfer.InputError, match="line 3 has 1 column"):
        read_input(short, model)


@pytest.mark.hostile("input files (CLI readers)")
def test_csv_rows_of_another_width_and_short_text_rows_are_refused(tiny_bundle_ro: Path, tmp_path: Path) -> None:
    model = medinfer.load(tiny_bundle_ro)
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("alpha,beta,gamma\n1,2,3\n1,2\n")
    with pytest.raises(medinfer.InputError, match="line 3 has 2 columns but the header has 3"):
        read_input(ragged, model)
    words = tmp_path / "words.csv"
    words.write_text("alpha,beta,gamma\n1,two,3\n")
    with pytest.raises(medinfer.InputError, match=r"line 2, column 2 \('beta'\) holds 'two', not a number"):
        read_input(words, model)


# -- physical ranges per feature ---------------------------------------------------------------------------------
@pytest.mark.hostile("values outside a feature's physical range")
@pytest.mark.parametrize(("feature", "value", "name"), [(0, -100.0, "level"), (0, 0.0, "level"),
                                                         (1, 1000.0, "phase"), (1, -1.5, "phase")])
def test_a_value_outside_its_feature_range_is_refused_and_named(tmp_path: Path, feature: int, value: float,
                                                                  name: str) -> None:
    model = medinfer.load(tiny.build_sequence(tmp_path / "seq", feature_ranges=((1.0, 500.0), (-1.0, 1.0)),
                                              names=("level", "phase")))
    x = np.tile(np.array([100.0, 0.5], np.float32), (1, 6, 1))
    assert model.predict(x).scores.shape == (1,)
    x[0, 3, feature] = value
    with pytest.raises(medinfer.InputError, match=f"feature '{name}' has 1 value\\(s\\) outside its range"):
        model.predict(x)


# -- bounded batches ---------------------------------------------------------------------------------------------
@pytest.mark.hostile("batch size and memory bounds")
def test_a_batch_above_max_batch_is_refused_and_large_batches_run_in_chunks(tmp_path: Path) -> None:
    bundle = tiny.build(tmp_path / "t", profile={"intra_op_num_threads": 1, "inter_op_num_threads": 1,
                                                 "chunk": 7, "max_batch": 100})
    model = medinfer.load(bundle)
    x = np.random.default_rng(0).uniform(-5, 5, (100, 3)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x).scores, tiny.reference(x)[:, 1], atol=1e-6)  # 15 chunks of <= 7
    with pytest.raises(medinfer.InputError, match="batch of 101 samples; it takes at most 100"):
        model.predict(np.zeros((101, 3), np.float32))
    assert model.try_predict(np.zeros((101, 3), np.float32)).reason == "input"


# -- no information ----------------------------------------------------------------------------------------------
@pytest.mark.hostile("inputs with no information")
def test_a_sample_without_information_gets_no_answer(tmp_path: Path) -> None:
    model = medinfer.load(tiny.build_evidence(tmp_path / "e"))
    assert list(model.predict(np.array([[1, 0, 0]], np.float32)).labels) == ["negative"]
    with pytest.raises(medinfer.NoInformationError, match=r"items \[1\]"):
        model.predict(np.array([[1, 0, 0], [0, 0, 0]], np.float32))
    assert model.try_predict(np.zeros(3, np.float32)).reason == "no_information"


# -- the pipe ----------------------------------------------------------------------------------------------------
@pytest.mark.hostile("command line")
def test_a_closed_pipe_ends_quietly(tiny_bundle_ro: Path) -> None:
    proc = subprocess.run(f"{sys.executable} -m medinfer info {tiny_bundle_ro} --json | head -c 10",
                          shell=True, capture_output=True, text=True, timeout=60, check=False)
    assert proc.stdout and "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr


@pytest.mark.hostile("command line")
def test_train_on_a_base_install_names_the_missing_extra(monkeypatch, capsys) -> None:
    import importlib.machinery
    import importlib.util

    real = importlib.util.find_spec
    # only rdkit is missing: the others count as installed even where they are not (the device venv has no sklearn)
    present = importlib.machinery.ModuleSpec("present", None)
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "rdkit" else (real(name, *a) or present))
    assert main(["train", "drug_activity_rf"]) == 9
    err = capsys.readouterr().err
    # rdkit is the only module the faked find_spec reports missing, on a full and on a device install alike
    assert "needs the [train] extra (rdkit is not importable): pip install 'medinfer[train]'" in err
    assert gzip  # (gzip bodies are covered by the serve tests)
    assert json
