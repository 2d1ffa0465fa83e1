"""Reading prediction inputs from files (.npy, .npz, .csv, .tsv, .json, .txt) for the CLI and batch tools.

Every reader is bounded and strict: a file is read only when it is a regular file within ``max_bytes``; a .npy
header is checked against the file's real size before any array is allocated (a header may lie about its shape);
a .npz is checked member by member before decompression (a small archive may expand to gigabytes); JSON is parsed
without silent conversions (``true`` or ``"1.5"`` is not a number) and with bounded nesting; CSV fields may be as
long as the file. Whatever is wrong comes back as an InputError naming the file and the fix.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, InputTypeError
from ..files import read_regular_file
from ..model import Model

SUFFIXES = (".npy", ".npz", ".csv", ".tsv", ".json", ".txt", ".smi")
MAX_INPUT_BYTES = 256 << 20  # one input file, and one array expanded from it


def read_input(path: str | Path, model: Model, *, max_bytes: int = MAX_INPUT_BYTES) -> Any:
    """Read ``path`` into something ``model.predict`` accepts.

    Files without a dtype of their own (CSV, JSON) are parsed straight into the model's input dtype; .npy/.npz
    keep theirs, so the runtime's safe-casting rule applies to them.

    Raises:
        InputError: unreadable, oversized or malformed file, unknown format, or columns that do not match the
            manifest.
    """
    path, data = read_input_bytes(path, max_bytes)
    suffix = path.suffix.lower()
    check = model.input_checks[0]
    try:
        if suffix == ".npy":
            return _npy(data, path.name, max_bytes)
        if suffix == ".npz":
            arrays = _npz(data, path.name, max_bytes)
            return arrays[check.name] if set(arrays) == {check.name} else arrays
        if suffix == ".smi":  # SMILES: the descriptors RDKit computes ([chem] extra; medinfer.tools.smiles)
            from .smiles import read_smi

            return read_smi(data, path, model)[1]
        if suffix == ".txt":
            if not check.is_string:
                raise InputTypeError(f"{model.name} takes numbers; a .txt file is read as one text document")
            return [data.decode("utf-8")]
        if suffix == ".json":
            return _from_json(_parse_json(data.decode("utf-8"), path), model, path)
        if suffix == ".csv":
            from .cgm import accepts_cgm, looks_like_cgm, window_for

            if accepts_cgm(model) is not None and looks_like_cgm(data):  # a CGM export (medinfer.tools.cgm)
                return window_for(model, data, path)[1]
        return _from_csv(data, path, model, "\t" if suffix == ".tsv" else ",", max_bytes)
    except InputError:
        raise
    except (OSError, ValueError, UnicodeDecodeError, EOFError, zipfile.BadZipFile, MemoryError) as exc:
        raise InputError(f"could not read {path}: {type(exc).__name__}: {exc}") from None


def read_input_bytes(path: str | Path, max_bytes: int = MAX_INPUT_BYTES) -> tuple[Path, bytes]:
    """``(path, its bytes)`` for an input file of a known type: ONE bounded read of a regular file (no link
    followed, no FIFO opened, no race between a size check and the read); every format is parsed from these bytes.

    Raises:
        InputError: an unknown file type, or a file that is missing, not regular or larger than ``max_bytes``.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise InputError(f"unsupported input file type '{suffix}' for {path}; use one of {', '.join(SUFFIXES)}")
    data = read_regular_file(path, max_bytes, f"input file {path}", InputError,
                             fix="give the path of a regular file (split an input that is larger)")
    return path, data


# -- numpy files ------------------------------------------------------------------------------------------------
def _npy(data: bytes, name: str, max_bytes: int) -> np.ndarray:
    """A .npy file whose header matches its bytes exactly (no pickles, no lying shapes)."""
    fh = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(fh)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"format version {version} is not read here (save with numpy.save)")
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = reader(fh)
    except ValueError as exc:
        raise InputError(f"{name} is not a .npy file ({exc})") from None
    if dtype.hasobject:
        raise InputTypeError(f"{name} holds Python objects; save plain numbers or fixed-width strings")
    count = 1
    for dim in shape:
        count *= int(dim)
    need = count * dtype.itemsize
    have = len(data) - fh.tell()
    if need > max_bytes:
        raise InputError(f"{name} declares shape {shape} ({need} bytes); at most {max_bytes} bytes are read")
    if need != have:
        raise InputError(f"{name} declares shape {shape} of {dtype} ({need} bytes) but holds {have} bytes of data: "
                         "the file is truncated or its header is wrong")
    if count == 0:
        raise InputError(f"{name} holds an empty array of shape {shape}; pass at least one sample")
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=fh.tell())
    return (flat.reshape(shape, order="F") if fortran else flat.reshape(shape)).copy()


