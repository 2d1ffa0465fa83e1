"""``make promises``: every promise's tests must PASS on the tree as it is and FAIL once its mechanism is removed.

The tree (git's tracked and untracked, not ignored files) is copied once into a temporary folder, with a
``site/medinfer`` package laid out as the wheel installs it (``runtime/`` + ``train/`` + ``export/``, linked) and
put first on ``PYTHONPATH``, so the tests and every subprocess they start import the copy. Each promise's edits are
applied there, its tests run (``pytest -x``: one failure is enough), and the files are restored. A cited test that is
skipped or deselected proves nothing: a run where none of the cited tests passed (unmutated) counts as not proven.
Results: ``promises/results.json`` (raw data), rendered into SECURITY.md between markers.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .catalogue import ROOT, Promise

RESULTS = ROOT / "promises" / "results.json"
COMMAND = "make promises"
PACKAGES = {"": "runtime", "train": "train", "export": "export"}  # medinfer/<key> -> tree folder


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()


def provenance() -> dict[str, Any]:
    """Commit, dirty flag and start time, taken when the run starts."""
    return {"commit": _git("rev-parse", "HEAD"), "dirty": bool(_git("status", "--porcelain")),
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def copy_tree(dest: Path) -> Path:
    """Copy the working tree (tracked + untracked, not ignored) to ``dest/tree``; lay out ``dest/site/medinfer``."""
    tree = dest / "tree"
    names = _git("ls-files", "-co", "--exclude-standard", "-z").split("\0")
    for name in filter(None, names):
        src = ROOT / name
        if src.is_file() and not src.is_symlink():
            target = tree / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    pkg = dest / "site" / "medinfer"
    pkg.mkdir(parents=True)
    for entry in (tree / "runtime").iterdir():
        (pkg / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    for sub, folder in PACKAGES.items():
        if sub:
            (pkg / sub).symlink_to(tree / folder, target_is_directory=True)
    return tree


def _outcomes(junit: Path) -> dict[str, str]:
    """``{test id: passed | failed | error | skipped}`` from pytest's junit XML."""
    out: dict[str, str] = {}
    if not junit.is_file():
        return out
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        kinds = {child.tag for child in case}
        out[name] = ("failed" if "failure" in kinds else "error" if "error" in kinds
                     else "skipped" if "skipped" in kinds else "passed")
    return out


def run_tests(tree: Path, tests: Iterable[str], *, stop_at_first: bool, nice: int = 15,
              timeout: float = 1800) -> dict[str, Any]:
    """Run ``tests`` in the copy; counts of passed/failed/error/skipped, seconds and pytest's exit code."""
    junit = tree.parent / "junit.xml"
    junit.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": str(tree.parent / "site"), "PYTHONDONTWRITEBYTECODE": "1",
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("PYTEST_ADDOPTS", None)
    cmd = ["nice", "-n", str(nice), sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
           f"--junitxml={junit}", *(["-x"] if stop_at_first else []), *tests]
    started = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout, check=False)
        code, tail = proc.returncode, (proc.stdout + proc.stderr)[-3000:]
    except subprocess.TimeoutExpired as exc:
        code, tail = -1, f"timed out after {timeout} s: {str(exc.stdout or '')[-2000:]}"
    outcomes = _outcomes(junit)
    counts = {k: sum(1 for v in outcomes.values() if v == k) for k in ("passed", "failed", "error", "skipped")}
    return {"exit_code": code, **counts, "seconds": round(time.monotonic() - started, 1),
            "failing": sorted(k for k, v in outcomes.items() if v in ("failed", "error"))[:5], "tail": tail}


def check_one(tree: Path, promise: Promise, log: Any = None) -> dict[str, Any]:
    """Run one promise: its tests unmutated (all must pass, at least one must run), then mutated (one must fail)."""
    started = time.monotonic()
    row: dict[str, Any] = {"id": promise.id, "mutation_sha256": promise.mutation_sha256, "tests": list(promise.tests)}
    plain = run_tests(tree, promise.tests, stop_at_first=False)
    row["unmutated"] = {k: v for k, v in plain.items() if k != "tail"}
    row["unmutated_pass"] = plain["exit_code"] == 0 and plain["passed"] > 0 and not plain["failed"] + plain["error"]
    if not row["unmutated_pass"] and log:
        log(f"  unmutated run of {promise.id} did not pass:\n{plain['tail']}")
    edits = promise.mutated(tree)
    try:
        for path, (_, text) in edits.items():
            path.write_text(text)
        mutated = run_tests(tree, promise.tests, stop_at_first=True)
    finally:
        for path, (original, _) in edits.items():
            path.write_text(original)
    row["mutated"] = {k: v for k, v in mutated.items() if k != "tail"}
    row["mutated_fail"] = mutated["failed"] + mutated["error"] > 0 and mutated["exit_code"] not in (0, 5)
    row["caught"] = bool(row["unmutated_pass"] and row["mutated_fail"])
    if row["unmutated_pass"] and not row["mutated_fail"] and log:
        log(f"  the tests of {promise.id} SURVIVED the mutation:\n{mutated['tail']}")
    row["seconds"] = round(time.monotonic() - started, 1)
    return row


def run(promises: list[Promise], previous: dict[str, Any] | None, log: Any) -> dict[str, Any]:
    """Check ``promises`` (all, or those picked with --only), keeping earlier rows of the others."""
    meta = provenance()
    rows = {r["id"]: r for r in (previous or {}).get("rows", [])}
    with tempfile.TemporaryDirectory(prefix="medinfer-promises-") as tmp:
        tree = copy_tree(Path(tmp))
        for promise in promises:
            for edit in promise.edits:  # fail fast and by name when a snippet no longer applies
                edit.apply(tree)
        for i, promise in enumerate(promises, 1):
            log(f"[promises] {i}/{len(promises)} {promise.id}: {promise.mutation}")
            row = check_one(tree, promise, log)
            row.update({k: meta[k] for k in ("commit", "dirty", "started")})
            rows[promise.id] = row
            log(f"[promises] {promise.id}: unmutated {'pass' if row['unmutated_pass'] else 'NOT PASSING'}, mutated "
                f"{'fails (caught)' if row['mutated_fail'] else 'PASSES (not caught)'} in {row['seconds']:.0f} s")
    return {"command": COMMAND, "rows": list(rows.values())}
