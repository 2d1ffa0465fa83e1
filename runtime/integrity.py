"""Integrity of a bundle: every file pinned by sha256 in the manifest, checked before any session exists."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .errors import IntegrityError
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


def verify_files(bundle: Path, manifest: Manifest, keep: tuple[str, ...] = ()) -> dict[str, bytes]:
    """Check size and sha256 of every pinned file and refuse unpinned ones.

    Files named in ``keep`` are returned as bytes so the caller uses exactly the bytes that were hashed (no
    window between the check and the use).

    Raises:
        IntegrityError: naming the first file that is missing, altered or not pinned by the manifest.
    """
    bundle = Path(bundle)
    kept: dict[str, bytes] = {}
    for name, entry in manifest.files.items():
        path = bundle / name
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise IntegrityError(
                f"{bundle}: file '{name}' is pinned by the manifest but missing; restore the bundle from its source"
            ) from None
        if len(data) != entry.size:
            raise IntegrityError(
                f"{bundle}: file '{name}' has {len(data)} bytes, the manifest pins {entry.size}: "
                "the file was altered or truncated; restore the bundle from its source"
            )
        actual = sha256_bytes(data)
        if actual != entry.sha256:
            raise IntegrityError(
                f"{bundle}: file '{name}' has sha256 {actual[:16]}…, the manifest pins {entry.sha256[:16]}…: "
                "the file was altered; restore the bundle from its source"
            )
        if name in keep:
            kept[name] = data
    present = {
        str(p.relative_to(bundle)) for p in bundle.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    }
    extra = sorted(present - set(manifest.files) - _UNPINNED_ALLOWED)
    if extra:
        raise IntegrityError(
            f"{bundle}: file '{extra[0]}' is not pinned by the manifest"
            + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else "")
            + "; a bundle holds only the files its manifest pins: remove it or re-export the bundle"
        )
    return kept


def contract_digest(manifest_json: Mapping[str, Any]) -> str:
    """Digest of the parts of a manifest that define the model's behaviour (not files, not metrics).

    Stored in the ONNX ``metadata_props`` so a bare .onnx says which contract it belongs to; it cannot be the
    digest of the whole manifest because the manifest pins the .onnx file's own sha256.
    """
    keys = ("name", "version", "task", "inputs", "outputs", "labels", "decision")
    part = {k: manifest_json.get(k) for k in keys}
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
