from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from medinfer.cli import main

from ..helpers import tiny


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medinfer", *args], capture_output=True, text=True, timeout=120,
                          check=False)


def test_verify_exit_codes(tiny_bundle: Path) -> None:
    ok = run_cli("verify", str(tiny_bundle))
    assert ok.returncode == 0, ok.stderr
    assert "OK" in ok.stdout and "self-test" in ok.stdout
    data = bytearray((tiny_bundle / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tiny_bundle / "model.onnx").write_bytes(bytes(data))
    bad = run_cli("verify", str(tiny_bundle))
    assert bad.returncode == 3
    assert "IntegrityError" in bad.stderr and "model.onnx" in bad.stderr


def test_verify_json(tiny_bundle_ro: Path, capsys) -> None:
    assert main(["verify", str(tiny_bundle_ro), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is True and out["name"] == "tiny_logistic"


def test_predict_from_files(tiny_bundle_ro: Path, tmp_path: Path, capsys) -> None:
    x = np.array([[1, 2, 3], [-3, 0.5, 1]], dtype=np.float32)
    expected = tiny.reference(x)[:, 1]
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "x.json").write_text(json.dumps(x.tolist()))
    (tmp_path / "x.csv").write_text("gamma,alpha,beta\n3,1,2\n")  # header in the wrong order
    (tmp_path / "ok.csv").write_text("alpha,beta,gamma\n1,2,3\n-3,0.5,1\n")
    for name in ("x.npy", "x.json", "ok.csv"):
        assert main(["predict", str(tiny_bundle_ro), str(tmp_path / name), "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        np.testing.assert_allclose(out["scores"], expected, atol=1e-6)
        assert out["model"] == "tiny_logistic" and len(out["model_sha256"]) == 64
    assert main(["predict", str(tiny_bundle_ro), str(tmp_path / "x.csv")]) == 5
    assert "different order: column 0 is 'gamma', expected 'alpha'" in capsys.readouterr().err


def test_predict_table_and_bad_input(tiny_bundle_ro: Path, tmp_path: Path, capsys) -> None:
    np.save(tmp_path / "nan.npy", np.array([[1, np.nan, 3]], dtype=np.float32))
    assert main(["predict", str(tiny_bundle_ro), str(tmp_path / "nan.npy")]) == 5
    assert "NaN" in capsys.readouterr().err
    np.save(tmp_path / "one.npy", np.array([1, 2, 3], dtype=np.float32))
    assert main(["predict", str(tiny_bundle_ro), str(tmp_path / "one.npy")]) == 0
    out = capsys.readouterr().out
    assert "label" in out and "tiny_logistic 0.0.1" in out


def test_bundle_by_name(tiny_bundle_ro: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    root = tmp_path / "bundles"
    shutil.copytree(tiny_bundle_ro, root / "tiny_logistic")
    monkeypatch.setenv("MEDINFER_BUNDLES", str(root))
    assert main(["info", "tiny_logistic"]) == 0
    assert "tiny_logistic 0.0.1" in capsys.readouterr().out
    assert main(["info", "tiny_logistc"]) == 2
    assert "did you mean 'tiny_logistic'" in capsys.readouterr().err


def test_info_json_and_providers(tiny_bundle_ro: Path, capsys) -> None:
    assert main(["info", str(tiny_bundle_ro), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "tiny_logistic"
    assert main(["info", "--providers"]) == 0
    assert "CPUExecutionProvider" in capsys.readouterr().out


def test_console_script_installed() -> None:
    exe = shutil.which("medinfer", path=str(Path(sys.executable).parent))
    assert exe, "the 'medinfer' console script is not installed next to this Python"
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
    assert out.returncode == 0 and out.stdout.startswith("medinfer ")




