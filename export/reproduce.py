"""``medinfer build NAME --check-reproducible``: build twice in fresh processes and compare every file.

Each build is a separate ``medinfer build`` process with its own artifact and bundle folders and its own
string-hash seed (so a converter that depends on set order shows up). Every file of the two bundles is compared
by sha256; ``manifest.json`` must be identical except for the fields a rebuild may change without changing what
the graph computes: ``created`` (the build time) and the session profile measured on the build machine
(``profile``, and ``parity.profiles``, the gate run under it). For a differing graph the first differing part
is named (graph name, opset, node, initializer); for a differing ``.npz`` the differing arrays.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medinfer.integrity import sha256_file
from medinfer.manifest import MANIFEST_NAME, SIGNATURE_NAME

#: Manifest fields (dotted prefixes) a rebuild may change: not covered by the graph's contract digest.
ALLOWED = ("created", "profile", "parity.profiles", "reproducibility")


@dataclass
class Comparison:
    """What two builds' bundles share and where they differ."""

    identical: list[str] = field(default_factory=list)
    differ: dict[str, str] = field(default_factory=dict)  # file -> what differs in it
    allowed: list[str] = field(default_factory=list)  # manifest fields that differed, as allowed

    @property
    def ok(self) -> bool:
        return not self.differ


def digests(folder: Path) -> dict[str, str]:
    """sha256 of every regular file under ``folder``, by path relative to it (the signature excluded)."""
    out = {}
    for path in sorted(Path(folder).rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and rel != SIGNATURE_NAME:
            out[rel] = sha256_file(path)
    return out


def json_differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Dotted paths where two JSON documents differ (lists compared whole, objects key by key)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b)):
            sub = f"{path}.{key}" if path else str(key)
            out += [sub] if (key in a) != (key in b) else json_differences(a[key], b[key], sub)
        return out
    return [] if a == b else [path or "(document)"]


def _allowed(path: str) -> bool:
    return any(path == p or path.startswith(p + ".") for p in ALLOWED)


def allowed_summary(paths: Sequence[str]) -> list[str]:
    """The allowed manifest fields that differed, one entry per :data:`ALLOWED` prefix; the profile's says whether
    the chosen settings differ or only the measurements behind them."""
    out = []
    for prefix in ALLOWED:
        hits = [p for p in paths if p == prefix or p.startswith(prefix + ".")]
        if not hits:
            continue
        if prefix == "profile":
            settings = [p for p in hits if not p.startswith(("profile.evidence", "profile.measured"))]
            prefix += (" (measured on the build machine: the chosen settings differ)" if settings
                       else " (the measurements only; the same settings were chosen)")
        out.append(prefix)
    return out


