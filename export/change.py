"""Change control at export: the new bundle's lineage (parent sha256, change log, release counter) and its PCCP.

``medinfer export|build NAME --parent OLD_BUNDLE --change "why" [--pccp plan.json] [--release N]`` records the
parent (verified with ``medinfer.load`` first: only a genuine bundle can be a parent) and appends this change to
the parent's log. Every exported bundle declares a PCCP: the one given, or :func:`medinfer.change.default_pccp` of
its own held-out metrics; it is what ``medinfer diff`` holds a future candidate to.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import medinfer
from medinfer.change import ChangeEntry, Lineage, Pccp, default_pccp
from medinfer.errors import UsageError
from medinfer.integrity import sha256_bytes
from medinfer.manifest import decode_manifest, read_manifest_bytes
from medinfer.schema import parse


@dataclass(frozen=True)
class ChangeRequest:
    """What the exporter was told about the change (all optional)."""

    parent: Path | None = None
    summary: str = ""
    release: int | None = None
    pccp: Path | None = None
    author: str = ""


def load_pccp(path: Path) -> Pccp:
    """A PCCP from a JSON file (the fields of :class:`medinfer.change.Pccp`).

    Raises:
        UsageError: unreadable or not JSON; ManifestError: a field that does not fit the schema.
    """
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"--pccp {path}: cannot read a JSON plan ({exc})") from None
    return parse(Pccp, data, doc=str(path))


def change_fields(name: str, version: str, task: str, metrics: dict[str, Any],
                  request: ChangeRequest | None) -> dict[str, Any]:
    """The manifest fields ``lineage`` and ``pccp`` of a new bundle.

    Raises:
        UsageError: a parent of another model, a release that does not move forward, a change without a summary.
        IntegrityError, ManifestError, SelfTestError: the parent is not a genuine bundle.
    """
    request = request or ChangeRequest()
    heldout = metrics.get("heldout", {}) if isinstance(metrics, dict) else {}
    pccp = load_pccp(request.pccp) if request.pccp else default_pccp(task, heldout)
    if request.parent is None:
        if request.release is None and not request.summary:
            return {"pccp": pccp}
        release = request.release or 1
        entries = (ChangeEntry(request.summary, version, release, author=request.author),) if request.summary else ()
        return {"pccp": pccp, "lineage": Lineage(release=release, changes=entries)}
    if not request.summary:
        raise UsageError("--parent needs --change \"what changed and why\": the change log entry of this bundle")
    raw = read_manifest_bytes(request.parent)
    parent = decode_manifest(raw, str(Path(request.parent) / "manifest.json"))
    medinfer.load(request.parent)  # digests, a present signature, the self-test: a genuine bundle
    if parent.name != name:
        raise UsageError(f"--parent {request.parent} is a bundle of {parent.name!r}, not of {name!r}")
    parent_release = parent.lineage.release if parent.lineage else 0
    release = request.release if request.release is not None else parent_release + 1
    if release <= parent_release:
        raise UsageError(f"--release {release} does not move forward from the parent's release {parent_release}")
    log = (parent.lineage.changes if parent.lineage else ()) + (
        ChangeEntry(request.summary, version, release, author=request.author),)
    lineage = Lineage(release=release, parent_sha256=sha256_bytes(raw), parent_version=parent.version,
                      parent_release=parent_release, changes=log)
    return {"pccp": pccp, "lineage": lineage}
