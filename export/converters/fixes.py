"""Graph fixes every converter may need (each one reproduced on this stack, see the stack notes)."""

from __future__ import annotations

from typing import Any

from medinfer.errors import UsageError


def fix_string_normalizer_locale(onx: Any, locale: str = "C.UTF-8") -> int:
    """skl2onnx's StringNormalizer asks for en_US.UTF-8, which many devices lack ("Failed to construct locale").

    Set an explicit locale that every glibc has. Returns the number of nodes changed.
    """
    from onnx import helper

    changed = 0
    for node in onx.graph.node:
        if node.op_type == "StringNormalizer":
            for attr in list(node.attribute):
                if attr.name == "locale":
                    node.attribute.remove(attr)
            node.attribute.append(helper.make_attribute("locale", locale))
            changed += 1
    return changed


def rename_outputs(onx: Any, names: list[str]) -> None:
    """Rename the graph outputs, in order, to the spec's output names (and every node that produces them)."""
    outputs = list(onx.graph.output)
    if len(outputs) != len(names):
        raise UsageError(f"graph has {len(outputs)} outputs {[o.name for o in outputs]}, spec declares {names}")
    mapping = {o.name: n for o, n in zip(outputs, names) if o.name != n}
    if not mapping:
        return
    for node in onx.graph.node:
        for i, out in enumerate(node.output):
            if out in mapping:
                node.output[i] = mapping[out]
        for i, inp in enumerate(node.input):
            if inp in mapping:
                node.input[i] = mapping[inp]
    for out in onx.graph.output:
        if out.name in mapping:
            out.name = mapping[out.name]


def graph_dims(value_info: Any) -> tuple[int | str, ...]:
    """A graph input's or output's shape: sizes, symbolic names, ``"?"`` for an unnamed dynamic axis."""
    dims = value_info.type.tensor_type.shape.dim
    return tuple(d.dim_param if d.dim_param else (int(d.dim_value) if d.dim_value > 0 else "?") for d in dims)


def name_dynamic_dims(onx: Any, wanted: dict[str, tuple[int | str, ...]] | None = None) -> None:
    """Give each graph input's and output's dynamic axes readable names: the contract's (``wanted``: tensor name ->
    shape) where it names that axis, else ``N`` for the batch axis and ``<tensor>_<axis>`` for the others; fixed
    sizes are kept. An input with no shape information at all is left as it is."""
    for value_info in [*onx.graph.input, *onx.graph.output]:
        want = (wanted or {}).get(value_info.name)
        shape = value_info.type.tensor_type.shape
        for axis, dim in enumerate(shape.dim):
            if dim.dim_value > 0:
                continue
            if want is not None and axis < len(want) and isinstance(want[axis], str) and want[axis] != "?":
                dim.dim_param = str(want[axis])
            else:
                dim.dim_param = "N" if axis == 0 else f"{value_info.name}_{axis}"
