"""Converters from native models to ONNX: one registered function per framework family (``spec.family``).

A module of this package declares its converter with ``@register_converter("keras", tool="tf2onnx")``; the
registry refuses a second converter for the same family, and an unknown family is answered with the closest
names. ``tool`` is the distribution whose version the manifest records as the converter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from medinfer.registry import Registry

if TYPE_CHECKING:
    from ...train.spec import Dataset, ModelSpec

ConvertFn = Callable[["ModelSpec", Any, "Dataset"], Any]


@dataclass(frozen=True)
class Converter:
    family: str
    tool: str  # the converter's distribution name (its version goes into the manifest)
    convert: ConvertFn


CONVERTERS: Registry[Converter] = Registry(
    "converter family", package=__name__, hint="; register one with @register_converter(family, tool=...)",
    describe=lambda c: f"{c.convert.__module__}.{c.convert.__qualname__}, tool {c.tool}",
    same=lambda a, b: a.convert is b.convert)


def register_converter(family: str, *, tool: str) -> Callable[[ConvertFn], ConvertFn]:
    """Decorator: ``fn(spec, model, dataset) -> onnx.ModelProto`` converts models of ``family``.

    Raises:
        UsageError: another converter is already registered for ``family`` (converters are never overwritten).
    """
    def decorate(fn: ConvertFn) -> ConvertFn:
        CONVERTERS.add(family, Converter(family, tool, fn))
        return fn

    return decorate


def converters() -> dict[str, Converter]:
    """Every registered converter by family (imports each module of this package once)."""
    return CONVERTERS.all()


def get_converter(family: str) -> Converter:
    """The converter of ``family``.

    Raises:
        UnknownNameError: no converter is registered for it (with the closest families).
    """
    return CONVERTERS.get(family)


def convert(spec: ModelSpec, model: Any, dataset: Dataset) -> Any:
    """Convert ``model`` with the converter of ``spec.family``; returns an ``onnx.ModelProto``."""
    return get_converter(spec.family).convert(spec, model, dataset)
