"""The model-spec registry: one spec class per model, registered by decorator.

Duplicates are refused, unknown names answered with "did you mean". ``all_specs()`` imports every module of
``medinfer.train.specs`` so a new spec file is picked up (and tested) without editing anything else.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING, TypeVar

from medinfer.errors import UnknownNameError, UsageError

if TYPE_CHECKING:
    from .spec import ModelSpec

S = TypeVar("S", bound="type[ModelSpec]")

_REGISTRY: dict[str, type[ModelSpec]] = {}
_DISCOVERED = False


def register(cls: S) -> S:
    """Class decorator: add a spec to the registry under ``cls.name``.

    Raises:
        UsageError: a spec of that name is already registered (specs are never overwritten), or no name.
    """
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise UsageError(f"{cls.__qualname__} needs a class attribute 'name' to be registered")
    existing = _REGISTRY.get(name)
    if existing is not None and existing is not cls:
        raise UsageError(
            f"a spec named {name!r} is already registered ({existing.__module__}.{existing.__qualname__}); "
            "specs are not overwritten: choose another name"
        )
    _REGISTRY[name] = cls
    return cls


def _discover() -> None:
    global _DISCOVERED
    if _DISCOVERED:
        return
    from . import specs

    for info in pkgutil.iter_modules(specs.__path__):
        importlib.import_module(f"{specs.__name__}.{info.name}")
    _DISCOVERED = True


def names() -> list[str]:
    _discover()
    return sorted(_REGISTRY)


def get(name: str) -> ModelSpec:
    """An instance of the spec registered as ``name``.

    Raises:
        UnknownNameError: unknown name, with the closest registered names and how many there are.
    """
    _discover()
    cls = _REGISTRY.get(name)
    if cls is None:
        raise UnknownNameError("model spec", name, _REGISTRY, "; 'medinfer specs' lists them")
    return cls()


def unregister(name: str) -> None:
    """Remove a spec registered at run time (tests that define a spec of their own clean up with this)."""
    _REGISTRY.pop(name, None)


def all_specs() -> list[ModelSpec]:
    return [get(n) for n in names()]