def graph_difference(a: bytes, b: bytes) -> str:
    """The first part of two ONNX graphs that differs, in words (cheap: a walk over the protos)."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    ma, mb = onnx.load_from_string(a), onnx.load_from_string(b)
    for name in ("ir_version", "producer_name", "producer_version", "doc_string", "opset_import", "metadata_props"):
        if getattr(ma, name) != getattr(mb, name):
            return f"model field '{name}' differs"
    ga, gb = ma.graph, mb.graph
    if ga.name != gb.name:
        return f"graph name {ga.name!r} vs {gb.name!r}"
    for name in ("input", "output"):
        if getattr(ga, name) != getattr(gb, name):
            return f"graph {name}s differ"
    for i, (x, y) in enumerate(zip(ga.node, gb.node)):
        if x != y:
            return f"node {i}: {x.name!r} ({x.op_type}) vs {y.name!r} ({y.op_type})"
    if len(ga.node) != len(gb.node):
        return f"{len(ga.node)} vs {len(gb.node)} nodes"
    ia, ib = {t.name: t for t in ga.initializer}, {t.name: t for t in gb.initializer}
    only = sorted(set(ia) ^ set(ib))
    if only:
        return f"initializer {only[0]!r} is in one graph only ({len(only)} such)"
    for name in ia:
        if ia[name] != ib[name]:
            va, vb = numpy_helper.to_array(ia[name]), numpy_helper.to_array(ib[name])
            if va.shape == vb.shape and va.dtype.kind in "fc":
                return (f"initializer {name!r}: values differ (max abs diff "
                        f"{float(np.max(np.abs(va.astype(np.float64) - vb.astype(np.float64)))):.3g})")
            return f"initializer {name!r} differs"
    return "the initializers' order or another field of the graph differs"


def npz_difference(a: bytes, b: bytes) -> str:
    import io

    import numpy as np

    with np.load(io.BytesIO(a), allow_pickle=False) as x, np.load(io.BytesIO(b), allow_pickle=False) as y:
        keys = sorted(set(x.files) | set(y.files))
        bad = [k for k in keys if k not in x.files or k not in y.files or not np.array_equal(x[k], y[k])]
    return f"arrays differ: {', '.join(bad)}" if bad else "same arrays, different bytes (storage order or metadata)"


def compare_bundles(a: Path, b: Path) -> Comparison:
    """Compare two builds of one bundle file by file (see the module docstring for the manifest rule)."""
    da, db = digests(a), digests(b)
    result = Comparison()
    for rel in sorted(set(da) | set(db)):
        if rel not in da or rel not in db:
            result.differ[rel] = f"only in build {1 if rel in da else 2}"
        elif rel == MANIFEST_NAME:
            paths = json_differences(json.loads((a / rel).read_text()), json.loads((b / rel).read_text()))
            result.allowed = allowed_summary([p for p in paths if _allowed(p)])
            bad = [p for p in paths if not _allowed(p)]
            if bad:
                result.differ[rel] = f"fields differ: {', '.join(bad[:8])}" + (" ..." if len(bad) > 8 else "")
            elif da[rel] == db[rel]:
                result.identical.append(rel)
        elif da[rel] == db[rel]:
            result.identical.append(rel)
        elif rel.endswith(".onnx"):
            result.differ[rel] = graph_difference((a / rel).read_bytes(), (b / rel).read_bytes())
        elif rel.endswith(".npz"):
            result.differ[rel] = npz_difference((a / rel).read_bytes(), (b / rel).read_bytes())
        else:
            result.differ[rel] = text_difference((a / rel).read_bytes(), (b / rel).read_bytes())
    return result


def text_difference(a: bytes, b: bytes) -> str:
    """The first differing line of two text files (``bytes differ`` for binary files)."""
    try:
        la, lb = a.decode("utf-8").splitlines(), b.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        return "bytes differ"
    for i, (x, y) in enumerate(zip(la, lb)):
        if x != y:
            at = next((k for k, (p, q) in enumerate(zip(x, y)) if p != q), min(len(x), len(y)))
            return f"line {i + 1}: {x[max(0, at - 40):at + 60]!r} vs {y[max(0, at - 40):at + 60]!r}"
    return f"{len(la)} vs {len(lb)} lines"


Build = Callable[[int, Path, Path], None]


def build_command(name: str, artifacts: Path, out: Path, *, sample: int | None, seed: int,
                  options: Sequence[str]) -> list[str]:
    """The ``medinfer build`` command line of one build."""
    cmd = [sys.executable, "-m", "medinfer", "build", name, "--artifacts", str(artifacts), "--out", str(out),
           "--seed", str(seed)]
    cmd += ["--sample", str(sample)] if sample is not None else []
    for pair in options:
        cmd += ["--set", pair]
    return cmd


def fresh_process_builder(name: str, *, sample: int | None, seed: int, options: Sequence[str]) -> Build:
    """A :data:`Build` that runs ``medinfer build`` in a fresh process, build ``i`` with string-hash seed ``i + 1``.

    Raises:
        NotReproducible: never; a failing build raises ``subprocess.CalledProcessError`` (its exit code kept).
    """
    import os

    def build(index: int, artifacts: Path, out: Path) -> None:
        env = {**os.environ, "PYTHONHASHSEED": str(index + 1)}
        subprocess.run(build_command(name, artifacts, out, sample=sample, seed=seed, options=options), env=env,
                       check=True)

    return build


def check_reproducible(name: str, workdir: Path, build: Build, *, progress: Callable[[str], None] = print,
                       builds: int = 2) -> tuple[Comparison, list[Path]]:
    """Run ``build`` ``builds`` times into ``workdir/build<i>/{artifacts,bundles}`` and compare build 1 with each
    other; returns (the comparison, the bundle folders)."""
    bundles = []
    for i in range(builds):
        progress(f"[{name}] reproducibility: build {i + 1} of {builds} in a fresh process")
        root = Path(workdir) / f"build{i + 1}"
        build(i, root / "artifacts", root / "bundles")
        bundles.append(root / "bundles" / name)
    result = Comparison()
    for other in bundles[1:]:
        one = compare_bundles(bundles[0], other)
        result.identical = one.identical if not result.identical else [f for f in result.identical
                                                                       if f in one.identical]
        result.differ.update(one.differ)
        result.allowed = sorted(set(result.allowed) | set(one.allowed))
    return result, bundles


def record(bundle: Path, result: Comparison, command: str, builds: int = 2) -> None:
    """Write what the check compared, and on which machine and versions, into ``bundle``'s manifest
    (``reproducibility``); the files it pins are unchanged, so the bundle verifies as before."""
    import dataclasses
    import platform

    import numpy as np
    import onnx
    import onnxruntime
    from medinfer.build_records import Reproducibility
    from medinfer.manifest import dump_manifest, load_manifest
    from medinfer.timestamps import build_time
    from medinfer.tools.fingerprint import cpu

    manifest = load_manifest(bundle)
    p = manifest.producer
    versions = {"medinfer": p.medinfer, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
                "numpy": np.__version__, "python": platform.python_version(), **p.frameworks, **p.converter}
    entry = Reproducibility(builds=builds, identical=tuple(result.identical), differed=tuple(result.allowed),
                            command=command, checked=build_time(),
                            cpu={k: cpu()[k] for k in ("model", "arch", "flags", "usable_cores")}, versions=versions)
    (Path(bundle) / MANIFEST_NAME).write_bytes(dump_manifest(dataclasses.replace(manifest, reproducibility=entry)))
