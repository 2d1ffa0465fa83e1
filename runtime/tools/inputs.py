"""Reading prediction inputs from files (.npy, .npz, .csv, .tsv, .json, .txt) for the CLI and batch tools."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, InputTypeError
from ..model import Model

SUFFIXES = (".npy", ".npz", ".csv", ".tsv", ".json", ".txt")


def read_input(path: str | Path, model: Model) -> Any:
    """Read ``path`` into something ``model.predict`` accepts.

    Files without a dtype of their own (CSV, JSON) are parsed straight into the model's input dtype; .npy/.npz
    keep theirs, so the runtime's safe-casting rule applies to them.

    Raises:
        InputError: unreadable file, unknown format, or columns that do not match the manifest.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"input file {path} does not exist")
    suffix = path.suffix.lower()
    check = model.input_checks[0]
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
            return arrays[check.name] if set(arrays) == {check.name} else arrays
        if suffix == ".txt":
            if not check.is_string:
                raise InputTypeError(f"{model.name} takes numbers; a .txt file is read as one text document")
            return [path.read_bytes().decode("utf-8")]
        if suffix == ".json":
            return _from_json(json.loads(path.read_text(encoding="utf-8")), model)
        if suffix in (".csv", ".tsv"):
            return _from_csv(path, model, "\t" if suffix == ".tsv" else ",")
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"could not read {path}: {exc}") from None
    raise InputError(f"unsupported input file type '{suffix}' for {path}; use one of {', '.join(SUFFIXES)}")


def _typed(values: Any, model: Model, name: str | None = None) -> Any:
    check = model.input_checks[0]
    if name is not None:
        check = next((c for c in model.input_checks if c.name == name), check)
    if check.is_string:
        return values
    try:
        return np.asarray(values, dtype=np.float64).astype(check.dtype) if check.is_float else np.asarray(values)
    except (TypeError, ValueError) as exc:
        raise InputTypeError(f"input for {model.name} must hold numbers: {exc}") from None


def _from_json(data: Any, model: Model) -> Any:
    if isinstance(data, list):
        return _typed(data, model)
    if isinstance(data, dict):
        names = model.input_names
        if set(data) <= set(names):
            out = {k: _typed(v, model, k) for k, v in data.items()}
            return out if len(names) > 1 else out[names[0]]
        return {k: _typed(v, model) for k, v in data.items()}  # named feature columns
    raise InputError(f"JSON input for {model.name} must be a list (rows) or an object (named inputs/columns)")


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _from_csv(path: Path, model: Model, delimiter: str) -> Any:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.reader(fh, delimiter=delimiter) if r]
    if not rows:
        raise InputError(f"{path} holds no rows")
    check = model.input_checks[0]
    if check.is_string:
        first = [h.strip().lower() for h in rows[0]]
        col = first.index("text") if "text" in first else 0
        body = rows[1:] if "text" in first else rows
        return [r[col] for r in body]
    has_header = not all(_is_number(c) for c in rows[0])
    body = rows[1:] if has_header else rows
    if not body:
        raise InputError(f"{path} has a header but no data rows")
    widths = {len(r) for r in body}
    if len(widths) != 1:
        raise InputError(f"{path}: rows have different numbers of columns {sorted(widths)}")
    header: list[str] | None = [h.strip() for h in rows[0]] if has_header else None
    if header and header[0].lower() in ("", "id", "index", "cell", "sample") and len(header) == len(body[0]):
        if check.spec.names is not None and len(header) == len(check.spec.names) + 1:
            header, body = header[1:], [r[1:] for r in body]  # a leading row-id column
    if header is not None and check.spec.names is not None:
        model.check_header(header, check.name)
    try:
        return _typed([[float(c) for c in r] for r in body], model)
    except ValueError as exc:
        raise InputError(f"{path}: every data cell must be a number ({exc})") from None
