"""What a run measured: the commit, whether the tree was clean, when it started, and the bytes of every bundle.

Every benchmark run calls :func:`capture` BEFORE it measures anything and keeps the answer in its record
(``provenance``: ``commit``, ``dirty``, ``changed``, ``started``); a commit read at the end would name a tree the
run never ran (the suite takes tens of minutes, and the tree may change meanwhile). Every bundle it times is
pinned by :func:`bundle_digests` (the sha256 of its ``manifest.json`` and of each graph file, read from disk).

Publishing (anything that writes ``benchmarks/results/``) is refused with :class:`UnpublishableRun` (a
:class:`~medinfer.errors.UsageError`: exit 2) when

- the working tree has uncommitted changes now (:func:`require_clean`: "commit first"),
- the run's own record says its tree was dirty, or unknown, when it started (:func:`check_recorded`),
- the run's commit is not an ancestor of (or equal to) HEAD: a number measured on a commit that is not in this
  history says nothing about this code.

Untracked files that git does not ignore count as changes: a new module beside the code can change what runs. What
the benchmarks themselves write (:data:`OUTPUTS`: results files, the history, plots, REPORT.md) does not: it cannot
change what a run measures, and counting it made each step of a chain (``make bench`` appends to the history, then
``make bench-publish``; ``make bench-edge``'s three measurements, each writing its results file) refuse the next.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from medinfer.errors import UsageError
from medinfer.integrity import sha256_file
from medinfer.timestamps import utc_text

ROOT = Path(__file__).resolve().parents[1]
SHOWN = 20  # changed paths kept in a record (the count is always complete)
# What benchmark runs write: never code, so never a change that makes a tree "dirty" (see the module docstring)
OUTPUTS = ("benchmarks/results/", "benchmarks/history/", "benchmarks/plots/", "benchmarks/REPORT.md")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


class UnpublishableRun(UsageError):
    """A run or a tree that cannot be published: uncommitted changes, or a commit outside HEAD's history."""


def now() -> str:
    """The current UTC time as the records write it (``2026-12-01T09:30:00Z``)."""
    return utc_text()


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None


def capture(root: Path | None = None) -> dict[str, Any]:
    """The state of ``root``'s checkout now: ``commit`` (40 hex, None outside git), ``dirty`` (None when unknown),
    ``changed`` (how many paths differ from the commit), ``changed_paths`` (the first :data:`SHOWN`) and
    ``started`` (UTC). Call it before measuring: it is the record's statement of what ran."""
    started = now()
    root = root or ROOT
    head = _git(root, "rev-parse", "HEAD")
    commit = head.stdout.strip() if head is not None and head.returncode == 0 else None
    status = _git(root, "status", "--porcelain=v1", "--untracked-files=all") if commit else None
    if commit is None or status is None or status.returncode != 0 or not _COMMIT.match(commit):
        return {"commit": None, "dirty": None, "changed": None, "changed_paths": [], "started": started}
    paths = [line[3:].split(" -> ")[-1] for line in status.stdout.splitlines() if line.strip()]  # renamed: new
    paths = [p for p in paths if not p.strip('"').startswith(OUTPUTS)]
    return {"commit": commit, "dirty": bool(paths), "changed": len(paths), "changed_paths": paths[:SHOWN],
            "started": started}


def require_clean(root: Path | None = None, what: str = "publishing") -> dict[str, Any]:
    """:func:`capture`, refusing a tree with uncommitted changes (or outside git).

    Raises:
        UnpublishableRun: naming the changed paths and saying to commit first.
    """
    state = capture(root)
    if state["commit"] is None:
        raise UnpublishableRun(f"{what} needs a git checkout: {root or ROOT} is not one (or git is missing), so "
                               "no commit would name what was measured")
    if state["dirty"]:
        shown = ", ".join(state["changed_paths"][:5]) + (" ..." if state["changed"] > 5 else "")
        raise UnpublishableRun(f"{what} refused: the working tree has {state['changed']} uncommitted change(s) "
                               f"({shown}); commit first, then run again: a published number must name the commit "
                               "it measured")
    return state


def is_ancestor(commit: str, root: Path | None = None) -> bool:
    """Whether ``commit`` is HEAD or one of its ancestors in ``root``'s history."""
    if not _COMMIT.match(commit or ""):
        return False
    out = _git(root or ROOT, "merge-base", "--is-ancestor", commit, "HEAD")
    return out is not None and out.returncode == 0


def check_recorded(prov: Any, root: Path | None = None, what: str = "this run") -> None:
    """Refuse to publish a record whose provenance is missing, dirty (or unknown) at its start, or whose commit is
    not in HEAD's history.

    Raises:
        UnpublishableRun: saying which and how to fix it.
    """
    if not isinstance(prov, dict):
        raise UnpublishableRun(f"{what} records no provenance (commit and clean tree at its start): it predates "
                               "this check; measure again from a clean, committed tree")
    if prov.get("dirty") is not False:
        state = "had uncommitted changes" if prov.get("dirty") else "was not a known git checkout"
        raise UnpublishableRun(f"{what} started on a tree that {state} (commit {prov.get('commit')}, "
                               f"{prov.get('changed')} changed path(s)): commit first, then measure again")
    if not is_ancestor(str(prov.get("commit")), root):
        raise UnpublishableRun(f"{what} measured commit {prov.get('commit')}, which is not HEAD or an ancestor of "
                               "it here: its numbers do not describe this code; measure again on this history")


def still_publishable(prov: dict[str, Any], root: Path | None = None, what: str = "this run") -> None:
    """At the end of a run that writes its own results: the recorded start was clean and in HEAD's history, and
    the tree is still clean (a change made while it measured would make the record name the wrong code)."""
    check_recorded(prov, root, what)
    require_clean(root, f"writing the results of {what}")


def stated(doc: dict[str, Any]) -> str:
    """When a results document's run started and which commit it measured, for a renderer: from its provenance, or,
    for a document written before provenance existed, what it recorded (a commit read at the end, or none)."""
    prov = doc.get("provenance")
    if isinstance(prov, dict):
        state = "a clean tree" if prov.get("dirty") is False else "UNCOMMITTED CHANGES"
        return f"{prov.get('started')}, commit `{str(prov.get('commit'))[:10]}` ({state}, recorded at the start)"
    commit = (doc.get("env") or {}).get("git_commit")
    when = doc.get("time") or "at an unrecorded time"
    return f"{when}, " + (f"commit `{commit}` (read at the end of the run, before issue 24)" if commit else
                          "no commit recorded (before issue 24)")


def bundle_digests(bundle: Path) -> dict[str, Any]:
    """The bytes a run timed: sha256 of ``manifest.json`` and of each variant's graph file, read from disk now
    (a graph that no longer matches its manifest is recorded as it is; loading it would refuse it)."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    graphs = {key: sha256_file(bundle / v["file"]) for key, v in sorted(manifest.get("variants", {}).items())
              if (bundle / v["file"]).is_file()}
    return {"manifest_sha256": sha256_file(bundle / "manifest.json"), "graphs": graphs}


def bundles_of(bundles: list[Path]) -> dict[str, dict[str, Any]]:
    """{model name: :func:`bundle_digests`} of every bundle a run times."""
    out = {}
    for bundle in bundles:
        name = json.loads((bundle / "manifest.json").read_text()).get("name", bundle.name)
        out[str(name)] = bundle_digests(bundle)
    return out


if __name__ == "__main__":  # the state of this checkout now, as JSON (for scripts that run elsewhere)
    print(json.dumps(capture()))
