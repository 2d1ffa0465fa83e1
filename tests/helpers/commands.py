"""Checking shell command lines against the ``medinfer`` CLI without running them (README lines, --help examples)."""

from __future__ import annotations

import contextlib
import io
import shlex

SEPARATORS = {"|", "||", "&&", ";", "&"}


def commands(line: str) -> list[list[str]]:
    """The simple commands of one shell line (split at | && || ;), comments dropped, quotes removed."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    parts: list[list[str]] = [[]]
    for token in lexer:
        if token in SEPARATORS:
            parts.append([])
        else:
            parts[-1].append(token)
    return [p for p in parts if p]


def check_medinfer(args: list[str]) -> str | None:
    """None when ``medinfer ARGS`` parses and names a command (or asks for --help); else argparse's complaint.

    The train commands are checked against the [train] half's parser (importable without the extra)."""
    from medinfer.cli.main import TRAIN_COMMANDS, build_parser
    from medinfer.export.cli import build_parser as train_parser

    parser = train_parser() if args and args[0] in TRAIN_COMMANDS else build_parser()
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            parsed = parser.parse_args(args)
    except SystemExit as exc:
        return None if exc.code == 0 else err.getvalue().strip().splitlines()[-1]
    return None if getattr(parsed, "func", None) else "names no command"
