"""Known inputs and the outputs they must give, stored in a bundle as ``.npz``: the golden file (readiness
self-test) and the parity sample (a seeded sample of the export gate's held-out set, for comparing an accelerator
with the CPU). THE key scheme (:func:`key`, written by :func:`pair_arrays` / :func:`npz_bytes`, read by
:func:`read_pairs`): ``in.<input>``, ``out.<output>`` (the fp32 graph on the CPU), ``in@<variant>.<input>`` /
``out@<variant>.<output>`` (a variant's own inputs and graph), optionally ``index`` (the rows' positions in the
held-out set)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BundleError, IntegrityError
from .files import read_regular_file
from .integrity import sha256_bytes
from .manifest import FileEntry

Pair = tuple[dict[str, np.ndarray], dict[str, np.ndarray]]
INPUT, OUTPUT = "in", "out"
INDEX = "index"  # the rows' positions in the held-out set (parity sample)
DEFAULT = "default"


def _prefix(kind: str, variant: str) -> str:
    if kind not in (INPUT, OUTPUT):
        raise ValueError(f"a samples key is an {INPUT!r} or {OUTPUT!r} key, got {kind!r}")
    return f"{kind}." if variant == DEFAULT else f"{kind}@{variant}."


def key(kind: str, name: str, variant: str = DEFAULT) -> str:
    """The npz key of input (``kind="in"``) or output (``"out"``) ``name`` of ``variant``'s graph."""
    return _prefix(kind, variant) + name


def pair_arrays(inputs: Mapping[str, Any], outputs: Mapping[str, Any], variant: str = DEFAULT) -> dict[str, Any]:
    """The npz entries of one graph's inputs and outputs (``variant``'s own keys unless it is the default)."""
    return {**{key(INPUT, k, variant): v for k, v in inputs.items()},
            **{key(OUTPUT, k, variant): v for k, v in outputs.items()}}


def npz_bytes(arrays: Mapping[str, Any]) -> bytes:
    """The bytes of a samples ``.npz`` (no pickles: text as fixed-width unicode, as narrow as its longest string,
    so the same strings give the same bytes whether they came as objects or from a wider array)."""
    buf = io.BytesIO()
    plain = {k: np.asarray(v) for k, v in arrays.items()}
    plain = {k: np.array(v.tolist(), dtype=str).reshape(v.shape) if v.dtype.kind in "OU" else v
             for k, v in plain.items()}
    np.savez(buf, **plain)  # type: ignore[arg-type]
    return buf.getvalue()


def select_pairs(arrays: Mapping[str, Any], variant: str = DEFAULT) -> Pair:
    """``(inputs, outputs)`` among the entries of a samples file already read: ``variant``'s own inputs and outputs
    (``in@<variant>.`` / ``out@<variant>.``) when it holds them, else the fp32 graph's (``in.`` / ``out.``)."""
    own_out, own_in = _prefix(OUTPUT, variant), _prefix(INPUT, variant)
    start = own_in if any(k.startswith(own_in) for k in arrays) else _prefix(INPUT, DEFAULT)
    prefix = own_out if any(k.startswith(own_out) for k in arrays) else _prefix(OUTPUT, DEFAULT)
    return ({k[len(start):]: v for k, v in arrays.items() if k.startswith(start)},
            {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)})
#: The most a samples file a bundle pins (golden, parity sample, explanation data) may expand to: its members are
#: checked against this before anything is decompressed (a small archive can expand to gigabytes).
MAX_NPZ_BYTES = 512 << 20


def load_npz(data: bytes, what: str, max_bytes: int | None = None, kind: str = "samples") -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` held in ``data``, decompressed within a bound: the declared size of every member
    is checked (in all at most ``max_bytes``, default :data:`MAX_NPZ_BYTES`) before any is decompressed, each is
    read to at most its declared size plus one byte, and no pickled object is ever loaded.

    Raises:
        BundleError: not a zip of ``.npy`` members, a member larger than declared, more than ``max_bytes`` in all,
            or a member that is not a plain array.
    """
    max_bytes = MAX_NPZ_BYTES if max_bytes is None else max_bytes
    arrays: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
            total = sum(i.file_size for i in infos)
            if total > max_bytes:
                raise BundleError(f"{what} expands to {total} bytes; at most {max_bytes} are read from a {kind} file "
                                  "(refused before it is unpacked): re-export the bundle")
            for info in infos:
                with zf.open(info) as member:
                    raw = member.read(info.file_size + 1)
                if len(raw) != info.file_size:
                    raise BundleError(f"{what}: member {info.filename} is not the size its directory declares")
                arrays[info.filename.removesuffix(".npy")] = np.lib.format.read_array(io.BytesIO(raw),
                                                                                       allow_pickle=False)
    except BundleError:
        raise
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, NotImplementedError, RuntimeError) as exc:
        raise BundleError(f"{what} is not a readable {kind} file ({type(exc).__name__}: {exc}); "
                          "re-export the bundle") from None
    return arrays


def read_pairs(data: bytes, variant: str, what: str, input_names: Sequence[str], kind: str = "golden") -> Pair:
    """``(inputs, expected outputs)`` from the bytes of a samples ``.npz``: the variant's own inputs and outputs
    (``in@<variant>.`` / ``out@<variant>.``) when the file holds them, else the fp32 graph's.

    Raises:
        BundleError: not a readable npz (no pickles are ever loaded; decompression bounded: :func:`load_npz`), or
            an input or the outputs are missing.
    """
    inputs, outputs = select_pairs(load_npz(data, what, kind=kind), variant)
    missing = [n for n in input_names if n not in inputs]
    if missing or not outputs:
        raise BundleError(f"{what} lacks {kind} inputs {missing} or outputs (holds {sorted(inputs)} / "
                          f"{sorted(outputs)}); re-export the bundle")
    return inputs, outputs


def read_pinned(bundle: Path, name: str, entry: FileEntry) -> bytes:
    """The bytes of the bundle file ``name``, checked again against its pinned size and sha256 (a file read after
    ``load()`` may have been swapped since).

    Raises:
        IntegrityError: missing, not a regular file, or not the pinned bytes.
    """
    what = f"{bundle}: file '{name}'"
    data = read_regular_file(Path(bundle) / name, entry.size, what)
    if len(data) != entry.size or sha256_bytes(data) != entry.sha256:
        raise IntegrityError(f"{what} no longer matches the sha256 its manifest pins: the file was altered after "
                             "the bundle was loaded; restore the bundle from its source")
    return data
