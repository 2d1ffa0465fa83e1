"""Typed validation of JSON documents into frozen dataclasses.

A tiny, dependency-free stand-in for JSON Schema: the dataclass annotations ARE the schema. ``parse(cls, data)``
checks every field's type recursively and raises :class:`~medinfer.errors.ManifestError` naming the exact field
path (``inputs[0].shape[1]``) and what was expected. Unknown fields are refused so a typo never passes silently.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar, Union, get_args, get_origin

from .errors import ManifestError

T = TypeVar("T")

_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = typing.get_type_hints(cls)
        _HINTS[cls] = hints
    return hints


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(tp))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (list, tuple):
        return "a list"
    if origin is dict:
        return "an object"
    if dataclasses.is_dataclass(tp):
        return "an object"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _fail(path: str, expected: Any, value: Any, doc: str) -> typing.NoReturn:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    raise ManifestError(f"{doc}: field '{path}' must be {_describe(expected)}, got {shown}")


def _convert(tp: Any, value: Any, path: str, doc: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        errors = []
        for arm in get_args(tp):
            try:
                return _convert(arm, value, path, doc)
            except ManifestError as exc:
                errors.append(exc)
        # A nested error inside the one object-shaped arm is more useful than "must be X or null".
        deep = [e for e in errors if f"'{path}'" not in str(e)]
        if deep:
            raise deep[0]
        _fail(path, tp, value, doc)
    if origin is typing.Literal:
        if value in get_args(tp):
            return value
        _fail(path, tp, value, doc)
    if tp is type(None):
        if value is None:
            return None
        _fail(path, tp, value, doc)
    if dataclasses.is_dataclass(tp):
        return parse(tp, value, doc=doc, path=path)  # type: ignore[arg-type]
    if origin is list or origin is tuple:
        if not isinstance(value, list):
            _fail(path, tp, value, doc)
        (item,) = get_args(tp)[:1] or (Any,)
        return tuple(_convert(item, v, f"{path}[{i}]", doc) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            _fail(path, tp, value, doc)
        key_tp, val_tp = get_args(tp)
        return {
            _convert(key_tp, k, f"{path}", doc): _convert(val_tp, v, f"{path}.{k}", doc)
            for k, v in value.items()
        }
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        _fail(path, tp, value, doc)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        _fail(path, tp, value, doc)
    if tp in (str, bool):
        if type(value) is tp:
            return value
        _fail(path, tp, value, doc)
    raise TypeError(f"schema type {tp!r} at {path} is not supported")  # programming error, not input


def parse(cls: type[T], data: Any, *, doc: str = "document", path: str = "") -> T:
    """Build dataclass ``cls`` from JSON ``data``, checking every field.

    Args:
        cls: a (frozen) dataclass whose annotations describe the schema.
        data: the decoded JSON value.
        doc: the document's name, used in error messages (e.g. ``"manifest.json"``).
        path: the field path of ``data`` inside the document (for nested calls).

    Returns:
        An instance of ``cls``; lists become tuples so the result is immutable.

    Raises:
        ManifestError: a field is missing, unknown, or of the wrong type; the message names it.
    """
    where = path or "<root>"
    if not isinstance(data, dict):
        raise ManifestError(f"{doc}: field '{where}' must be an object, got {type(data).__name__}")
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ManifestError(
            f"{doc}: unknown field '{_join(path, unknown[0])}'; allowed fields are: {', '.join(fields)}"
        )
    kwargs = {}
    for name, field in fields.items():
        sub = _join(path, name)
        if name not in data:
            has_default = (
                field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING
            )
            if has_default:
                continue
            raise ManifestError(f"{doc}: required field '{sub}' is missing")
        kwargs[name] = _convert(hints[name], data[name], sub, doc)
    obj = cls(**kwargs)
    check = getattr(obj, "_check", None)
    if check is not None:
        check(doc, path)
    return obj


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def to_json(obj: Any) -> Any:
    """Turn a schema dataclass (tuples included) back into plain JSON values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_json(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_json(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_json(v) for k, v in obj.items()}
    return obj
