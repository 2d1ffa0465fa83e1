"""Writing a bundle folder: the golden file, every file pinned by sha256 in the manifest, the model card, and
publishing the verified folder in place of an older bundle. The exporter's last stages and the test helpers write
bundles only through these."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from medinfer.integrity import outputs_digest, sha256_bytes
from medinfer.manifest import MANIFEST_NAME, FileEntry, Golden, Manifest, dump_manifest, parse_manifest
from medinfer.samples import npz_bytes, pair_arrays
from medinfer.timestamps import build_time

from .card import render
from .requires import requirements

__all__ = ["golden_entry", "golden_npz", "publish", "write_bundle"]


def golden_npz(inputs: dict[str, Any], outputs: dict[str, np.ndarray],
               variants: Mapping[str, tuple[Mapping[str, Any], Mapping[str, Any]]] | None = None) -> tuple[bytes, str]:
    """The golden file entry: the default graph's inputs and expected outputs, and each variant's own
    (``{variant: (inputs, outputs)}``, inputs empty when it takes the default's), under medinfer.samples' keys."""
    arrays = pair_arrays(inputs, outputs)
    for variant, (own_in, own_out) in (variants or {}).items():
        arrays.update(pair_arrays(own_in, own_out, variant))
    return npz_bytes(arrays), "golden"


def golden_entry(outputs: dict[str, np.ndarray], atol: float, rtol: float = 0.0) -> Golden:
    return Golden(file="golden.npz", output_digest=outputs_digest(outputs, tuple(outputs)), atol=atol, rtol=rtol,
                  outputs=tuple(outputs))


def write_bundle(folder: Path, fields: dict[str, Any], files: dict[str, tuple[bytes, str]]) -> Manifest:
    """Write ``files`` ({name: (bytes, role)}), the rendered model card and manifest.json into ``folder``.

    ``fields`` holds every manifest field except ``schema_version``, ``created`` and ``files``, which are
    filled in here (files pinned by sha256 and size), and ``requires``, derived from the graphs unless given.
    The manifest is validated by the runtime's schema.
    """
    from medinfer.schema import to_json

    folder = Path(folder)
    files = dict(files)
    if "requires" not in fields:
        fields = {**fields, "requires": requirements(b for n, (b, role) in files.items() if role in ("model", "variant")
                                                     or (role == "explain" and n.endswith(".onnx")))}

    def build() -> Manifest:
        pinned = {n: FileEntry(sha256=sha256_bytes(b), size=len(b), role=r) for n, (b, r) in files.items()}
        data = {**fields, "schema_version": 1, "files": pinned, "created": fields.get("created") or build_time()}
        return parse_manifest(to_json(data))

    files["model_card.md"] = (render(build()).encode("utf-8"), "card")
    for name, (data, _) in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    manifest = build()
    (folder / MANIFEST_NAME).write_bytes(dump_manifest(manifest))
    return manifest


def publish(staging: Path, dest: Path) -> Path:
    """Move the verified staging folder into place, replacing an older bundle only after success."""
    old = None
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old")
        if old.exists():
            shutil.rmtree(old)
        dest.rename(old)
    staging.chmod(0o755)
    staging.rename(dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return dest
