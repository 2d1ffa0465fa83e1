"""The model-spec registry: one spec class per model, registered by decorator.

Duplicates are refused, unknown names answered with "did you mean". ``all_specs()`` imports every module of
``medinfer.train.specs`` so a new spec file is picked up (and tested) without editing anything else. The registry
itself is medinfer's one :class:`~medinfer.registry.Registry`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from medinfer.errors import UsageError
from medinfer.registry import Registry

if TYPE_CHECKING:
    from .spec import ModelSpec

S = TypeVar("S", bound="type[ModelSpec]")

SPECS: Registry[type[ModelSpec]] = Registry("model spec", package="medinfer.train.specs",
                                            hint="; 'medinfer specs' lists them")


def register(cls: S) -> S:
    """Class decorator: add a spec to the registry under ``cls.name``.

    Raises:
        UsageError: a spec of that name is already registered (specs are never overwritten), or no name.
    """
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise UsageError(f"{cls.__qualname__} needs a class attribute 'name' to be registered")
    SPECS.add(name, cls)
    return cls


def names() -> list[str]:
    return SPECS.names()


def get(name: str) -> ModelSpec:
    """An instance of the spec registered as ``name``.

    Raises:
        UnknownNameError: unknown name, with the closest registered names and how many there are.
    """
    return SPECS.get(name)()


def unregister(name: str) -> None:
    """Remove a spec registered at run time (tests that define a spec of their own clean up with this)."""
    SPECS.remove(name)


def all_specs() -> list[ModelSpec]:
    return [get(n) for n in names()]
