"""The ``onnx`` family: a graph that is ONNX already (a brought .onnx file). Nothing is converted; the inputs and
outputs keep their names and dynamic axes get readable names (``N`` for the batch axis)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import register_converter
from .fixes import name_dynamic_dims

if TYPE_CHECKING:
    from ...train.spec import Dataset, ModelSpec


@register_converter("onnx", tool="onnx")
def convert(spec: ModelSpec, model: Any, dataset: Dataset) -> Any:
    """A copy of the loaded ``onnx.ModelProto`` ."""
    import onnx

    onx = onnx.ModelProto()
    onx.CopyFrom(model)
    name_dynamic_dims(onx, {t.name: t.shape for t in spec.inputs(dataset)})
    return onx
