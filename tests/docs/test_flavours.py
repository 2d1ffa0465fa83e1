"""One onnxruntime build per environment, chosen by an extra: [cpu] (onnxruntime), [gpu] (onnxruntime-gpu) or
[openvino] (onnxruntime-openvino). The builds all provide the module ``onnxruntime`` and overwrite each other's
files, so medinfer's base distribution names none of them (an extra cannot replace a base dependency: with
onnxruntime in the base, ``pip install 'medinfer[gpu]'`` would always bring both).

Each flavour is installed into a fresh venv from the wheel: [cpu] for real, [gpu] and [openvino] with
``pip install --dry-run --report`` (no GPU here; the report is pip's own resolution). The commands medinfer's
errors print are run as printed. ``import medinfer`` works without any build (a manifest can be read, an audit log
verified); the first use that needs onnxruntime is one line naming the three extras (exit 9).
"""

from __future__ import annotations

import ast
import re
import shlex
import sys
from pathlib import Path

import pytest
from medinfer.providers import FLAVOURS, install_command, several_builds_message

from ..helpers import tiny
from ..helpers.wheel import ROOT, build_wheel, builds, installed, pip, run, venv, would_install


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("flavour-wheel"))


@pytest.fixture(scope="module")
def bare(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with the wheel and nothing else (numpy is its only dependency)."""
    return venv(tmp_path_factory.mktemp("bare") / "venv", [str(wheel)])


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.build(tmp_path_factory.mktemp("flavour-bundle") / "tiny_logistic")


def test_the_base_install_has_no_build_and_each_extra_names_one(bare: Path) -> None:
    assert builds(installed(bare)) == set()
    assert installed(bare) <= {"medinfer", "numpy", "pip", "setuptools"}


@pytest.mark.parametrize("extra", sorted(FLAVOURS))
def test_each_extra_brings_exactly_one_build(bare: Path, extra: str) -> None:
    """pip's own resolution of ``pip install 'medinfer[EXTRA]'`` next to the installed wheel: one build, the right
    one (a dry run: nothing is downloaded beyond metadata, nothing changes)."""
    assert builds(would_install(bare, f"medinfer[{extra}]")) == {FLAVOURS[extra]}


@pytest.mark.hostile("command line")
def test_without_a_build_import_is_fast_and_use_names_the_extras(bare: Path, bundle: Path, tmp_path: Path) -> None:
    script = ("import time; t = time.perf_counter(); import medinfer; dt = time.perf_counter() - t\n"
              f"m = medinfer.load_manifest({str(bundle)!r}); print(m.name, round(dt, 3))\n"
              "try:\n    medinfer.load(" + repr(str(bundle)) + ")\n"
              "except medinfer.MissingExtraError as exc:\n    print('MissingExtraError', exc)\n")
    proc = run([str(bare / "python"), "-c", script], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.splitlines()
    assert first.split()[0] == "tiny_logistic" and float(first.split()[1]) < 1.0  # numpy only: well under a second
    assert second.startswith("MissingExtraError medinfer needs one onnxruntime build and none is installed: "
                             "pip install 'medinfer[cpu]'")
    cli = run([str(bare / "medinfer"), "verify", str(bundle)], cwd=tmp_path)
    assert cli.returncode == 9, cli.stdout + cli.stderr
    assert "Traceback" not in cli.stderr and "pip install 'medinfer[cpu]'" in cli.stderr
    assert "'medinfer[gpu]'" in cli.stderr and "'medinfer[openvino]'" in cli.stderr


def _printed_command(stderr: str) -> str:
    """The ``pip uninstall ... && pip install '...'`` an error message printed."""
    found = re.search(r"(pip uninstall -y [\w\- ]+ && pip install 'medinfer\[\w+\]')", stderr)
    assert found, stderr
    return found.group(1)


def test_the_commands_the_errors_print_switch_to_exactly_one_build(wheel: Path, bundle: Path,
                                                                     tmp_path: Path) -> None:
    """A device installed with [cpu] asks for CUDA, then OpenVINO: each error prints the command that leaves
    exactly that build. Run as printed (the uninstall for real, the install as a dry run), the environment ends
    with one build; the old advice (add the extra without uninstalling) would have left two."""
    bin_dir = venv(tmp_path / "venv", [str(wheel)], ["medinfer[cpu]"])
    assert builds(installed(bin_dir)) == {"onnxruntime"}
    ok = run([str(bin_dir / "medinfer"), "verify", str(bundle)], cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    printed = {}
    for provider, extra in (("cuda", "gpu"), ("openvino", "openvino")):
        proc = run([str(bin_dir / "medinfer"), "verify", str(bundle), "--provider", provider], cwd=tmp_path)
        assert proc.returncode == 6, proc.stdout + proc.stderr
        printed[extra] = _printed_command(proc.stderr)
        assert printed[extra] == f"pip uninstall -y onnxruntime && pip install 'medinfer[{extra}]'"
    # Without the uninstall, pip adds the other build beside onnxruntime: two builds in one environment.
    assert builds(installed(bin_dir) | would_install(bin_dir, "medinfer[gpu]")) == {"onnxruntime", "onnxruntime-gpu"}
    uninstall, add = printed["gpu"].split(" && ")
    pip(bin_dir, *shlex.split(uninstall)[1:])
    assert builds(installed(bin_dir)) == set()
    for extra, command in printed.items():
        args = shlex.split(command.split(" && ")[1])[2:]
        assert builds(installed(bin_dir) | would_install(bin_dir, *args)) == {FLAVOURS[extra]}, command


def test_several_builds_are_answered_with_one_command_that_leaves_one() -> None:
    both = ["onnxruntime==1.32.0", "onnxruntime-gpu==1.31.1"]
    assert install_command("gpu", both) == "pip uninstall -y onnxruntime onnxruntime-gpu && pip install 'medinfer[gpu]'"
    assert install_command("cpu", []) == "pip install 'medinfer[cpu]'"
    message = several_builds_message(both)
    assert "pip uninstall -y onnxruntime onnxruntime-gpu && pip install 'medinfer[gpu]'" in message
    with pytest.raises(ValueError, match="unknown onnxruntime flavour"):
        install_command("cuda", both)


# -- every venv the Makefile and the scripts make -------------------------------------------------------------------
_VENV_VARS = re.compile(r"^(\w*VENV)\s*\?=\s*(\S+)", re.M)


def _makefile_installs() -> dict[str, list[str]]:
    """Venv variable -> the pip install lines of the Makefile that install into it."""
    text = (ROOT / "Makefile").read_text()
    out: dict[str, list[str]] = {name: [] for name, _ in _VENV_VARS.findall(text)}
    out.setdefault("VENV", [])
    for line in text.splitlines():
        if "pip install" not in line or line.lstrip().startswith("#"):
            continue
        user = re.search(r"\$\((\w*VENV)\)/bin/python|\$\((PY)\)", line)
        assert user, f"a pip install line without its venv: {line}"
        out["VENV" if user.group(2) else user.group(1)].append(line)
    return out


def _builds_named(line: str) -> list[str]:
    """The onnxruntime builds one pip install line brings: named distributions and medinfer's flavour extras
    (nothing with --no-deps, which installs no dependency)."""
    named = [d for d in re.findall(r"'?(onnxruntime(?:-[a-z]+)?)(?:\[[\w,]+\])?(?:[<>=!~][^' ]*)?'?", line)]
    if "--no-deps" in line:
        return named
    extras = re.findall(r"\.\[([\w,]+)\]", line)
    return named + [FLAVOURS[e] for group in extras for e in group.split(",") if e in FLAVOURS]


def test_every_venv_of_the_makefile_gets_one_build() -> None:
    installs = _makefile_installs()
    assert {"VENV", "DEVICE_VENV", "TRITON_VENV", "MLSERVER_VENV", "OPENVINO_VENV", "LITERT_VENV"} <= set(installs)
    for name, lines in installs.items():
        got = [b for line in lines for b in _builds_named(line)]
        runs_medinfer = any("medinfer" in line or " -e ." in line or "'.[" in line for line in lines)
        if name == "LITERT_VENV":  # LiteRT's own interpreter, no medinfer and no onnxruntime
            assert got == [], (name, lines)
        else:
            assert len(got) == 1, (name, got, lines)
        assert not runs_medinfer or len(got) == 1, name


def test_the_check_of_the_makefile_can_fail() -> None:
    assert _builds_named("\t$(PY) -m pip install -e '.[cpu,gpu,train]'") == ["onnxruntime", "onnxruntime-gpu"]
    assert _builds_named("\t$(V)/bin/python -m pip install 'mlserver==1.7.1' onnxruntime numpy") == ["onnxruntime"]
    assert _builds_named("\t$(V)/bin/python -m pip install --no-deps -e .") == []
    assert _builds_named("\t$(V)/bin/python -m pip install 'onnxruntime-openvino==1.24.1'") == ["onnxruntime-openvino"]


def test_the_oldest_versions_venv_pins_one_build() -> None:
    """scripts/edge_env.py's build/min-venv: the base dependencies and the [cpu] extra at their lower bounds."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import edge_env
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    pins = edge_env.lower_bounds()
    assert [p.split("==")[0] for p in pins if p.startswith("onnxruntime")] == ["onnxruntime"]
    assert {p.split("==")[0] for p in pins} == {"numpy", "onnxruntime"}
    assert not any(b in " ".join(edge_env.TEST_TOOLS) for b in FLAVOURS.values())


def test_import_medinfer_does_not_import_onnxruntime() -> None:
    """Where a build IS installed (this environment), ``import medinfer`` still leaves it alone: the core imports
    it on first use, through medinfer.providers.import_onnxruntime."""
    proc = run([sys.executable, "-X", "importtime", "-c", "import medinfer"])
    assert proc.returncode == 0, proc.stderr
    assert "| medinfer" in proc.stderr and "onnxruntime" not in proc.stderr


def test_only_providers_imports_onnxruntime_in_the_core() -> None:
    """One home for the import (and its one-line error): no other module of the device core imports onnxruntime."""
    offenders = []
    for path in sorted((ROOT / "runtime").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.split(".")[0] == "onnxruntime" for n in names) and path.name != "providers.py":
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []
