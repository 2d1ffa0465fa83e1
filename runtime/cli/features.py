"""What ``medinfer info`` says about a bundle's inputs beyond the tensor table: the feature names (the first and
last few, and how many) with their units, and the training data's licences with the commercial-use verdict."""

from __future__ import annotations

from typing import Any

from ..manifest import Manifest, TensorSpec


def feature_line(spec: TensorSpec, first: int = 4, last: int = 3) -> str | None:
    """``features of 'x' (216): a [unit], b, c, d, …, x, y, z; units: ...`` or None for an input without names.

    Per-feature units come from the input's ``facts.features`` (name, unit) where the manifest has them, else the
    tensor's own ``units`` apply to every feature.
    """
    names = spec.names
    if not names:
        return None
    per_feature = {str(f.get("name")): str(f.get("unit") or "") for f in spec.facts.get("features") or []
                   if isinstance(f, dict)}

    def shown(name: str) -> str:
        unit = per_feature.get(name)
        return f"{name} [{unit}]" if unit else name

    if len(names) <= first + last + 1:
        listed = ", ".join(shown(n) for n in names)
    else:
        listed = ", ".join([*(shown(n) for n in names[:first]), "…", *(shown(n) for n in names[-last:])])
    units = f"; units: {spec.units}" if spec.units and not per_feature else ""
    return f"features of '{spec.name}' ({len(names)}, in this order): {listed}{units}"


def data_lines(m: Manifest) -> list[str]:
    """The training sources with their licences, and whether the model may be used commercially."""
    from ..tools.licences import commercial_summary

    sources = "; ".join(f"{s.package}=={s.version}:{s.file} ({s.licence})" for s in m.data.sources)
    return [f"data: {sources}{' (SYNTHETIC)' if m.data.synthetic else ''}",
            f"commercial use: {commercial_summary([s.licence for s in m.data.sources])} (docs/data-licences.md)"]


def info_extras(m: Manifest) -> list[Any]:
    """The feature lines of every named input."""
    return [line for t in m.inputs if (line := feature_line(t)) is not None]
