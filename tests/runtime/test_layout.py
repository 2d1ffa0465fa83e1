"""The house rules, checked mechanically: import contracts (import-linter), no heavy module-level imports in the
core (ruff TID253), no reaching into another module's privates from the optional layers."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[2]
OPTIONAL = ("tools", "cli", "fleet", "lifecycle")


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "lint_imports.py"), "--root", str(root)],
                          capture_output=True, text=True, timeout=300, check=False)


def test_import_contracts_hold() -> None:
    pytest.importorskip("importlinter")
    proc = _lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_import_contracts_catch_a_core_module_that_imports_a_tool(tmp_path: Path) -> None:
    pytest.importorskip("importlinter")
    for folder in ("runtime", "train", "export", "benchmarks"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    model = tmp_path / "runtime" / "model.py"
    text = model.read_text().replace("import numpy as np\n", "import numpy as np\n\nfrom .tools import bench\n", 1)
    model.write_text(text)
    proc = _lint_imports(tmp_path)
    assert proc.returncode != 0 and "medinfer.model -> medinfer.tools.bench" in proc.stdout


def test_the_contracts_list_every_core_module() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    core = {f"medinfer.{p.stem}" for p in (ROOT / "runtime").glob("*.py") if p.stem not in ("__init__", "__main__")}
    core |= {f"medinfer.{p.parent.name}" for p in (ROOT / "runtime").glob("*/__init__.py")
             if p.parent.name not in OPTIONAL}  # a core package (audit/) is the core too
    assert set(config[0]["source_modules"]) == core, "add a new core module to [tool.importlinter] in pyproject"
    assert set(config[1]["source_modules"]) == core - {"medinfer.signing"}


def test_no_heavy_module_level_import_in_the_core() -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed")
    ok = subprocess.run([ruff, "check", "--select", "TID253", "runtime"], cwd=ROOT, capture_output=True, text=True,
                        check=False)
    assert ok.returncode == 0, ok.stdout
    bad = subprocess.run([ruff, "check", "--select", "TID253", "--stdin-filename", "runtime/new_core.py", "-"],
                         cwd=ROOT, input="import sklearn\n", capture_output=True, text=True, check=False)
    assert bad.returncode != 0 and "TID253" in bad.stdout


def _private_reaches(path: Path) -> list[str]:
    """Attribute accesses ``obj._name`` on anything but self/cls, and imports of ``_names`` from medinfer."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and re.match(r"^_[a-z]", node.attr):
            base = node.value
            if not (isinstance(base, ast.Name) and base.id in ("self", "cls")):
                found.append(f"{path.name}:{node.lineno} .{node.attr}")
        elif isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("medinfer")):
            for alias in node.names:
                if re.match(r"^_[a-z]", alias.name) and alias.name != "__version__":
                    found.append(f"{path.name}:{node.lineno} import {alias.name}")
    return found


# Other libraries' documented underscore APIs: dask's ``DataFrame._meta`` (the empty frame describing the schema).
ALLOWED = {"dask.py": {"_meta"}}


@pytest.mark.parametrize("layer", [*OPTIONAL, "../benchmarks"])
def test_optional_layers_use_only_public_names(layer: str) -> None:
    folder = (ROOT / "runtime" / layer).resolve()
    problems = [p for f in folder.rglob("*.py") for p in _private_reaches(f)
                if p.rsplit(" ", 1)[-1].lstrip(".") not in ALLOWED.get(f.name, set())]
    assert not problems, f"{layer} reaches into private names: {problems}"


def test_the_private_name_check_can_fail(tmp_path: Path) -> None:
    sample = tmp_path / "inputs.py"
    sample.write_text("from medinfer.model import _digestible\n\ndef f(model):\n    return model._validate.checks\n")
    assert _private_reaches(sample) == ["inputs.py:1 import _digestible", "inputs.py:4 ._validate"]


def _imports_of_tests(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
        found += [f"{path.name}:{node.lineno} {n}" for n in names if n == "tests" or n.startswith("tests.")]
    return found


def test_scripts_and_benchmarks_never_import_tests(tmp_path: Path) -> None:
    found = [hit for folder in ("scripts", "benchmarks", "runtime", "export", "train")
             for p in sorted((ROOT / folder).rglob("*.py")) for hit in _imports_of_tests(p)]
    assert not found, f"run the test helpers in a process of their own instead: {found}"
    sample = tmp_path / "edge_check.py"
    sample.write_text("def f():\n    from tests.helpers import tiny\n")
    assert _imports_of_tests(sample) == ["edge_check.py:2 tests.helpers"]


def test_the_audit_package_shares_public_names_only() -> None:
    """record format, writer (with its group commit) and verifier import each other's public names only."""
    found = [p for f in sorted((ROOT / "runtime" / "audit").glob("*.py")) for p in _private_reaches(f)
             if " import " in p]
    assert not found, f"the audit package reaches into a private name: {found}"


def test_every_package_folder_is_in_the_wheel() -> None:
    """A folder with an ``__init__.py`` that pyproject's package list lacks is missing from the wheel (the editable
    install hides it): the base install then fails with ModuleNotFoundError at the first import."""
    homes = {"runtime": "medinfer", "train": "medinfer.train", "export": "medinfer.export"}
    found = {".".join([homes[d], *init.parent.relative_to(ROOT / d).parts])
             for d in homes for init in (ROOT / d).rglob("__init__.py") if "nltk-data" not in init.parts}
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"


def test_import_medinfer_loads_no_maintenance_module() -> None:
    """The device core's import loads what predicting needs: the audit export (a maintenance command) only on use."""
    code = ("import sys, medinfer\nassert 'medinfer.audit.export' not in sys.modules, 'export loaded'\n"
            "from medinfer.audit import export_log\nassert callable(export_log)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
