"""Source adapters: how each kind of model a team brings is recognised, loaded and run in its own framework.

A module registers its adapter with :func:`register_source` (a :class:`~medinfer.registry.Registry`: duplicates
refused, unknown kinds answered with the closest). Each adapter names the converter family
(:mod:`medinfer.export.converters`) that turns the loaded model into ONNX and the extra its framework comes with;
the export pipeline itself is the five specs' one. Kinds: ``onnx``, ``torch``, ``keras``, ``sklearn``,
``xgboost``, ``lightgbm`` (:mod:`.adapters`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from medinfer.errors import UsageError
from medinfer.registry import Registry

from ...train.spec import ParityTolerance


@dataclass
class Loaded:
    """A model as its framework loaded it, with what the adapter learnt from it."""

    kind: str
    obj: Any
    path: str
    input_names: tuple[str, ...] | None = None  # the model's own input names (None: it has none, e.g. sklearn)
    task_hint: str | None = None  # what the file itself says (a booster's objective), checked against the contract
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Source:
    """A registered source kind.

    ``run(loaded, inputs, output_names)`` returns the framework's own outputs by name (``None`` for ``onnx``: the
    reference outputs in REF.npz are the comparison). ``layout``: the (score, label) outputs the kind's converter
    always makes (``None``: the model's own outputs). ``frameworks()``: distribution versions for the manifest.
    """

    kind: str
    family: str
    extra: str
    matches: Callable[[str], bool]
    load: Callable[[str, str], Loaded]  # (source, task) -> Loaded
    run: Callable[[Loaded, dict[str, np.ndarray], tuple[str, ...] | None], dict[str, np.ndarray]] | None
    frameworks: Callable[[], dict[str, str]]
    tolerance: ParityTolerance
    layout: Callable[[str], tuple[tuple[str, ...], tuple[str, str | None]] | None] = lambda task: None
    describe: str = ""


SOURCES: Registry[Source] = Registry(
    "source kind", package="medinfer.export.bring.adapters", hint="; register one with @register_source",
    describe=lambda s: s.describe or s.kind, same=lambda a, b: a.load is b.load)


def register_source(source: Source) -> Source:
    """Register a source kind.

    Raises:
        UsageError: the kind is registered already (adapters are never overwritten).
    """
    SOURCES.add(source.kind, source)
    return source


def detect(source: str, kind: str | None = None) -> Source:
    """The adapter for ``source``: the one named by ``kind`` (``--kind``), else the one whose pattern it matches.

    Raises:
        UnknownNameError: ``kind`` is not registered.
        UsageError: no adapter recognises the source (with the patterns each recognises).
    """
    if kind is not None:
        return SOURCES.get(kind)
    found = [s for s in SOURCES.all().values() if s.matches(source)]
    if len(found) != 1:
        kinds = "; ".join(f"{s.kind}: {s.describe}" for s in SOURCES.all().values())
        what = ("matches no source kind" if not found else
                f"matches {len(found)} kinds ({', '.join(s.kind for s in found)})")
        raise UsageError(f"{source!r} {what}; name one with --kind ({kinds})")
    return found[0]


def suffix(path: str) -> str:
    """``path``'s last suffix, lowercase (``''`` for a ``module:attr`` reference)."""
    return Path(path).suffix.lower() if ":" not in path or Path(path).exists() else ""


def versions(*dists: str) -> dict[str, str]:
    """The installed version of each distribution (those not installed are left out)."""
    import contextlib
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str] = {}
    for dist in dists:
        with contextlib.suppress(PackageNotFoundError):
            out[dist] = version(dist)
    return out
