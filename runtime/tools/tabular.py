"""CSV/TSV prediction inputs: delimiter and decimal-comma detection, a row-id column, and cell errors that name
their line and column.

A ``.csv`` file is read with the delimiter its first line uses: a first line that is one field with commas but
several with ``;``, a tab or ``|`` is read with that one (the European spreadsheet export, ``;`` with decimal
commas, included). In a file not separated by commas, numbers may use decimal commas (``0,5``): then every number
must (a cell with a point is ambiguous there: ``1.234`` may be a thousands separator) and is refused with its line
and column. A row-id column (``--id-column NAME``, or a leading ``id``/``index``/``cell``/``sample``/unnamed
column when the rest match the model's feature names) is kept aside and returned with the rows. Every problem is
an InputError naming the file, the line (as an editor counts it) and the column (number and header name).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..errors import InputError, UsageError
from ..model import Model

CANDIDATES = (";", "\t", "|")  # tried when a .csv's first line is one comma-field
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "vertical bar"}
ID_NAMES = ("", "id", "index", "cell", "sample")
_DECIMAL_COMMA = re.compile(r"\s*[+-]?(\d+,\d*|,\d+)([eE][+-]?\d+)?\s*")
_SHOWN = 40  # longest cell or name quoted in a message
T = TypeVar("T")


@dataclass
class Table:
    """The non-blank rows of a delimited file, each with its line number in the file."""

    path: Path
    rows: list[list[str]]
    lines: list[int]
    delimiter: str

    @property
    def delimiter_name(self) -> str:
        return DELIMITER_NAMES.get(self.delimiter, repr(self.delimiter))


def shown(text: str) -> str:
    """``text`` quoted for a message, cut to a readable length."""
    return repr(text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…")


def detect_delimiter(first_line: str, default: str) -> str:
    """The delimiter of a file whose first line is ``first_line``: ``default`` unless the line is a single field
    with it but several with one of :data:`CANDIDATES`."""
    if default != "," or len(_fields(first_line, ",")) > 1:
        return default
    for candidate in CANDIDATES:
        if len(_fields(first_line, candidate)) > 1:
            return candidate
    return default


def _fields(line: str, delimiter: str) -> list[str]:
    return next(csv.reader([line], delimiter=delimiter), [])


def read_table(data: bytes, path: Path, delimiter: str, max_bytes: int, *, detect: bool = True) -> Table:
    """The rows of ``data``, the bytes of the file ``path`` (UTF-8; read bounded by the caller), with the delimiter
    detected for a ``.csv`` when ``detect``.

    Raises:
        InputError: the file holds no rows, or is not UTF-8 text.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8") from None
    if detect:
        delimiter = detect_delimiter(text.split("\n", 1)[0].rstrip("\r"), delimiter)
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, max_bytes))  # a long report in one cell is a valid text input
    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        rows, lines = [], []
        for row in reader:
            if row:
                rows.append(row)
                lines.append(reader.line_num)
    finally:
        csv.field_size_limit(limit)
    if not rows:
        raise InputError(f"{path} holds no rows")
    return Table(path, rows, lines, delimiter)


def _is_number(cell: str, decimal_comma: bool) -> bool:
    try:
        float(cell.replace(",", ".") if decimal_comma else cell)
    except ValueError:
        return False
    return True


def id_position(table: Table, header: list[str] | None, id_column: str | None,
                names: Sequence[str] | None) -> int | None:
    """The index of the row-id column: the one named ``id_column``, else a leading id-like column when the other
    columns are exactly as many as the model's ``names``; None when there is none.

    Raises:
        InputError: ``id_column`` is given but the file has no header, or no column of that name.
    """
    if id_column is not None:
        if header is None:
            raise InputError(f"{table.path} has no header line, so it has no column {shown(id_column)} "
                             "(--id-column names a column of the header)")
        if id_column not in header:
            few = ", ".join(shown(h) for h in header[:5]) + (f", … {len(header) - 5} more" if len(header) > 5 else "")
            raise InputError(f"{table.path} has no column {shown(id_column)} for the row ids (the header, read as "
                             f"{table.delimiter_name}-separated, has {len(header)} columns: {few})")
        return header.index(id_column)
    if header and header[0].strip().lower() in ID_NAMES and names is not None and len(header) == len(names) + 1:
        return 0
    return None


def _without(row: list[T], at: int | None) -> list[T]:
    return row if at is None else row[:at] + row[at + 1:]


def check_widths(table: Table, header: list[str] | None, body: list[list[str]], start: int) -> None:
    """Every data row as wide as the first (or the header): the first that is not is named with its line."""
    width = len(header) if header is not None else len(body[0])
    for k, row in enumerate(body):
        if len(row) != width:
            ref = "the header" if header is not None else f"line {table.lines[start]}"
            raise InputError(f"{table.path}: line {table.lines[start + k]} has {len(row)} columns but {ref} has "
                             f"{width} (read as {table.delimiter_name}-separated); every row needs every column")


def to_numbers(table: Table, body: list[list[str]], header: list[str] | None, start: int,
               columns: Sequence[int] | None = None) -> np.ndarray:
    """The cells of ``body`` as a float64 (rows, columns) array; decimal commas where the file uses them.

    Args:
        start: index in ``table.rows`` of the first body row (for line numbers).
        columns: the original column numbers of the body's columns (1-based, for messages; default 1..n).

    Raises:
        InputError: an empty cell, a cell that is not a number, or a point in a decimal-comma file, each with its
            line and column.
    """
    numbers = columns or list(range(1, (len(body[0]) if body else 0) + 1))
    comma = table.delimiter != "," and any(_DECIMAL_COMMA.fullmatch(c) for r in body for c in r)
    out = np.empty((len(body), len(body[0]) if body else 0), dtype=np.float64)
    for i, row in enumerate(body):
        for j, cell in enumerate(row):
            value = _cell(cell, comma)
            if isinstance(value, str):
                name = f" ({shown(header[j])})" if header is not None and j < len(header) else ""
                raise InputError(f"{table.path}: line {table.lines[start + i]}, column {numbers[j]}{name} {value}; "
                                 "every data cell must be a number")
            out[i, j] = value
    return out


