"""Variants of a validated graph, each made by a builder registered like a converter.

A module of this package registers the kinds it makes with ``@register_variant("int8")`` (``"slice",
"slice_int8"`` share one builder: the second quantises what the first rewrites); a spec names the kinds it wants
(``ModelSpec.variants``, in the order they are built) and declares their settings (``variant_settings``). The
exporter hands every builder one :class:`VariantJob` and knows no kind by name: static int8 (:mod:`.int8`), a CNN's
channels-last int8 (:mod:`.int8_nhwc`) and the whole-slice graphs of a CT patch classifier (:mod:`.whole_slice`) are
registrations, not branches of the pipeline. Each builder gates its own variants and reports the refused ones (a
patch variant by the one clinical gate, :mod:`.gate`); an unknown kind is an error naming the registered ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from medinfer.manifest import SessionProfile, Variant
from medinfer.registry import Registry
from medinfer.samples import Pair

from ...train.domain import DomainGuard
from ...train.spec import Dataset, ModelSpec, Progress, quiet

#: (manifest variants, {file name: graph bytes}, report incl. refused variants, {variant: (own inputs, golden outputs)})
VariantsBuilt = tuple[dict[str, Variant], dict[str, bytes], dict[str, Any], dict[str, Pair]]


@dataclass
class VariantJob:
    """What a variant builder gets: the validated fp32 graph, its data and contract, the shipped session profile,
    the graph's domain guard (None: it has none), and the variants built before it (``shipped``, the default
    included; ``files`` their graphs)."""

    spec: ModelSpec
    dataset: Dataset
    graph: bytes
    input_name: str
    golden_x: Any
    threshold: float | None
    profile: SessionProfile
    seed: int = 0
    progress: Progress = quiet
    guard: DomainGuard | None = None
    shipped: dict[str, Variant] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class Builder:
    """A registered builder: the kinds it makes, called once with those the spec wants, in the spec's order."""

    kinds: tuple[str, ...]
    build: Callable[[VariantJob, list[str]], VariantsBuilt]


VARIANTS: Registry[Builder] = Registry(
    "variant kind", package=__name__, hint="; register a builder with @register_variant(kind)",
    describe=lambda b: f"{b.build.__module__}.{b.build.__qualname__}", same=lambda a, b: a.build is b.build)


def register_variant(*kinds: str) -> Callable[[Callable[[VariantJob, list[str]], VariantsBuilt]],
                                              Callable[[VariantJob, list[str]], VariantsBuilt]]:
    """Decorator: ``fn(job, kinds) -> VariantsBuilt`` makes the variants of ``kinds`` (a subset the spec asked for).

    Raises:
        UsageError: a kind another builder already makes (builders are never overwritten).
    """
    def decorate(fn: Callable[[VariantJob, list[str]], VariantsBuilt]) -> Callable[[VariantJob, list[str]],
                                                                                   VariantsBuilt]:
        builder = Builder(tuple(kinds), fn)
        for kind in kinds:
            VARIANTS.add(kind, builder)
        return fn

    return decorate


def build_variants(job: VariantJob) -> VariantsBuilt:
    """Every variant ``job.spec.variants`` asks for, each builder once, in the order the spec names them.

    Raises:
        UnknownNameError: a kind no builder makes (with the closest registered kinds).
    """
    variants: dict[str, Variant] = {}
    files: dict[str, bytes] = {}
    report: dict[str, Any] = {}
    goldens: dict[str, Pair] = {}
    done: set[str] = set()
    job.shipped = {"default": Variant(file="model.onnx"), **job.shipped}
    for kind in job.spec.variants:
        builder = VARIANTS.get(kind)
        if kind in done:
            continue
        wanted = [k for k in job.spec.variants if k in builder.kinds]
        done.update(wanted)
        built, built_files, built_report, built_goldens = builder.build(job, wanted)
        variants.update(built)
        files.update(built_files)
        report.update(built_report)
        goldens.update(built_goldens)
        job.shipped.update(built)
        job.files.update(built_files)
    return variants, files, report, goldens


def settings(spec: ModelSpec, kind: str, default: Any) -> Any:
    """The settings ``spec`` declares for the variants of ``kind`` (``variant_settings``), else ``default``."""
    return spec.variant_settings.get(kind) or default
