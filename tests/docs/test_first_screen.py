"""README's first screen, as a newcomer runs it: examples/first_screen.sh from a fresh copy of the repository
(a new venv, the wheel, the [cpu] extra, ``medinfer verify`` of the committed sample bundle, ``medinfer predict``
of a sample input, the Python example), timed. Done when a prediction comes back within five minutes.

The script makes its own device install (numpy + onnxruntime from the registry; nothing of [train]): this checks
the install a newcomer gets, not the test environment's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "first_screen.sh"
COPIED = ("runtime", "train", "export", "examples", "pyproject.toml", "README.md", "LICENSE", "NOTICE")
BUDGET_S = 300.0


def _fresh_copy(dest: Path) -> Path:
    """What a clone holds (no build/, no .venv): the package sources and examples/."""
    dest.mkdir()
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        elif src.exists():
            shutil.copy(src, dest / name)
    return dest


@pytest.mark.timing
def test_the_first_screen_gives_a_prediction_within_five_minutes(tmp_path: Path) -> None:
    if shutil.which("bash") is None:
        pytest.fail("bash is needed to run examples/first_screen.sh")
    clone = _fresh_copy(tmp_path / "medinfer")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    start = time.perf_counter()
    proc = subprocess.run(["bash", "examples/first_screen.sh"], cwd=clone, capture_output=True, text=True,
                          timeout=2 * BUDGET_S, check=False, env=env)
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "OK    examples/sample-bundle/gene_expression_svd" in out and "self-test" in out
    table = out.split("cell ", 1)[1].splitlines()
    assert table[0].split()[:2] == ["label", "probability"] and len([r for r in table[2:7] if r.strip()]) == 5
    assert out.rstrip().splitlines()[-1].startswith("gene_expression_svd 1.0.0, sha256 ")  # the Python example
    # the install is a device install: exactly one onnxruntime build, nothing of the training stack
    listed = subprocess.run([str(clone / ".venv-device" / "bin" / "python"), "-m", "pip", "list",
                             "--format=freeze"], capture_output=True, text=True, check=True).stdout.lower()
    assert "onnxruntime==" in listed and "tensorflow" not in listed and "scikit-learn" not in listed
    assert seconds < BUDGET_S, f"the first screen took {seconds:.0f} s (budget {BUDGET_S:.0f} s)"


def test_the_readme_first_screen_is_the_script_and_the_example_it_times() -> None:
    """README's first screen shows what this file times: the commands of examples/first_screen.sh (up to the Python
    example) and the code of examples/predict.py, line for line."""
    readme = (ROOT / "README.md").read_text()
    screen = readme.split("## Five minutes", 1)[1].split("\n## ", 1)[0]
    blocks = screen.split("```")
    sh = [b for b in blocks if b.startswith("sh\n")][0].splitlines()[1:]
    py = [b for b in blocks if b.startswith("python\n")][0].splitlines()[1:]
    script = [line for line in SCRIPT.read_text().splitlines()
              if line and not line.startswith(("#", "set ")) and line != "python examples/predict.py"]
    assert sh == script
    code = (ROOT / "examples" / "predict.py").read_text().split('"""', 2)[2].strip().splitlines()
    assert py == code
