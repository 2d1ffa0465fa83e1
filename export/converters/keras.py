"""Keras 3 → ONNX with tf2onnx, through ``tf.function`` (``from_keras`` fails on Keras 3: see the stack notes).

The spec's input contract gives the signature: symbolic dims (batch ``N``, time ``T``) stay dynamic in the graph,
fixed dims are fixed. Inputs and outputs are renamed to the spec's names and symbolic dims carry the spec's
names, so the graph reads like its manifest.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from medinfer.errors import UsageError

from . import register_converter
from .fixes import rename_outputs

if TYPE_CHECKING:
    from ...train.spec import Dataset, ModelSpec

log = logging.getLogger(__name__)


@register_converter("keras", tool="tf2onnx")
def convert(spec: ModelSpec, model: Any, dataset: Dataset) -> Any:
    """Convert a fitted ``keras.Model`` to an ``onnx.ModelProto`` at ``spec.opset[""]``.

    Raises:
        UsageError: the spec declares a number of inputs the converter cannot handle.
    """
    import tensorflow as tf
    import tf2onnx

    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    inputs = spec.inputs(dataset)
    if len(inputs) != 1:
        raise UsageError(f"the keras converter handles single-input models; {spec.name} declares {len(inputs)}")
    tin = inputs[0]
    dims = [None if isinstance(d, str) else int(d) for d in tin.shape]
    signature = [tf.TensorSpec(dims, tf.as_dtype(tin.dtype), name=tin.name)]

    @tf.function(input_signature=signature)
    def serve(x: Any) -> Any:
        return model(x, training=False)

    onx, _ = tf2onnx.convert.from_function(serve, input_signature=signature, opset=int(spec.opset.get("", 17)))
    outputs = spec.outputs()
    rename_outputs(onx, [o.name for o in outputs])
    _rename_input(onx, tin.name)
    _name_dims(onx.graph.input[0], tin.shape)
    for graph_out, tout in zip(onx.graph.output, outputs):
        _name_dims(graph_out, tout.shape)
    return onx


def _rename_input(onx: Any, name: str) -> None:
    """tf2onnx names the input after the TensorSpec plus ':0'; give it exactly the spec's name."""
    graph_in = onx.graph.input[0]
    old = graph_in.name
    if old == name:
        return
    graph_in.name = name
    for node in onx.graph.node:
        for i, inp in enumerate(node.input):
            if inp == old:
                node.input[i] = name


def _name_dims(value_info: Any, shape: tuple[int | str, ...]) -> None:
    """Give dynamic dims the spec's symbolic names (``N``, ``T``) instead of tf2onnx's ``unk__12``."""
    dims = value_info.type.tensor_type.shape.dim
    if len(dims) != len(shape):
        log.warning("%s: graph rank %d differs from the spec's %s", value_info.name, len(dims), shape)
        return
    for dim, want in zip(dims, shape):
        if isinstance(want, str):
            dim.dim_param = want
