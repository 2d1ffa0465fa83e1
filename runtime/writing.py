"""Writing output files safely: THE one writer of every file medinfer produces for a user (overlays, DICOM SR /
Parametric Map / Secondary Capture, FHIR Bundles, signatures, token files).

- only a regular file (or a new name) is ever written or replaced: a folder, FIFO, socket, device or symbolic link
  at the target is refused before anything is opened (opening a FIFO for writing would block until a reader came,
  and replacing a device node or a link's target is never what a user meant);
- the bytes go to a temporary file in the target's own folder, are flushed to disk, and the temporary file is
  renamed over the target in one step: a reader sees the old file or the whole new one, and a failure (a full disk,
  an error while encoding) leaves no partial file behind;
- every failure is an :class:`~medinfer.errors.OutputError` (exit 2) naming the path and why: a missing or
  read-only folder, a target that is not a regular file, a write the system refused.

:func:`check_target` runs the same checks without writing, so a command can refuse a bad output path before it does
any work.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from .errors import OutputError

__all__ = ["check_folder", "check_target", "write_atomic"]

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISLNK, "a symbolic link"))


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "a special file")


def check_folder(folder: str | Path, what: str = "the output") -> Path:
    """``folder`` when it is an existing, writable folder (not a link to one); ``what`` names the option or file
    the folder is for in the messages.

    Raises:
        OutputError: missing, not a folder, or not writable.
    """
    folder = Path(folder)
    try:
        info = os.lstat(folder)
    except FileNotFoundError:
        raise OutputError(f"{what}: the folder {folder} does not exist: create it first") from None
    except OSError as exc:
        raise OutputError(f"{what}: the folder {folder} cannot be used ({exc.strerror or exc})") from None
    if not stat.S_ISDIR(info.st_mode):
        raise OutputError(f"{what}: {folder} is {_kind(info.st_mode)}, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{what}: the folder {folder} is not writable (read-only or not yours): choose another "
                          "folder")
    return folder


def check_target(path: str | Path, what: str = "the output") -> Path:
    """``path`` when a file may be written there: its folder exists and is writable, and the name is new or a
    regular file (never a folder, FIFO, socket, device or symbolic link).

    Raises:
        OutputError: naming the path and why it is refused.
    """
    path = Path(path)
    if not path.name or path.name in (".", ".."):
        raise OutputError(f"{what} {str(path)!r} names no file")
    check_folder(path.parent if str(path.parent) else Path("."), f"{what} {path}")
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return path
    except OSError as exc:
        raise OutputError(f"{what} {path} cannot be used ({exc.strerror or exc})") from None
    if not stat.S_ISREG(info.st_mode):
        raise OutputError(f"{what} {path} is {_kind(info.st_mode)}; only a regular file (or a new name) is written "
                          "or replaced: choose another path")
    return path


def write_atomic(path: str | Path, data: bytes | Callable[[IO[bytes]], object], what: str = "the output",
                 mode: int = 0o666) -> Path:
    """Write ``data`` (bytes, or a function that writes into a binary file object) to ``path`` atomically: into a
    temporary file in the same folder, flushed to disk, then renamed over ``path``.

    Args:
        path: the target (a new name or a regular file; see :func:`check_target`).
        data: the bytes, or ``write(fileobj)``.
        what: how messages name the output (e.g. ``"--fhir-out"``).
        mode: permission bits before the umask (``0o600`` for secrets).

    Returns:
        ``path``.

    Raises:
        OutputError: the target is refused, or the system refused the write (nothing partial is left behind).
        Anything ``data`` raises while writing (the temporary file is removed first).
    """
    path = check_target(path, what)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=folder)
    except OSError as exc:
        raise OutputError(f"{what} {path} cannot be written ({exc.strerror or exc})") from None
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, mode & ~umask)
        with os.fdopen(fd, "wb") as fh:
            if isinstance(data, (bytes, bytearray, memoryview)):
                fh.write(data)
            else:
                data(fh)
            fh.flush()
            os.fsync(fh.fileno())
        check_target(path, what)  # still a regular file or new (not swapped for a FIFO meanwhile)
        os.replace(tmp, path)
    except OSError as exc:
        _discard(tmp)
        raise OutputError(f"{what} {path} cannot be written ({exc.strerror or exc}); nothing was left behind") \
            from None
    except BaseException:
        _discard(tmp)
        raise
    return path


def _discard(tmp: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(tmp)
