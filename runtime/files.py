"""Reading bundle files safely: regular files only, never more bytes than allowed, every entry of a folder seen.

A name in a bundle folder may have been replaced by a FIFO (a read would block forever), a symlink to /dev/zero
(a read would never end) or a link out of the bundle; these helpers refuse such entries before reading them.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

from .errors import IntegrityError, MedinferError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


BUNDLE_FIX = "restore the bundle from its source"


def read_regular_file(path: Path, limit: int, what: str, error: type[MedinferError] = IntegrityError,
                      fix: str = BUNDLE_FIX) -> bytes:
    """The bytes of ``path``, which must be a regular file (not a symlink, FIFO, device or folder) of at most
    ``limit`` bytes; reads at most ``limit + 1`` bytes, so /dev/zero behind a name never fills memory and a FIFO
    never blocks (it is refused before it is opened for reading). ``fix`` ends each refusal: what to do.

    Raises:
        IntegrityError (or ``error``): missing, not a regular file, a symlink, or larger than ``limit``.
    """
    chunks: list[bytes] = []
    stream_regular_file(path, limit, what, chunks.append, error, fix=fix)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def stream_regular_file(path: Path, limit: int, what: str, sink: Callable[[bytes], object],
                        error: type[MedinferError] = IntegrityError, block: int = 1 << 20,
                        fix: str = BUNDLE_FIX) -> int:
    """Hand the bytes of ``path`` to ``sink`` in blocks (at most ``limit + 1`` bytes in all): the checks of
    :func:`read_regular_file` without holding the whole file in memory. Returns the number of bytes read.

    Raises:
        IntegrityError: missing, not a regular file, a symlink, or larger than ``limit``.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise error(f"{what} is missing; {fix}") from None
    except OSError as exc:
        raise error(f"{what} cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISLNK(info.st_mode):
        raise error(f"{what} is a symbolic link; only regular files are read (links could point anywhere): "
                    "replace it with the file itself")
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{what} is {_kind(info.st_mode)}, not a regular file; {fix}")
    if info.st_size > limit:
        raise error(f"{what} has {info.st_size} bytes, more than the {limit} allowed; {fix}")
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise error(f"{what} cannot be opened ({exc.strerror or exc})") from None
    total = 0
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped between lstat and open
            raise error(f"{what} changed into a non-regular file while it was opened")
        left = limit + 1
        while left > 0:
            data = os.read(fd, min(left, block))
            if not data:
                break
            sink(data)
            total += len(data)
            left -= len(data)
    finally:
        os.close(fd)
    return total


class SealedCopy:
    """Bytes held where nothing can change them after they were hashed, for a reader that wants a path.

    On Linux: a sealed in-memory file (``memfd_create`` + ``F_SEAL_WRITE``/``SHRINK``/``GROW``/``SEAL``) named by
    ``/proc/self/fd/N``. onnxruntime then reads the graph itself instead of being handed a Python ``bytes``,
    which its Python binding copies (twice, while parsing) and its ``InferenceSession`` keeps for the session's
    life: the verified copy lives only until the session exists (see ``loader``). Elsewhere (or where memfd or
    ``/proc`` are unavailable) the bytes are kept in memory and :attr:`source` is the bytes.
    """

    def __init__(self, name: str) -> None:
        self._chunks: list[bytes] | None = None
        self.fd = -1
        create = getattr(os, "memfd_create", None)
        if create is not None and fcntl is not None and hasattr(fcntl, "F_ADD_SEALS"):
            try:
                self.fd = create(f"medinfer:{name}", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
            except OSError:
                self.fd = -1
        if self.fd >= 0 and not os.path.exists(f"/proc/self/fd/{self.fd}"):
            os.close(self.fd)
            self.fd = -1
        if self.fd < 0:
            self._chunks = []

    def write(self, data: bytes) -> None:
        if self._chunks is not None:
            self._chunks.append(data)
            return
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]

    def seal(self) -> SealedCopy:
        """No more writes, by anyone (called once the content's digest was checked)."""
        if self.fd >= 0:
            fcntl.fcntl(self.fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW
                        | fcntl.F_SEAL_WRITE)
        elif self._chunks is not None and len(self._chunks) > 1:
            self._chunks = [b"".join(self._chunks)]
        return self

    @property
    def source(self) -> str | bytes:
        """What onnxruntime is given: the sealed file's path, or the bytes."""
        if self.fd >= 0:
            return f"/proc/self/fd/{self.fd}"
        if self._chunks is None:
            raise ValueError("this sealed copy was released")
        return self._chunks[0] if self._chunks else b""

    def read(self) -> bytes:
        """The sealed bytes themselves (for a reader that cannot open :attr:`source`'s path)."""
        if self.fd < 0:
            source = self.source
            return source if isinstance(source, bytes) else b""
        size = os.fstat(self.fd).st_size
        parts, offset = [], 0
        while offset < size:
            block = os.pread(self.fd, min(size - offset, 1 << 24), offset)
            if not block:
                break
            parts.append(block)
            offset += len(block)
        return b"".join(parts)

    def close(self) -> None:
        """Release the copy (onnxruntime holds its own parsed weights once a session exists)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self._chunks = None

    def __enter__(self) -> SealedCopy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
