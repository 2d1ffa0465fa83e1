"""The ``medinfer`` command line (also ``python -m medinfer``): the parser and the one exit path.

Device commands (numpy + onnxruntime only) live in :mod:`medinfer.cli.device`, fleet commands (serve,
export-triton, score) in :mod:`medinfer.cli.fleet`; with the [train] extra, ``specs``, ``train``, ``export``,
``build``, ``data`` and ``bundle`` are handed to :mod:`medinfer.export.cli`. Every error leaves through
:func:`main`, which prints one line and exits with the code of :data:`medinfer.errors.EXIT_CODES`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from .._version import __version__
from ..errors import MedinferError, exit_code
from ..extras import missing_extra

TRAIN_COMMANDS = ("specs", "train", "export", "build", "data", "bundle")


def _train_main(argv: Sequence[str]) -> int:
    try:  # a literal import, so that the import contracts see (and allow) this one edge into export
        from medinfer.export.cli import main as train_main
    except ImportError as exc:
        raise missing_extra("train", f"medinfer {argv[0]}", getattr(exc, "name", None)) from None
    return train_main(list(argv))


def build_parser() -> argparse.ArgumentParser:
    """The whole ``medinfer`` parser (device and fleet commands; train commands as placeholders)."""
    from .common import examples

    parser = argparse.ArgumentParser(
        prog="medinfer",
        description="Verify and run medical-model ONNX bundles. With the [train] extra also: "
        + ", ".join(TRAIN_COMMANDS) + " (see 'medinfer train --help').",
        epilog=examples(
            "medinfer verify bundles/drug_activity_rf  # sha256 of every file + golden self-test",
            "medinfer predict bundles/drug_activity_rf rows.csv  # scores and labels as a table (--json for machines)",
            "medinfer info bundles/drug_activity_rf  # contract, held-out metrics with CIs, files, provenance",
            "medinfer predict --help  # every command has --help with its options and examples"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"medinfer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND",
                                help="run 'medinfer COMMAND --help' for its options, examples and exit codes")
    from .device_args import add_parsers as device_parsers
    from .fleet import add_parsers as fleet_parsers
    from .lifecycle import add_parsers as lifecycle_parsers

    device_parsers(sub)  # info, list, verify, predict, bench, keygen, sign, audit
    fleet_parsers(sub)  # serve, export-triton, score
    lifecycle_parsers(sub)  # install, slots, diff, update, repo, sbom
    for name in TRAIN_COMMANDS:
        sub.add_parser(name, help=f"[train extra] {name} (see 'medinfer {name} --help')", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit status (never raises for a MedinferError, a closed pipe or Ctrl-C)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not logging.getLogger().handlers:  # library warnings (an unchecked signature, ...) reach the screen, loudly
        logging.basicConfig(level=logging.WARNING, format="medinfer: %(levelname)s: %(message)s")
    try:
        if argv and argv[0] in TRAIN_COMMANDS:
            return _train_main(argv)
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return int(args.func(args))
    except MedinferError as exc:
        print(f"medinfer: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return exit_code(exc)
    except BrokenPipeError:
        # The reader went away (``medinfer ... | head``): stop quietly, and keep Python from complaining at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        print("medinfer: interrupted", file=sys.stderr)
        return 130
    except ImportError as exc:
        if (getattr(exc, "name", None) or "").split(".")[0] != "onnxruntime":
            return unexpected(exc)
        from ..providers import missing_onnxruntime  # a tool outside the core imported onnxruntime itself

        missing = missing_onnxruntime(exc)
        print(f"medinfer: error: {type(missing).__name__}: {missing}", file=sys.stderr)
        return exit_code(missing)
    except Exception as exc:  # noqa: BLE001 - a bug: one line for the user, the traceback on request
        return unexpected(exc)


def unexpected(exc: BaseException) -> int:
    """Report an error medinfer did not expect (a bug) in one line; the traceback with MEDINFER_DEBUG=1."""
    if os.environ.get("MEDINFER_DEBUG"):
        raise exc
    print(f"medinfer: unexpected error (a bug: please report it): {type(exc).__name__}: {exc}; set "
          "MEDINFER_DEBUG=1 for the traceback", file=sys.stderr)
    return 1
