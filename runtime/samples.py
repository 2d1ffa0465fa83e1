"""Known inputs and the outputs they must give, stored in a bundle as ``.npz``: the golden file (readiness
self-test) and the parity sample (a seeded sample of the export gate's held-out set, for comparing an accelerator
with the CPU). Keys: ``in.<input>``, ``out.<output>`` (the fp32 graph on the CPU), ``out@<variant>.<output>`` (a
variant's own graph), optionally ``index`` (the rows' positions in the held-out set)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .errors import BundleError, IntegrityError
from .files import read_regular_file
from .integrity import sha256_bytes
from .manifest import FileEntry

Pair = tuple[dict[str, np.ndarray], dict[str, np.ndarray]]


def read_pairs(data: bytes, variant: str, what: str, input_names: Sequence[str], kind: str = "golden") -> Pair:
    """``(inputs, expected outputs)`` from the bytes of a samples ``.npz``: the variant's own inputs and outputs
    (``in@<variant>.`` / ``out@<variant>.``) when the file holds them, else the fp32 graph's.

    Raises:
        BundleError: not a readable npz (no pickles are ever loaded), or an input or the outputs are missing.
    """
    own, own_in = f"out@{variant}.", f"in@{variant}."
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            start = own_in if any(k.startswith(own_in) for k in npz.files) else "in."
            inputs = {k[len(start):]: npz[k] for k in npz.files if k.startswith(start)}
            prefix = own if any(k.startswith(own) for k in npz.files) else "out."
            outputs = {k[len(prefix):]: npz[k] for k in npz.files if k.startswith(prefix)}
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise BundleError(f"{what} is not a readable {kind} file ({type(exc).__name__}: {exc}); "
                          "re-export the bundle") from None
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
