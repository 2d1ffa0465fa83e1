"""Small helpers shared by the command lines: bundle lookup by name, provider lists, plain text tables."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UnknownNameError
from ..tools.tables import table

__all__ = ["bundle_path", "providers_arg", "table"]


def bundle_path(arg: str) -> Path:
    """A bundle folder given as a path, or as a name under $MEDINFER_BUNDLES (default ./bundles).

    Raises:
        UnknownNameError: neither a path nor a bundle name (the closest names are suggested).
    """
    path = Path(arg)
    if path.exists():
        return path
    root = Path(os.environ.get("MEDINFER_BUNDLES", "bundles"))
    if (root / arg).is_dir():
        return root / arg
    known = sorted(p.name for p in root.iterdir() if (p / "manifest.json").is_file()) if root.is_dir() else []
    raise UnknownNameError("bundle", arg, known, f"; no such folder, and no bundle of that name in {root}/")


def providers_arg(value: str | None) -> list[str] | None:
    """``--provider cuda,cpu`` as a preference list (None: CPU only)."""
    return [p for p in value.split(",") if p] if value else None
