"""Integrity of a bundle: every file pinned by sha256 in the manifest, checked before any session exists."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .errors import IntegrityError
from .files import SealedCopy, bundle_entries, stream_regular_file
from .manifest import MANIFEST_NAME, SIGNATURE_NAME, Manifest

# Files a bundle folder may hold besides the pinned ones.
_UNPINNED_ALLOWED = {MANIFEST_NAME, SIGNATURE_NAME}


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_files(bundle: Path, manifest: Manifest, keep: tuple[str, ...] = (),
                 seal: tuple[str, ...] = ()) -> dict[str, Any]:
    """Check size and sha256 of every pinned file and refuse anything else in the folder.

    Every entry is walked (hidden files, ``__pycache__``, sub-folders included): symlinks and special files are
    refused, and so is any file or folder the manifest does not pin. Files are read only as regular files, at most
    their pinned size, in blocks (a file not asked for is hashed, never held whole). Files named in ``keep`` are
    returned as bytes, those in ``seal`` as a :class:`~medinfer.files.SealedCopy`, so the caller uses exactly the
    bytes that were hashed (no window between the check and the use); the caller closes the sealed copies.

    Raises:
        IntegrityError: naming the first file that is missing, altered, not a regular file or not pinned.
    """
    bundle = Path(bundle)
    present, folders = bundle_entries(bundle)
    kept: dict[str, Any] = {}
    try:
        for name, entry in manifest.files.items():
            what = f"{bundle}: file '{name}'"
            if not os.path.lexists(bundle / name):
                raise IntegrityError(f"{what} is pinned by the manifest but missing; restore the bundle from its "
                                     "source")
            digest = hashlib.sha256()
            sink: Any = digest.update
            chunks: list[bytes] = []
            if name in seal:
                copy = kept[name] = SealedCopy(name)

                def sink(block: bytes, _copy: SealedCopy = copy, _update: Any = digest.update) -> None:
                    _update(block)
                    _copy.write(block)
            elif name in keep:
                def sink(block: bytes, _update: Any = digest.update, _chunks: list[bytes] = chunks) -> None:
                    _update(block)
                    _chunks.append(block)
            size = stream_regular_file(bundle / name, entry.size, what, sink)
            if size != entry.size:
                raise IntegrityError(
                    f"{what} has {size} bytes, the manifest pins {entry.size}: the file was altered or truncated; "
                    "restore the bundle from its source"
                )
            actual = digest.hexdigest()
            if actual != entry.sha256:
                raise IntegrityError(
                    f"{what} has sha256 {actual[:16]}…, the manifest pins {entry.sha256[:16]}…: the file was "
                    "altered; restore the bundle from its source"
                )
            if name in seal:
                kept[name].seal()
            elif name in keep:
                kept[name] = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        extra = sorted(present - set(manifest.files) - _UNPINNED_ALLOWED)
        needed = {str(Path(name).parent.as_posix()) for name in manifest.files} - {"."}
        extra += sorted(f"{f}/" for f in folders if f not in needed and not any(n.startswith(f + "/") for n in needed))
        if extra:
            raise IntegrityError(
                f"{bundle}: '{extra[0]}' is not pinned by the manifest"
                + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else "")
                + "; a bundle holds only the files its manifest pins: remove it or re-export the bundle"
            )
    except BaseException:
        for value in kept.values():
            if isinstance(value, SealedCopy):
                value.close()
        raise
    return kept


#: The ONNX metadata key naming the contract digest's scheme (absent: scheme "1", bundles written before it).
CONTRACT_SCHEME_KEY = "medinfer.contract_scheme"
#: The scheme the exporter writes: "2" also covers the guard's settings (:func:`guard_settings`).
CONTRACT_SCHEME = "2"
CONTRACT_SCHEMES = ("1", "2")
_CONTRACT_KEYS = ("name", "version", "task", "inputs", "outputs", "labels", "decision")


def guard_settings(manifest_json: Mapping[str, Any]) -> dict[str, Any]:
    """What scheme "2" of :func:`contract_digest` adds to the behaviour-defining part: the settings that decide
    whether a sample is answered and how much memory a call may take.

    - ``domain``: the guard's output, threshold, coverage and method (``None`` without a guard: removing the section
      changes the digest like editing its threshold does);
    - ``profile``: ``chunk`` and ``max_batch`` (the memory bounds of a call);
    - ``max_elements``: the per-call bound of each variant that has no contract of its own (a variant with one,
      e.g. a whole-slice graph, carries it in its own digest, :func:`variant_contract_digest`); the exporter sets
      none, so this is ``{}`` unless an edit added one.
    """
    domain = manifest_json.get("domain")
    profile = manifest_json.get("profile") or {}
    variants = manifest_json.get("variants") or {}
    return {
        "domain": None if not isinstance(domain, Mapping) else
        {k: domain.get(k) for k in ("output", "threshold", "coverage", "method")},
        "profile": {k: profile.get(k) for k in ("chunk", "max_batch")} if isinstance(profile, Mapping) else None,
        "max_elements": {k: v.get("max_elements") for k, v in sorted(variants.items())
                         if isinstance(v, Mapping) and v.get("inputs") is None and v.get("max_elements") is not None},
    }


def contract_digest(manifest_json: Mapping[str, Any], scheme: str = "1") -> str:
    """Digest of the parts of a manifest that define the model's behaviour (not files, not metrics).

    Stored in the ONNX ``metadata_props`` so a bare .onnx says which contract it belongs to; it cannot be the
    digest of the whole manifest because the manifest pins the .onnx file's own sha256. Scheme ``"1"``: name,
    version, task, inputs, outputs, labels and the decision (bundles written before scheme 2 still load with it);
    scheme ``"2"`` (:data:`CONTRACT_SCHEME`, what the exporter writes, named in the graph's
    :data:`CONTRACT_SCHEME_KEY`): also :func:`guard_settings`.

    Raises:
        ValueError: an unknown scheme.
    """
    if scheme not in CONTRACT_SCHEMES:
        raise ValueError(f"unknown contract digest scheme {scheme!r} (known: {', '.join(CONTRACT_SCHEMES)})")
    part = {k: manifest_json.get(k) for k in _CONTRACT_KEYS}
    if scheme != "1":
        part["guard"] = guard_settings(manifest_json)
    return sha256_bytes(json.dumps(part, sort_keys=True, separators=(",", ":"), allow_nan=True).encode())


def expected_contract(manifest_json: Mapping[str, Any], graph_metadata: Mapping[str, str], what: str) -> str:
    """The contract digest a graph whose ``metadata_props`` are ``graph_metadata`` must carry for this manifest,
    in the scheme the graph names (none: "1").

    Raises:
        IntegrityError: the graph names a scheme this medinfer does not know (written by a newer one).
    """
    scheme = graph_metadata.get(CONTRACT_SCHEME_KEY, "1")
    if scheme not in CONTRACT_SCHEMES:
        raise IntegrityError(f"{what} carries {CONTRACT_SCHEME_KEY}={scheme!r}, a contract digest scheme this medinfer "
                             f"does not know (it knows {', '.join(CONTRACT_SCHEMES)}): use a medinfer release that "
                             "reads it")
    return contract_digest(manifest_json, scheme)


def variant_contract_digest(variant: Any) -> str:
    """Digest of a variant's own contract (inputs, outputs, ``windows_of``, ``max_elements``), stored in its graph's
    ``metadata_props`` like :func:`contract_digest`."""
    from .schema import to_json

    part = {k: to_json(getattr(variant, k)) for k in ("inputs", "outputs", "windows_of", "max_elements")}
    return sha256_bytes(json.dumps(part, sort_keys=True, separators=(",", ":")).encode())


def outputs_digest(outputs: Mapping[str, np.ndarray], order: tuple[str, ...] | None = None) -> str:
    """sha256 over name, dtype, shape and C-order bytes of each output: a bit-exact fingerprint."""
    digest = hashlib.sha256()
    for name in order or tuple(sorted(outputs)):
        arr = np.ascontiguousarray(outputs[name])
        digest.update(f"{name}|{arr.dtype.str}|{arr.shape}|".encode())
        if arr.dtype.kind in "OU":
            digest.update("\x00".join(map(str, arr.ravel().tolist())).encode())
        else:
            digest.update(arr.tobytes())
    return digest.hexdigest()
