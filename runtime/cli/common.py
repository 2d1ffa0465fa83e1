"""Small helpers shared by the command lines: bundle lookup by name, provider lists, plain text tables, and the
help texts (examples and the exit-code table in every subcommand's ``--help``)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..errors import EXIT_MEANINGS, UnknownNameError
from ..tools.tables import table

__all__ = ["HELP_FORMAT", "bundle_path", "examples", "exit_codes_text", "provider_fallback", "providers_arg",
           "table"]

#: The formatter of every ``medinfer`` parser: epilogs keep their line breaks (examples, exit codes).
HELP_FORMAT = argparse.RawDescriptionHelpFormatter


def exit_codes_text() -> str:
    """The exit-code table for ``--help`` (from :data:`medinfer.errors.EXIT_MEANINGS`)."""
    return "exit codes:\n" + "\n".join(f"  {code:>3}  {text}" for code, text in sorted(EXIT_MEANINGS.items()))


def examples(*lines: str) -> str:
    """An epilog for a subcommand's ``--help``: its examples, then the exit-code table.

    Args:
        lines: example command lines, each optionally followed by ``  # what it does`` (shown above the
            command, so each command stays one copyable line); a test parses every one against the parser it
            documents, so examples cannot drift from the options.

    Returns:
        The epilog text (use it with ``formatter_class=HELP_FORMAT`` so its line breaks stay).
    """
    shown = []
    for line in lines:
        command, _, comment = line.partition("  #")
        shown += ([f"  # {comment.strip()}"] if comment.strip() else []) + [f"  {command.strip()}"]
    return "examples:\n" + "\n".join(shown) + "\n\n" + exit_codes_text()


def provider_fallback(requested: list[str] | None, actual: tuple[str, ...] | list[str]) -> str | None:
    """A warning when the first provider asked for is not the one the session runs on (None when it is).

    ``--provider cuda,cpu`` on a machine without CUDA runs on the CPU: that is allowed (the list says so), but it
    must be said, since a device that expected its accelerator is then slower than validated.
    """
    from ..providers import available_providers, canonical

    if not requested or not actual:
        return None
    first = canonical(requested[0])
    if first == actual[0]:
        return None
    why = ("this onnxruntime build does not offer it" if first not in available_providers()
           else "onnxruntime could not create it here (driver or libraries missing?)")
    return (f"first choice {first} is not available ({why}); running on {actual[0]} instead. "
            "'medinfer info --providers' says why")


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
