"""The mutation score of the security-relevant device core (mutmut 3), per module, with its surviving mutants.

``python -m promises.mutation run [--only runtime/audit.py]`` (``make mutation-score``) runs mutmut over each
module of ``promises/mutation.toml`` against the device tests listed for it, in a staging copy under
``build/mutation/<module>/`` where ``runtime/`` is laid out as the ``medinfer`` package it installs as (mutmut
names mutants by file path, the tests import ``medinfer``). Subprocesses the tests start import the mutated copy
too (``PYTHONPATH``), so a test that runs ``python -m medinfer`` can kill a mutant. The results go to
``promises/mutation.json`` (raw data: counts per status, every mutant not killed with its diff) and the summary is
rendered into SECURITY.md between markers. ``[[equivalent]]`` entries of the toml mark survivors that cannot change
behaviour, with the reason; the score is killed / (mutants - equivalent), a timeout counting as killed (the mutant
hangs the test, which fails).

``python -m promises.mutation render`` re-renders SECURITY.md from the committed results.
"""

from __future__ import annotations

import argparse
import ast
import datetime as _dt
import difflib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import tomllib

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "promises" / "mutation.toml"
RESULTS = ROOT / "promises" / "mutation.json"
SECURITY = ROOT / "SECURITY.md"
BEGIN, END = "<!-- mutation-score:begin -->", "<!-- mutation-score:end -->"
STAGING = ROOT / "build" / "mutation"
DETECTED = ("killed", "timeout", "segfault", "caught by type check")
GOAL = 0.90
COMMAND = "make mutation-score"


def load_config(path: Path = CONFIG) -> dict[str, Any]:
    """The modules (``{"runtime/x.py": {"tests": [...]}}``) and the equivalent mutants (``[{...}]``)."""
    doc = tomllib.loads(path.read_text())
    for module, entry in doc.get("modules", {}).items():
        if not (ROOT / module).is_file():
            raise SystemExit(f"{path}: module {module} does not exist (moved? re-point it)")
        missing = [t for t in entry["tests"] if not (ROOT / t).is_file()]
        if missing:
            raise SystemExit(f"{path}: tests of {module} do not exist: {missing}")
    return {"modules": doc.get("modules", {}), "equivalent": doc.get("equivalent", [])}


def package_name(module: str) -> str:
    """``runtime/audit.py`` -> ``medinfer/audit.py`` (the layout the package installs as)."""
    parts = Path(module).parts
    if parts[0] != "runtime":
        raise SystemExit(f"{module}: only the device runtime (runtime/) is mutated here")
    return "/".join(("medinfer", *parts[1:]))


