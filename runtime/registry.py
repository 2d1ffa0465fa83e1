"""One registry: named entries registered once, found by name with "did you mean", discovered from a package.

Model specs (``medinfer.train.registry``), converters and variant builders (``medinfer.export``) and data sources
(``medinfer.train.datasets.sources``) are each a :class:`Registry`. A second entry under a taken name is refused
(entries are never overwritten, skl2onnx's rule), an unknown name is answered with the closest names and how many
are known, and ``package`` names the package whose every module is imported once before the first lookup, so a
new file that registers itself is found without editing a list.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Generic, TypeVar

from .errors import UnknownNameError, UsageError

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries of one kind by name.

    Args:
        kind: what an entry is, for messages (``"model spec"``, ``"converter for family"``).
        package: the package whose modules register the entries (imported on first lookup), or None.
        hint: appended to the unknown-name message (how to list or add entries).
        describe: an entry's description in the duplicate message (default: its module and name).
        same: whether two entries are one (registering it again is then allowed; default: identity).
    """

    def __init__(self, kind: str, *, package: str | None = None, hint: str = "",
                 describe: Callable[[T], str] | None = None, same: Callable[[T, T], bool] | None = None) -> None:
        self.kind = kind
        self.package = package
        self.hint = hint
        self._describe = describe or _origin
        self._same = same or (lambda a, b: a is b)
        self._entries: dict[str, T] = {}
        self._discovered = package is None

    def add(self, name: str, entry: T) -> T:
        """Register ``entry`` as ``name``; returns it.

        Raises:
            UsageError: ``name`` is empty, or another entry holds it (entries are never overwritten).
        """
        if not isinstance(name, str) or not name:
            raise UsageError(f"a {self.kind} needs a name to be registered, got {name!r}")
        existing = self._entries.get(name)
        if existing is not None and not self._same(existing, entry):
            raise UsageError(f"a {self.kind} {name!r} is already registered ({self._describe(existing)}); "
                             f"entries are not overwritten: choose another name")
        self._entries[name] = entry
        return entry

    def remove(self, name: str) -> None:
        """Forget ``name`` (tests that register an entry of their own clean up with this)."""
        self._entries.pop(name, None)

    def all(self) -> dict[str, T]:
        """Every entry by name, sorted (the package's modules imported first)."""
        self._discover()
        return dict(sorted(self._entries.items()))

    def names(self) -> list[str]:
        return list(self.all())

    def get(self, name: str) -> T:
        """The entry ``name``.

        Raises:
            UnknownNameError: no such entry (with the closest names and how many are known).
        """
        known = self.all()
        if name not in known:
            raise UnknownNameError(self.kind, name, known, self.hint)
        return known[name]

    def __contains__(self, name: object) -> bool:
        return name in self.all()

    def _discover(self) -> None:
        if self._discovered:
            return
        package = importlib.import_module(str(self.package))
        for info in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package.__name__}.{info.name}")
        self._discovered = True


def _origin(entry: object) -> str:
    target = entry if hasattr(entry, "__qualname__") else type(entry)
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', '?')}"
