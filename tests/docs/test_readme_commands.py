"""Every command README.md shows runs as written: each shell line in its code blocks parses against the CLI it
calls (``medinfer`` and its [train] half, ``make`` targets in the Makefile, ``pip`` with its own parser and the
extras pyproject.toml declares, ``scripts/``), so README and CLI cannot drift apart again.

The same check covers the examples in every ``medinfer ... --help`` (tests/cli/test_cli_help.py).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
from pathlib import Path

import pytest
import tomllib

from ..helpers.commands import check_medinfer, commands

ROOT = Path(__file__).resolve().parents[2]
DOCS = ("README.md", "SECURITY.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md")))


def shell_lines(text: str) -> list[tuple[int, str]]:
    """(line number, command line) of every line in the ```sh / ```bash blocks, backslash continuations joined."""
    out: list[tuple[int, str]] = []
    in_block, pending, start = False, "", 0
    for number, line in enumerate(text.splitlines(), 1):
        fence = re.match(r"^```(\w*)", line)
        if fence:
            in_block = not in_block and fence.group(1) in ("sh", "bash", "shell")
            continue
        if not in_block:
            continue
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full and not full.startswith("#"):
            out.append((start, full))
    return out


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][\w.-]*)\s*:(?!=)", text, re.M))


def extras() -> set[str]:
    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])


def check_make(args: list[str]) -> str | None:
    targets = [a for a in args if not a.startswith("-") and "=" not in a]
    missing = [t for t in targets if t not in make_targets()]
    return f"no such make target: {missing}" if missing else None


def check_pip(args: list[str], seen: dict[str, set[str]]) -> str | None:
    """pip's own option parser, then each requirement: this checkout (with declared extras), a wheel an earlier
    line builds, an extra of a medinfer an earlier line installed, or another distribution (never a bare
    ``medinfer``: it is on no package index)."""
    pip_commands = pytest.importorskip("pip._internal.commands")
    if not args or args[0] not in ("install", "uninstall", "wheel", "download"):
        return f"unexpected pip command {args[:1]}"
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            options, rest = pip_commands.create_command(args[0]).parse_args(args[1:])
    except SystemExit:
        return err.getvalue().strip().splitlines()[-1]
    if args[0] == "wheel":
        seen["wheel_dirs"].add(options.wheel_dir)
    if args[0] == "uninstall":
        return None
    for spec in rest:
        name, _, tail = spec.partition("[")
        wanted = set(tail.rstrip("]").split(",")) - {""} if tail else set()
        unknown = wanted - extras()
        if unknown:
            return f"{spec}: pyproject.toml declares no extra {sorted(unknown)}"
        if name.startswith(".") and not (ROOT / name).exists():
            return f"{spec}: no such path in the checkout"
        if name.endswith(".whl"):
            folder = os.path.dirname(name)
            if not re.fullmatch(r"medinfer-\*\.whl|medinfer-[\d.]+-py3-none-any\.whl", os.path.basename(name)):
                return f"{spec}: not the name pip gives medinfer's wheel"
            if folder not in seen["wheel_dirs"]:
                return f"{spec}: no README line before it builds a wheel into {folder or '.'}/ (pip wheel -w)"
        if name == "medinfer" and not (wanted and seen["installed"]):
            return (f"{spec}: medinfer is on no package index; install '.' or the wheel (pip wheel --no-deps .) "
                    "first, after which pip install 'medinfer[EXTRA]' adds an extra to the installed copy")
        if args[0] == "install" and (name.startswith(".") or name.endswith(".whl")):
            seen["installed"] = {"yes"}
    return None


# The HTTP endpoints of ``medinfer serve`` (runtime/fleet/app.py routes; tests/fleet/test_serve*.py call each).
ENDPOINTS = re.compile(r"/metrics|/v2/?|/v2/health/(live|ready)|/v2/models/stats|/v2/repository/index"
                       r"|/v2/models/(?P<name>[a-z_]+)(/versions/[^/]+)?(/ready|/infer|/stats|/config)?")


def check_curl(args: list[str]) -> str | None:
    """A curl of a local ``medinfer serve``: the path must be one it serves, the model a spec's name."""
    url = next((a for a in args if not a.startswith("-")), "")
    path = "/" + url.split("/", 1)[1] if "/" in url else ""
    if not url.startswith(("localhost:", "127.0.0.1:")):
        return f"curl {url!r}: README curls only a local medinfer serve"
    match = ENDPOINTS.fullmatch(path)
    if match is None:
        return f"curl {url!r}: medinfer serve has no endpoint {path!r}"
    from medinfer.train import registry

    name = match.groupdict().get("name")
    if name and name not in registry.names():
        return f"curl {url!r}: no model named {name!r}"
    return None


