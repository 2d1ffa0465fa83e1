"""Reading bundle files safely: regular files only, never more bytes than allowed, every entry of a folder seen.

A name in a bundle folder may have been replaced by a FIFO (a read would block forever), a symlink to /dev/zero
(a read would never end) or a link out of the bundle; these helpers refuse such entries before reading them.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import IntegrityError, MedinferError


def read_regular_file(path: Path, limit: int, what: str, error: type[MedinferError] = IntegrityError) -> bytes:
    """The bytes of ``path``, which must be a regular file (not a symlink, FIFO, device or folder) of at most
    ``limit`` bytes; reads at most ``limit + 1`` bytes, so /dev/zero behind a name never fills memory and a FIFO
    never blocks (it is refused before it is opened for reading).

    Raises:
        IntegrityError: missing, not a regular file, a symlink, or larger than ``limit``.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise error(f"{what} is missing; restore the bundle from its source") from None
    except OSError as exc:
        raise error(f"{what} cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISLNK(info.st_mode):
        raise error(f"{what} is a symbolic link; a bundle holds regular files only (links could point "
                    "anywhere): replace it with the file itself")
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{what} is {_kind(info.st_mode)}, not a regular file; restore the bundle from its source")
    if info.st_size > limit:
        raise error(f"{what} has {info.st_size} bytes, more than the {limit} allowed: the file was altered or "
                    "replaced; restore the bundle from its source")
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise error(f"{what} cannot be opened ({exc.strerror or exc})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped between lstat and open
            raise error(f"{what} changed into a non-regular file while it was opened")
        chunks, left = [], limit + 1
        while left > 0:
            block = os.read(fd, min(left, 1 << 20))
            if not block:
                break
            chunks.append(block)
            left -= len(block)
    finally:
        os.close(fd)
    return b"".join(chunks)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "a special file"


def bundle_entries(bundle: Path) -> tuple[set[str], set[str]]:
    """Every entry below ``bundle`` as POSIX relative paths: ``(files, folders)``.

    Raises:
        IntegrityError: an entry that is a symlink (to a file or a folder, dangling or not) or a special file.
    """
    files: set[str] = set()
    folders: set[str] = set()
    stack = [Path(bundle)]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            raise IntegrityError(f"{folder} cannot be listed ({exc.strerror or exc})") from None
        for entry in entries:
            rel = Path(entry.path).relative_to(bundle).as_posix()
            if entry.is_symlink():
                raise IntegrityError(f"{bundle}: '{rel}' is a symbolic link; a bundle holds regular files only: "
                                     "remove it or re-export the bundle")
            if entry.is_dir(follow_symlinks=False):
                folders.add(rel)
                stack.append(Path(entry.path))
            elif entry.is_file(follow_symlinks=False):
                files.add(rel)
            else:
                kind = _kind(entry.stat(follow_symlinks=False).st_mode)
                raise IntegrityError(f"{bundle}: '{rel}' is {kind}; a bundle holds regular files only: remove it")
    return files, folders