def _npz(data: bytes, name: str, max_bytes: int) -> dict[str, np.ndarray]:
    """The arrays of a .npz archive, each member's size checked before it is decompressed."""
    arrays: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        infos = zf.infolist()
        total = sum(i.file_size for i in infos)
        if total > max_bytes:
            raise InputError(f"{name} expands to {total} bytes; at most {max_bytes} are read (a compressed "
                             "archive that large is refused before it is unpacked)")
        if not infos:
            raise InputError(f"{name} holds no arrays")
        for info in infos:
            member_name = info.filename.removesuffix(".npy")
            with zf.open(info) as member:
                raw = member.read(max_bytes + 1)
            if len(raw) != info.file_size:
                raise InputError(f"{name}: member {info.filename} is not the size its directory declares")
            arrays[member_name] = _npy(raw, f"{name}:{info.filename}", max_bytes)
    return arrays


# -- JSON --------------------------------------------------------------------------------------------------------
MAX_JSON_DEPTH = 64


def _parse_json(text: str, path: Path) -> Any:
    depth = 0
    deepest = 0
    in_string = escaped = False
    for ch in text:  # bound the nesting before json recurses (a 100 000-deep list would crash it)
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_JSON_DEPTH:
                raise InputError(f"{path.name} nests JSON deeper than {MAX_JSON_DEPTH} levels; an input is a list of "
                                 "rows (or an object of named columns)")
        elif ch in "]}":
            depth -= 1
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path.name} is not valid JSON: {exc}") from None


def _refuse_constant(name: str) -> Any:
    raise InputError(f"JSON input holds {name}, which is not a number; measurements must be finite numbers")


def _numbers(values: Any, where: str) -> Any:
    """Nested lists of JSON numbers, checked leaf by leaf: booleans, strings and nulls are refused."""
    if isinstance(values, list):
        return [_numbers(v, where) for v in values]
    if isinstance(values, bool) or not isinstance(values, (int, float)):
        kind = {bool: "a boolean", str: "a string", type(None): "null"}.get(type(values), type(values).__name__)
        raise InputTypeError(f"{where} holds {kind} ({values!r}) where a number belongs; JSON input is read "
                             "without conversions")
    return values


def _typed(values: Any, model: Model, name: str | None = None, where: str = "input") -> Any:
    check = model.input_checks[0]
    if name is not None:
        check = next((c for c in model.input_checks if c.name == name), check)
    if check.is_string:
        return values
    try:
        arr = np.asarray(_numbers(values, where), dtype=np.float64 if check.is_float else None)
    except OverflowError as exc:
        raise InputError(f"{where} holds a number too large for {check.dtype} ({exc})") from None
    except ValueError as exc:
        raise InputTypeError(f"{where} for {model.name} must be a rectangular array of numbers: {exc}") from None
    return arr.astype(check.dtype) if check.is_float else arr


def _from_json(data: Any, model: Model, path: Path) -> Any:
    if isinstance(data, list):
        return _typed(data, model, where=path.name)
    if isinstance(data, dict):
        names = model.input_names
        if set(data) <= set(names):
            out = {k: _typed(v, model, k, f"{path.name}:{k}") for k, v in data.items()}
            return out if len(names) > 1 else out[names[0]]
        return {k: _typed(v, model, where=f"{path.name}:{k}") for k, v in data.items()}  # named feature columns
    raise InputError(f"JSON input for {model.name} must be a list (rows) or an object (named inputs/columns)")


# -- CSV ---------------------------------------------------------------------------------------------------------
def _from_csv(data: bytes, path: Path, model: Model, delimiter: str, max_bytes: int) -> Any:
    from .tabular import read_csv_input  # delimiter and decimal-comma detection, row ids, cell errors

    return read_csv_input(data, path, model, delimiter, max_bytes)[1]
