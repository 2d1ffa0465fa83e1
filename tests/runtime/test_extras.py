"""One optional-import helper, and it can only name extras that pyproject.toml declares, each of which really
lists the module imported for it."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
import tomllib
from medinfer.errors import MissingExtraError
from medinfer.extras import EXTRAS, optional_import

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("runtime", "export", "train", "benchmarks", "scripts")
# An import name whose distribution is called otherwise.
DISTRIBUTION = {"fhir": "fhir.resources", "medinfer": "medinfer", "prometheus_client": "prometheus-client",
                "grpc": "grpcio", "google": "protobuf", "cyclonedx": "cyclonedx-python-lib",
                "xgboost": "xgboost-cpu"}


def _extras() -> dict[str, list[str]]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def _provides(extra: str, seen: frozenset[str] = frozenset()) -> set[str]:
    """The distributions an extra installs (``medinfer[score]`` inside one followed), normalised."""
    out = set()
    for req in _extras()[extra]:
        name = re.split(r"[\s\[<>=!;~]", req, maxsplit=1)[0].lower().replace("_", "-")
        if name == "medinfer":
            for inner in re.findall(r"\[([^\]]+)\]", req)[0].split(","):
                if inner not in seen:
                    out |= _provides(inner.strip(), seen | {extra})
        else:
            out.add(name)
    return out | ({"medinfer"} if extra == "train" else set())  # [train] makes medinfer.export importable


def _calls(root: Path = ROOT) -> list[tuple[str, int, str, str]]:
    """(file, line, module, extra) of every optional_import("module", "extra", ...) with literal arguments."""
    found = []
    for folder in SOURCES:
        for path in sorted((root / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "optional_import":
                    args = [a.value if isinstance(a, ast.Constant) else None for a in node.args[:2]]
                    found.append((path.relative_to(root).as_posix(), node.lineno, *args))
    return found


def test_the_declared_extras_are_pyprojects() -> None:
    assert set(EXTRAS) == set(_extras())


def test_every_optional_import_names_an_extra_that_installs_its_module() -> None:
    calls = _calls()
    assert len(calls) >= 12
    for where, line, module, extra in calls:
        assert module and extra, f"{where}:{line}: give optional_import its module and extra as literals"
        top = module.split(".")[0]
        dist = DISTRIBUTION.get(top, top).lower().replace("_", "-")
        assert extra in _extras(), f"{where}:{line}: extra [{extra}] is not declared in pyproject.toml"
        assert dist in _provides(extra), f"{where}:{line}: [{extra}] does not install {dist} (for {module})"


def test_every_install_advice_names_a_declared_extra() -> None:
    """``medinfer[X]`` anywhere in the code or the documents names an extra pyproject.toml declares."""
    files = [p for folder in SOURCES for p in sorted((ROOT / folder).rglob("*.py"))]
    files += [ROOT / "README.md", ROOT / "SECURITY.md", ROOT / "Makefile", *sorted((ROOT / "docs").glob("*.md"))]
    bad = [f"{p.relative_to(ROOT)}: medinfer[{extra}]" for p in files
           for group in re.findall(r"medinfer\[([\w,\s-]+)\]", p.read_text()) for extra in group.split(",")
           if extra.strip() not in _extras()]
    assert not bad, f"advice naming an extra that does not exist: {bad}"


def test_a_missing_module_names_its_extra_and_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    from medinfer.tools.drift import plot

    with pytest.raises(MissingExtraError, match=r"--plot needs the \[train\] extra \(matplotlib is not importable\): "
                                                r"pip install 'medinfer\[train\]'") as info:
        plot([], "drift.png", None)
    assert info.value.extra in EXTRAS


def test_an_undeclared_extra_cannot_be_named() -> None:
    with pytest.raises(ValueError, match="extra 'plots' is not declared in pyproject.toml"):
        optional_import("matplotlib", "plots", "a plot")
