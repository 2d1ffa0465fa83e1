"""The ``medinfer`` command line: ``medinfer.cli.main`` is the console entry point."""

from __future__ import annotations

from .main import build_parser, main

__all__ = ["build_parser", "main"]
