"""drug_activity_rf beyond the registry-wide tests: ``medinfer build`` on a sample of the real ChEMBL data, then
verify and predict from the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medinfer", *args], capture_output=True, text=True, timeout=600,
                          check=False)


def test_build_verify_predict_drug_cli(tmp_path: Path) -> None:
    """medinfer build on a sample of the real ChEMBL data, then verify and predict from the command line."""
    art, out = tmp_path / "artifacts", tmp_path / "bundles"
    built = run_cli("build", "drug_activity_rf", "--sample", "120", "--artifacts", str(art), "--out", str(out))
    assert built.returncode == 0, built.stderr
    assert "roc_auc" in built.stdout and "parity passed" in built.stderr
    bundle = out / "drug_activity_rf"
    assert run_cli("verify", str(bundle)).returncode == 0
    with np.load(art / "drug_activity_rf" / "data.npz") as data:
        np.save(tmp_path / "x.npy", data["X_test"][:3])
    pred = run_cli("predict", str(bundle), str(tmp_path / "x.npy"), "--json")
    assert pred.returncode == 0, pred.stderr
    assert len(json.loads(pred.stdout)["labels"]) == 3
    card = bundle / "model_card.md"
    card.write_text(card.read_text() + " ")
    changed = run_cli("verify", str(bundle))
    assert changed.returncode == 3 and "model_card.md" in changed.stderr
