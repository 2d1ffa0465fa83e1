"""The device runtime must import and run with TensorFlow and scikit-learn (and every export tool) absent."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ..helpers.isolation import BLOCKER, run_isolated


def test_blocker_really_blocks() -> None:
    proc = subprocess.run([sys.executable, "-c", BLOCKER + "import sklearn"], capture_output=True, text=True,
                          check=False)
    assert proc.returncode != 0 and "blocked in the isolation test: sklearn" in proc.stderr


def test_runtime_alone_runs_tiny_bundle(tiny_bundle_ro: Path) -> None:
    result = run_isolated([tiny_bundle_ro])
    assert result["heavy"] == []
    assert result["results"]["tiny_logistic"]["self_test"] in ("bit_exact", "within_tolerance")


