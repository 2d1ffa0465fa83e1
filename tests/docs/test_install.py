"""The device install as README.md tells it: build the wheel (``pip wheel --no-deps . -w dist``), install it into a
fresh venv with one onnxruntime build (``pip install dist/medinfer-*.whl`` then ``pip install 'medinfer[cpu]'``) and
run ``medinfer`` there on a tiny bundle.

This is a different venv from ``make test-device``'s ``build/device-venv``: that one has ``.[cpu,dev]`` (pytest,
onnx, import-linter, ...) so the runtime tests can run in it, and cannot show what a bare install brings. Here
nothing but the wheel and its [cpu] extra is installed, so the test proves the "numpy + onnxruntime only" promise
and that every base command works (or names its extra) without anything else. One venv per test session, in tmp;
about 15 s. The other onnxruntime builds ([gpu], [openvino]) and an install without any: tests/docs/test_flavours.py.
"""

from __future__ import annotations

import re
import subprocess
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from ..helpers import tiny
from ..helpers.wheel import build_wheel, venv


def _run(cmd: list[str] | str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False, **kw)


def _name(requirement: str) -> str:
    return re.split(r"[ ;<>=!~\[]", requirement, maxsplit=1)[0].strip().lower()


@pytest.fixture(scope="session")
def device_install(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The wheel and a fresh venv with that wheel and its [cpu] extra, installed as README says."""
    root = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(root)
    bin_dir = venv(root / "venv", [str(wheel)], ["medinfer[cpu]"])
    return {"wheel": wheel, "venv": root / "venv", "bin": bin_dir, "bundle": tiny.build(root / "tiny_logistic")}


def test_the_wheel_depends_on_numpy_and_onnxruntime_only(device_install: dict[str, Path]) -> None:
    with zipfile.ZipFile(device_install["wheel"]) as whl:
        meta = next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
        headers = Parser().parsestr(whl.read(meta).decode())
    requires = headers.get_all("Requires-Dist") or []
    base = {_name(r) for r in requires if "extra ==" not in r}
    assert base == {"numpy"}  # no onnxruntime build: the [cpu], [gpu] or [openvino] extra brings exactly one
    cpu = {_name(r) for r in requires if r.replace("'", '"').endswith('extra == "cpu"')}
    assert cpu == {"onnxruntime"}
    # What the device install actually brought: medinfer, numpy, onnxruntime and onnxruntime's own dependencies.
    script = ("import importlib.metadata as m, re\n"
              "def deps(name, seen):\n"
              "    for r in m.requires(name) or []:\n"
              "        if 'extra ==' in r: continue\n"
              "        d = re.split(r'[ ;<>=!~\\[]', r, 1)[0].lower().replace('_', '-')\n"
              "        if d not in seen: seen.add(d); deps(d, seen)\n"
              "    return seen\n"
              "allowed = deps('onnxruntime', deps('medinfer', {'medinfer', 'onnxruntime', 'pip', 'setuptools'}))\n"
              "have = {d.metadata['Name'].lower().replace('_', '-') for d in m.distributions()}\n"
              "print(sorted(have - allowed)); print(sorted(have))\n")
    proc = _run([str(device_install["bin"] / "python"), "-c", script])
    assert proc.returncode == 0, proc.stderr
    extra, have = proc.stdout.splitlines()
    assert extra == "[]", f"a bare install brought more than numpy + onnxruntime (and theirs): {extra}"
    for heavy in ("tensorflow", "scikit-learn", "onnx", "matplotlib", "pydicom", "rdkit"):
        assert f"'{heavy}'" not in have


def test_verify_and_predict_run_from_the_installed_wheel(device_install: dict[str, Path], tmp_path: Path) -> None:
    medinfer, bundle = str(device_install["bin"] / "medinfer"), str(device_install["bundle"])
    ok = _run([medinfer, "verify", bundle], cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "files verified (sha256)" in ok.stdout and "runs on CPUExecutionProvider" in ok.stdout
    (tmp_path / "x.csv").write_text("alpha,beta,gamma\n1,2,3\n")
    pred = _run([medinfer, "predict", bundle, str(tmp_path / "x.csv"), "--json"], cwd=tmp_path)
    assert pred.returncode == 0 and '"model": "tiny_logistic"' in pred.stdout, pred.stderr
    # the installed package, not this checkout, answered
    where = _run([str(device_install["bin"] / "python"), "-c", "import medinfer; print(medinfer.__file__)"],
                 cwd=tmp_path)
    assert str(device_install["venv"]) in where.stdout


@pytest.mark.hostile("command line")
@pytest.mark.parametrize("command", ["train drug_activity_rf", "build all", "export glucose_lstm"])
def test_a_train_command_on_the_base_install_is_one_line_naming_the_extra(device_install: dict[str, Path],
                                                                          tmp_path: Path, command: str) -> None:
    proc = _run([str(device_install["bin"] / "medinfer"), *command.split()], cwd=tmp_path)
    assert proc.returncode == 9, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert f"medinfer {command.split()[0]} needs the [train] extra" in proc.stderr
    assert "pip install 'medinfer[train]'" in proc.stderr


def test_an_extra_is_added_to_the_installed_copy(device_install: dict[str, Path]) -> None:
    """README: ``pip install 'medinfer[sign]'`` once medinfer is installed: pip keeps the installed copy (it is on
    no index) and only adds the extra's packages."""
    proc = _run([str(device_install["bin"] / "python"), "-m", "pip", "install", "--dry-run", "medinfer[sign]"])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Requirement already satisfied: medinfer" in proc.stdout
    assert "cryptography" in proc.stdout.split("Would install")[-1]


@pytest.mark.hostile("command line")
@pytest.mark.parametrize("reader", ["head -n 1", "true"])  # true: the reader is gone before the first write
@pytest.mark.parametrize("command", ["--help", "data --help", "data list", "specs", "info --providers"])
def test_a_closed_pipe_never_prints_a_traceback(device_install: dict[str, Path], tmp_path: Path, command: str,
                                                reader: str) -> None:
    proc = _run(f"{device_install['bin'] / 'medinfer'} {command} | {reader}", shell=True, cwd=tmp_path)
    assert proc.stdout.strip() or reader == "true"
    for noise in ("Traceback", "BrokenPipe", "Exception ignored"):
        assert noise not in proc.stderr, proc.stderr
