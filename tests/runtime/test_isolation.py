"""The device runtime must import and run with TensorFlow and scikit-learn (and every export tool) absent."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ..helpers.isolation import BLOCKER, run_isolated


def test_blocker_really_blocks() -> None:
    proc = subprocess.run([sys.executable, "-c", BLOCKER + "import sklearn"], capture_output=True, text=True,
                          check=False)
    assert proc.returncode != 0 and "blocked in the isolation test: sklearn" in proc.stderr


def test_runtime_alone_runs_tiny_bundle(tiny_bundle_ro: Path) -> None:
    result = run_isolated([tiny_bundle_ro])
    assert result["heavy"] == []
    assert result["results"]["tiny_logistic"]["self_test"] in ("bit_exact", "within_tolerance")



def test_the_device_venv_really_lacks_the_training_stack() -> None:
    """Under ``make test-device`` (MEDINFER_DEVICE_ONLY=1; also test-min and test-arm) the venv must be the lean
    device install, with medinfer installed from a built wheel (not this source tree): the runtime tests then prove
    the core needs nothing more. In the full development venv there is nothing to check: skipped, saying so."""
    import importlib.util
    import os

    import medinfer

    if not os.environ.get("MEDINFER_DEVICE_ONLY"):
        pytest.skip("not the device venv: make test-device runs this with MEDINFER_DEVICE_ONLY=1 in build/device-venv")
    present = [m for m in ("tensorflow", "sklearn", "skl2onnx", "tf2onnx", "rdkit", "pandas", "starlette")
               if importlib.util.find_spec(m) is not None]
    assert present == [], f"the device venv has {present}: it is not the device install"
    source = Path(__file__).resolve().parents[2] / "runtime"
    assert Path(medinfer.__file__).resolve().parent != source, "medinfer is imported from the source tree, not a wheel"