def stage(module: str, tests: list[str], folder: Path) -> None:
    """A fresh staging tree: ``medinfer/`` (runtime), ``tests/``, and a pyproject.toml with the mutmut settings."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "runtime", folder / "medinfer", ignore=ignore)
    shutil.copytree(ROOT / "tests", folder / "tests", ignore=ignore)
    for extra in ("scripts", "benchmarks"):  # some device tests run a script or a benchmark driver
        shutil.copytree(ROOT / extra, folder / extra, ignore=ignore)
    pytest_cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    markers = ", ".join(json.dumps(m) for m in pytest_cfg["markers"])
    (folder / "pyproject.toml").write_text(
        "[tool.mutmut]\n"
        'source_paths = ["medinfer"]\n'
        'also_copy = ["scripts", "benchmarks"]\n'
        f"only_mutate = [{json.dumps(package_name(module))}]\n"
        f"pytest_add_cli_args_test_selection = {json.dumps(tests)}\n"
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q", "-x", "-m", "not train and not triton and not scale"]\n'
        "use_git_change_detection = false\n\n"
        "[tool.pytest.ini_options]\n"
        f"markers = [{markers}]\n")


def _mutmut(folder: Path, *args: str, log: Path | None = None, nice: int = 19) -> str:
    exe = Path(sys.executable).with_name("mutmut")
    # Subprocesses of the tests import the mutated package through a folder holding only a link to it (the mutants
    # folder itself on PYTHONPATH would be dropped by mutmut, and would shadow nothing else).
    subprocess_path = folder / "subprocess-path"
    subprocess_path.mkdir(exist_ok=True)
    link = subprocess_path / "medinfer"
    if not link.is_symlink():
        link.symlink_to(folder / "mutants" / "medinfer", target_is_directory=True)
    env = {**os.environ, "PYTHONPATH": str(subprocess_path), "TF_CPP_MIN_LOG_LEVEL": "2"}
    cmd = ["nice", "-n", str(nice), str(exe), *args]
    if log is not None:
        with open(log, "wb") as out:
            proc = subprocess.run(cmd, cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"mutmut {' '.join(args)} failed in {folder} (exit {proc.returncode}); see {log}")
        return ""
    return subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, check=True).stdout


def function_of(name: str) -> str:
    """``medinfer.audit.xǁAuditLogǁ_sync__mutmut_3`` -> ``AuditLog._sync``."""
    mangled = name.rsplit(".", 1)[1].rsplit("__mutmut_", 1)[0]
    if mangled.startswith("xǁ"):
        return ".".join(p for p in mangled[2:].split("ǁ") if p)
    return mangled[2:] if mangled.startswith("x_") else mangled


def _bodies(text: str) -> dict[str, list[str]]:
    """Each function of a mutated file by name, as its source lines (the signature included, with the mutant's own
    name replaced by ``def <function>``, so a mutated default value shows)."""
    lines = text.splitlines()
    out: dict[str, list[str]] = {}
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and "__mutmut_" in node.name:
            source = lines[node.lineno - 1:node.end_lineno]
            out[node.name] = [source[0].replace(node.name, "<function>", 1), *source[1:]]
    return out


def diff_lines(orig: list[str], mutant: list[str]) -> tuple[list[str], list[str]]:
    """The removed and added lines (stripped) between a function and its mutant."""
    removed, added = [], []
    for line in difflib.ndiff(orig, mutant):
        if line.startswith("- "):
            removed.append(line[2:].strip())
        elif line.startswith("+ "):
            added.append(line[2:].strip())
    return removed, added


def collect(folder: Path, module: str) -> list[dict[str, Any]]:
    """Every mutant of the run with its status; the diff of each one not detected."""
    bodies = _bodies((folder / "mutants" / package_name(module)).read_text())
    out = []
    for line in _mutmut(folder, "results", "--all", "true", nice=0).splitlines():
        m = re.match(r"\s+(\S+): (.+)$", line)
        if not m:
            continue
        name, status = m.groups()
        row: dict[str, Any] = {"mutant": name, "function": function_of(name), "status": status}
        if status not in DETECTED:
            local = name.rsplit(".", 1)[1]
            orig = bodies[local.rsplit("__mutmut_", 1)[0] + "__mutmut_orig"]
            row["removed"], row["added"] = diff_lines(orig, bodies[local])
        out.append(row)
    return out


def equivalence(row: dict[str, Any], module: str, equivalent: list[dict[str, Any]]) -> str | None:
    for e in equivalent:
        if (e["module"] == module and e["function"] == row["function"] and e["removed"] == row.get("removed")
                and e["added"] == row.get("added")):
            return str(e["reason"])
    return None


def summarise(module: str, rows: list[dict[str, Any]], equivalent: list[dict[str, Any]]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    survivors = []
    n_equivalent = 0
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
        if row["status"] in DETECTED:
            continue
        reason = equivalence(row, module, equivalent)
        if reason is not None:
            n_equivalent += 1
        survivors.append({k: row[k] for k in ("function", "status", "removed", "added")}
                         | ({"equivalent": reason} if reason else {}))
    detected = sum(counts.get(s, 0) for s in DETECTED)
    scored = len(rows) - n_equivalent
    return {"mutants": len(rows), "counts": dict(sorted(counts.items())), "detected": detected,
            "equivalent": n_equivalent, "score": round(detected / scored, 4) if scored else None,
            "source_sha256": hashlib.sha256((ROOT / module).read_bytes()).hexdigest(), "survivors": survivors}


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()


def run(only: list[str] | None, children: int, collect_only: bool = False) -> dict[str, Any]:
    cfg = load_config()
    modules = only or list(cfg["modules"])
    unknown = [m for m in modules if m not in cfg["modules"]]
    if unknown:
        raise SystemExit(f"not in {CONFIG.name}: {unknown}")
    commit = _git("rev-parse", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    for module in modules:
        folder = STAGING / Path(module).stem
        started = time.time()
        if not collect_only:
            stage(module, cfg["modules"][module]["tests"], folder)
            print(f"[mutation] {module}: mutmut run in {folder} (log: {folder / 'run.log'})", file=sys.stderr,
                  flush=True)
            _mutmut(folder, "run", "--max-children", str(children), log=folder / "run.log")
        rows = collect(folder, module)
        entry = summarise(module, rows, cfg["equivalent"])
        entry.update(tests=cfg["modules"][module]["tests"], seconds=round(time.time() - started, 1),
                     commit=commit, dirty=dirty,
                     started=_dt.datetime.fromtimestamp(started, _dt.timezone.utc).isoformat(timespec="seconds"))
        print(f"[mutation] {module}: {entry['detected']}/{entry['mutants']} detected, {entry['equivalent']} "
              f"equivalent, score {entry['score']} in {entry['seconds']:.0f} s", file=sys.stderr, flush=True)
        # re-read before writing: another run (another module) may have written meanwhile
        results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"command": COMMAND, "modules": {}}
        results["modules"][module] = entry
        results["command"] = COMMAND
        results["modules"] = dict(sorted(results["modules"].items()))
        RESULTS.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    return json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"command": COMMAND, "modules": {}}


def recount(results: dict[str, Any], equivalent: list[dict[str, Any]]) -> dict[str, Any]:
    """Re-apply the equivalence marks of the toml to committed results (no mutmut run)."""
    for module, entry in results["modules"].items():
        n = 0
        for s in entry["survivors"]:
            s.pop("equivalent", None)
            reason = equivalence(s, module, equivalent)
            if reason:
                s["equivalent"] = reason
                n += 1
        entry["equivalent"] = n
        scored = entry["mutants"] - n
        entry["score"] = round(entry["detected"] / scored, 4) if scored else None
    return results


def render(results: dict[str, Any], modules: list[str] | None = None) -> str:
    """The SECURITY.md section: score per module, survivors that are not equivalent listed by function."""
    lines = [f"Measured with `{COMMAND}` (mutmut 3 over each module, the device tests listed in "
             "`promises/mutation.toml`; raw data with every surviving mutant in `promises/mutation.json`). "
             f"Score = detected / (mutants - equivalent); goal {GOAL:.0%}.", "",
             "| module | mutants | killed | timeout | equivalent | survived | no tests | score | commit |",
             "|---|---|---|---|---|---|---|---|---|"]
    total = detected = equivalent = 0
    for module in sorted(set(modules or ()) - set(results["modules"])):
        lines.append(f"| `{module}` | not measured yet | | | | | | | |")
    for module, e in results["modules"].items():
        c = e["counts"]
        open_ = [s for s in e["survivors"] if "equivalent" not in s]
        lines.append(f"| `{module}` | {e['mutants']} | {c.get('killed', 0)} | {c.get('timeout', 0)} | "
                     f"{e['equivalent']} | {sum(1 for s in open_ if s['status'] != 'no tests')} | "
                     f"{sum(1 for s in open_ if s['status'] == 'no tests')} | "
                     f"{'n/a' if e['score'] is None else format(e['score'], '.1%')} | "
                     f"`{e['commit'][:10]}{'+dirty' if e['dirty'] else ''}` |")
        total, detected, equivalent = total + e["mutants"], detected + e["detected"], equivalent + e["equivalent"]
    if total - equivalent:
        lines.append(f"| **all** | {total} | | | {equivalent} | | | **{detected / (total - equivalent):.1%}** | |")
    remaining = [(m, s) for m, e in results["modules"].items() for s in e["survivors"] if "equivalent" not in s]
    if remaining:
        by_fn: dict[str, int] = {}
        for m, s in remaining:
            key = f"`{Path(m).stem}.{s['function']}`"
            by_fn[key] = by_fn.get(key, 0) + 1
        lines += ["", "Surviving mutants not marked equivalent, by function: "
                  + ", ".join(f"{k} {v}" for k, v in sorted(by_fn.items())) + "."]
    return "\n".join(lines)


def rewrite(path: Path, block: str, begin: str = BEGIN, end: str = END) -> None:
    text = path.read_text()
    if begin not in text or end not in text:
        raise SystemExit(f"{path} lacks the markers {begin} ... {end}")
    head, rest = text.split(begin, 1)
    path.write_text(f"{head}{begin}\n{block}\n{end}{rest.split(end, 1)[1]}")


def section(path: Path = SECURITY, begin: str = BEGIN, end: str = END) -> str:
    return path.read_text().split(begin, 1)[1].split(end, 1)[0].strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m promises.mutation", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run mutmut (hours of CPU for every module) and render")
    r.add_argument("--only", action="append", help="a module of promises/mutation.toml (repeatable)")
    r.add_argument("--children", type=int, default=1, help="mutmut workers (default 1)")
    r.add_argument("--collect-only", action="store_true", help="re-read the results of the last run (no mutmut run)")
    sub.add_parser("render", help="apply the toml's equivalence marks to the results and render SECURITY.md")
    args = parser.parse_args(argv)
    if args.cmd == "run":
        results = run(args.only, args.children, args.collect_only)
    else:
        results = recount(json.loads(RESULTS.read_text()), load_config()["equivalent"])
        RESULTS.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    rewrite(SECURITY, render(results, list(load_config()["modules"])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
