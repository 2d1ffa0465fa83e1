"""medinfer's wheel and fresh venvs for the install tests (tests/docs): build once, install as README says.

The wheel is built from a copy of the checkout (a stale build/ folder cannot leak into it); each venv is fresh and
gets only what a test installs into it. pip reaches the package registry (its cache makes repeated runs quick).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from medinfer.providers import ORT_DISTRIBUTIONS

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("runtime", "train", "export", "pyproject.toml", "README.md", "LICENSE", "NOTICE")
#: Every distribution that provides the module ``onnxruntime``.
BUILDS = ORT_DISTRIBUTIONS


def run(cmd: list[str] | str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False, **kw)


def build_wheel(root: Path) -> Path:
    """``pip wheel --no-deps`` of a copy of the checkout into ``root/dist``; the wheel's path."""
    src = root / "src"
    src.mkdir(parents=True)
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        elif (ROOT / name).exists():
            shutil.copy(ROOT / name, src / name)
    built = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(src), "-w", str(root / "dist")])
    assert built.returncode == 0, built.stderr[-3000:]
    return next((root / "dist").glob("medinfer-*.whl"))


def venv(path: Path, *installs: list[str]) -> Path:
    """A fresh venv at ``path``; each item of ``installs`` is one ``pip install`` argument list. Its bin folder."""
    made = run([sys.executable, "-m", "venv", str(path)])
    assert made.returncode == 0, made.stderr
    for args in installs:
        pip(path / "bin", "install", "-q", *args)
    return path / "bin"


def pip(bin_dir: Path, *args: str) -> subprocess.CompletedProcess:
    proc = run([str(bin_dir / "python"), "-m", "pip", *args])
    assert proc.returncode == 0, f"pip {' '.join(args)}: " + proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def normal(name: str) -> str:
    return name.lower().replace("_", "-")


def installed(bin_dir: Path) -> set[str]:
    """The distributions installed in the venv (normalised names)."""
    script = "import importlib.metadata as m; print('\\n'.join(d.metadata['Name'] for d in m.distributions()))"
    proc = run([str(bin_dir / "python"), "-c", script])
    assert proc.returncode == 0, proc.stderr
    return {normal(n) for n in proc.stdout.split()}


def would_install(bin_dir: Path, *requirements: str) -> set[str]:
    """What ``pip install --dry-run --report`` would install into the venv (normalised names; nothing changes)."""
    report = bin_dir.parent / "dry-run.json"
    pip(bin_dir, "install", "-q", "--dry-run", "--report", str(report), *requirements)
    return {normal(item["metadata"]["name"]) for item in json.loads(report.read_text())["install"]}


def builds(names: set[str]) -> set[str]:
    """The onnxruntime builds among ``names``."""
    return names & set(BUILDS)
