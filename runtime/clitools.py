"""Small helpers shared by the command lines: bundle lookup by name, plain text tables, exit codes."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import MedinferError

EXIT_CODES = {
    "integrity": 3, "signature": 3, "manifest": 4, "input": 5, "input_type": 5, "provider": 6, "self_test": 7,
    "parity": 8, "missing_extra": 9, "runtime": 10, "timeout": 10,
}


def bundle_path(arg: str) -> Path:
    """A bundle folder given as a path, or as a name under $MEDINFER_BUNDLES (default ./bundles)."""
    path = Path(arg)
    if path.exists():
        return path
    root = Path(os.environ.get("MEDINFER_BUNDLES", "bundles"))
    if (root / arg).is_dir():
        return root / arg
    known = sorted(p.name for p in root.iterdir() if (p / "manifest.json").is_file()) if root.is_dir() else []
    hint = f"; bundles in {root}/: {', '.join(known)}" if known else f" (no bundles found in {root}/)"
    raise MedinferError(f"no bundle at '{arg}'{hint}")


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """A plain aligned text table (the runtime has no rich)."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