def check(argv: list[str], seen: dict[str, set[str]]) -> str | None:
    head, args = argv[0], argv[1:]
    if head == "medinfer":
        return check_medinfer(args)
    if head == "make":
        return check_make(args)
    if head == "pip":
        return check_pip(args, seen)
    if head == "curl":
        return check_curl(args)
    if head == "grep":  # grep METRIC after a curl of /metrics: the metric must be one medinfer exports
        pattern = next((a for a in args if not a.startswith("-")), "")
        known = (ROOT / "runtime" / "fleet" / "metrics.py").read_text()
        return None if pattern and pattern.removesuffix("_total") in known else f"grep {pattern!r}: no such metric"
    if head in ("python3", "python") and args[:2] == ["-m", "venv"] and len(args) == 3:
        seen["venvs"] = seen.get("venvs", set()) | {args[2]}
        return None
    if head == "." and len(args) == 1:  # activating a venv an earlier line made
        venv = args[0].removesuffix("/bin/activate")
        return None if venv in seen.get("venvs", set()) else f". {args[0]}: no earlier line makes the venv {venv}"
    if head.startswith("scripts/"):
        path = ROOT / head
        return None if path.is_file() and os.access(path, os.X_OK) else f"{head} is not an executable file"
    return f"README shows a command this test does not know how to check: {head!r} (teach it here)"


@pytest.mark.parametrize("doc", DOCS)
def test_every_shell_line_parses_against_the_cli(doc: str) -> None:
    lines = shell_lines((ROOT / doc).read_text())
    assert doc != "README.md" or len(lines) > 10
    assert doc != "docs/device-guide.md" or len(lines) > 8
    # A page of docs/ continues the README's first screen, which installs medinfer: an extra may be added there.
    seen: dict[str, set[str]] = {"wheel_dirs": set(), "installed": {"yes"} if doc.startswith("docs/") else set()}
    wrong = []
    for number, line in lines:
        for argv in commands(line):
            problem = check(argv, seen)
            if problem:
                wrong.append(f"{doc}:{number}: {shlex.join(argv)}\n    -> {problem}")
    assert not wrong, "commands that do not run as written:\n" + "\n".join(wrong)


@pytest.mark.parametrize("doc", DOCS)
def test_commands_named_in_the_text_exist(doc: str) -> None:
    """Inline `medinfer SUB` and `make TARGET` mentions name a real subcommand or target (their arguments are often
    left out on purpose, so only the name is checked)."""
    from medinfer.cli.main import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    known = set(sub.choices)  # type: ignore[arg-type]
    wrong = []
    for span in re.findall(r"`((?:medinfer|make) [^`]*)`", (ROOT / doc).read_text()):
        word = span.split()[1]
        if span.startswith("make "):
            if word not in make_targets():
                wrong.append(span)
        elif not word.startswith("-") and word not in known and "…" not in word:
            wrong.append(span)
    assert not wrong, f"{doc} names commands that do not exist: {wrong}"


# -- the checker itself: it must catch the drift it exists for ------------------------------------------------
@pytest.mark.parametrize(("line", "complaint"), [
    ("medinfer data list | fetch all", "does not know how to check: 'fetch'"),
    ("pip install medinfer            # numpy + onnxruntime only", "on no package index"),
    ("medinfer verify bundles/x --provider", "expected one argument"),
    ("medinfer verify bundles/x --no-such-option", "unrecognized arguments"),
    ("medinfer train drug_activity_rf --sample", "expected one argument"),
    ("medinfer export-triton bundles/* --out r --backend tensorflow", "invalid choice"),
    ("make demos", "no such make target"),
    ("pip install '.[trian]'", "declares no extra ['trian']"),
    ("pip install dist/medinfer-*.whl", "builds a wheel into dist/"),
    ("pip install 'medinfer[serve]'", "install '.' or the wheel"),
    ("pip install --no-such-pip-option .", "no such option"),
    ("curl -s localhost:8000/v2/models/drug_activity_rf/statistics", "no endpoint"),
    ("curl -s localhost:8000/v2/models/drug_rf/stats", "no model named 'drug_rf'"),
    ("curl -s localhost:8000/metrics | grep medinfer_no_such_metric", "no such metric"),
])
def test_the_checker_catches_drift(line: str, complaint: str) -> None:
    problems = [p for argv in commands(line) if (p := check(argv, {"wheel_dirs": set(), "installed": set()}))]
    assert problems and complaint in problems[0], problems


def test_the_checker_accepts_what_runs() -> None:
    seen: dict[str, set[str]] = {"wheel_dirs": set(), "installed": set()}
    for line in ("pip wheel --no-deps . -w dist", "pip install dist/medinfer-*.whl", "pip install '.[serve,dicom]'",
                 "pip install 'medinfer[serve]'", "medinfer --help", "make test", "medinfer data fetch all",
                 "medinfer bench bundles/*/ --batch 1 64 --json --out bench.jsonl",
                 "curl -s localhost:8000/v2/models/drug_activity_rf/stats"):
        assert [check(argv, seen) for argv in commands(line)] == [None] * len(commands(line)), line