def _cell(cell: str, comma: bool) -> float | str:
    """The number in ``cell``, or why there is none (a phrase for the message)."""
    if not cell.strip():
        return "is empty"
    if comma and "." in cell:
        return (f"holds {shown(cell)}: a point in a file with decimal commas (a thousands separator or a decimal "
                "point?); use one decimal mark throughout")
    try:
        value = float(cell.replace(",", ".") if comma else cell)
    except ValueError:
        return f"holds {shown(cell)}, not a number"
    return value if np.isfinite(value) else f"holds {shown(cell)}, not a finite number"


def read_csv_input(data: bytes, path: Path, model: Model, delimiter: str, max_bytes: int,
                   id_column: str | None = None) -> tuple[list[str] | None, Any]:
    """Read a CSV/TSV input for ``model``: (row ids or None, what ``model.predict`` accepts).

    Raises:
        InputError: see the module docstring; header names are checked against the manifest
            (:meth:`Model.check_header`).
    """
    table = read_table(data, path, delimiter, max_bytes, detect=path.suffix.lower() == ".csv")
    check = model.input_checks[0]
    if check.is_string:
        return _texts(table, id_column)
    first = table.rows[0]
    comma = table.delimiter != ","
    has_header = not all(_is_number(c, comma) for c in first) or id_column is not None
    header = [h.strip() for h in first] if has_header else None
    start = 1 if has_header else 0
    body = table.rows[start:]
    if not body:
        raise InputError(f"{path} has a header but no data rows")
    check_widths(table, header, body, start)
    at = id_position(table, header, id_column, check.spec.names)
    ids = None if at is None else [r[at] for r in body]
    header = None if header is None else _without(header, at)
    body = [_without(r, at) for r in body]
    columns = _without(list(range(1, len(table.rows[start]) + 1)), at)
    if header is not None and check.spec.names is not None:
        if len(header) == 1 < len(check.spec.names):
            raise InputError(f"{path}: the header is one column {shown(header[0])} when read as "
                             f"{table.delimiter_name}-separated, but {model.name} expects {len(check.spec.names)} "
                             "feature columns; separate columns with commas, ';', tabs or '|'")
        model.check_header(header, check.name)
    values = to_numbers(table, body, header, start, columns)
    return ids, values.astype(check.dtype) if check.is_float else values


def _texts(table: Table, id_column: str | None) -> tuple[list[str] | None, list[str]]:
    """The documents of a text model's CSV: the ``text`` column (or the first), one per row."""
    first = [h.strip().lower() for h in table.rows[0]]
    has_header = "text" in first or id_column is not None
    body = table.rows[1:] if has_header else table.rows
    header = [h.strip() for h in table.rows[0]] if has_header else None
    at = id_position(table, header, id_column, None)
    ids = None if at is None else [r[at] if at < len(r) else "" for r in body]
    header = None if header is None else _without(header, at)
    body = [_without(r, at) for r in body]
    col = [h.lower() for h in header].index("text") if header and "text" in (h.lower() for h in header) else 0
    start = 1 if has_header else 0
    for k, row in enumerate(body):
        if len(row) <= col:
            raise InputError(f"{table.path}: line {table.lines[start + k]} has {len(row)} column(s), but the text "
                             f"is in column {col + 1}: every row needs it")
    return ids, [r[col] for r in body]


def read_rows(path: str | Path, model: Model, id_column: str | None = None,
              max_bytes: int | None = None) -> tuple[list[str] | None, Any]:
    """An input file for ``model`` with its row ids: ``(ids or None, what model.predict accepts)``. Row ids come
    from a .csv/.tsv (``id_column``, or a leading id-like column); other formats have none.

    Raises:
        UsageError: ``id_column`` for a file that is not .csv/.tsv.
        InputError: as :func:`medinfer.tools.inputs.read_input`.
    """
    from .inputs import MAX_INPUT_BYTES, read_input, read_input_bytes

    limit = MAX_INPUT_BYTES if max_bytes is None else max_bytes
    suffix = Path(path).suffix.lower()
    if suffix == ".smi" and id_column is None:  # SMILES with their names as row ids (medinfer.tools.smiles)
        from .smiles import read_smi

        smi_path, smi_data = read_input_bytes(path, limit)
        names, rows = read_smi(smi_data, smi_path, model)
        return names, rows
    if suffix not in (".csv", ".tsv"):
        if id_column is not None:
            raise UsageError(f"--id-column names a column of a .csv or .tsv input; {path} is a {suffix or 'file'} "
                             "file, whose rows have no ids")
        return None, read_input(path, model, max_bytes=limit)
    path, data = read_input_bytes(path, limit)
    if suffix == ".csv" and id_column is None:
        from .cgm import accepts_cgm, looks_like_cgm, window_for

        if accepts_cgm(model) is not None and looks_like_cgm(data):  # a CGM export: the features computed here
            return window_for(model, data, path)
    return read_csv_input(data, path, model, "\t" if suffix == ".tsv" else ",", limit, id_column)
