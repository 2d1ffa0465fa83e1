"""drug_activity_rf beyond the registry-wide tests: ``medinfer build`` on a sample of the real ChEMBL data, then
verify and predict from the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


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
    text = card.read_text()
    for plot in ("roc", "calibration", "importance"):
        assert f"](plots/{plot}.png)" in text and (bundle / "plots" / f"{plot}.png").read_bytes()[:4] == b"\x89PNG"
    assert "permutation importance on the held-out set" in text
    card.write_text(card.read_text() + " ")
    changed = run_cli("verify", str(bundle))
    assert changed.returncode == 3 and "model_card.md" in changed.stderr


def test_permutation_importance_finds_the_descriptor_the_model_uses() -> None:
    """A model that scores by column 1 only: shuffling column 1 costs ROC-AUC, shuffling the others nothing; the
    drop equals sklearn's roc_auc_score before minus after (an independent implementation of the metric)."""
    from medinfer.train.specs.drug_activity_rf import permutation_importance
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 4))
    y = (X[:, 1] + 0.5 * rng.normal(size=80) > 0).astype(int)
    mean, std, name = permutation_importance(lambda A: 1 / (1 + np.exp(-A[:, 1])), X, y, repeats=5, seed=3)
    assert name == "ROC-AUC" and np.argmax(mean) == 1 and mean[1] > 0.2
    assert np.all(mean[[0, 2, 3]] == 0) and np.all(std[[0, 2, 3]] == 0)
    shuffle = np.random.default_rng(3)
    base = roc_auc_score(y, X[:, 1])
    drops = []
    for _ in range(5):  # the same shuffles as the function's first column (column 0 draws first)
        shuffle.permutation(80)
    for _ in range(5):
        drops.append(base - roc_auc_score(y, X[shuffle.permutation(80), 1]))
    assert mean[1] == pytest.approx(np.mean(drops))
    one_class = permutation_importance(lambda A: A[:, 1], X, np.ones(80, int), repeats=2)
    assert one_class[2] == "accuracy"
