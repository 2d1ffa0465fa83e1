"""Keras 3 → ONNX with tf2onnx, through ``tf.function`` (``from_keras`` fails on Keras 3: see the stack notes).

The spec's input contract gives the signature: symbolic dims (batch ``N``, time ``T``) stay dynamic in the graph,
fixed dims are fixed. Inputs and outputs are renamed to the spec's names and symbolic dims carry the spec's
names, so the graph reads like its manifest.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from medinfer.errors import UsageError

from ..canonical import canonical_names
from . import register_converter
from .fixes import rename_outputs

if TYPE_CHECKING:
    from medinfer.manifest import TensorSpec

    from ...train.spec import Dataset, ModelSpec

log = logging.getLogger(__name__)


@register_converter("keras", tool="tf2onnx")
def convert(spec: ModelSpec, model: Any, dataset: Dataset) -> Any:
    """Convert a fitted ``keras.Model`` to an ``onnx.ModelProto`` at ``spec.opset[""]``.

    tf2onnx's graph rewrites walk Python sets of tensor names, so which of two merged duplicates keeps its name
    (and the numbers in generated names) depends on the process's string-hash seed: the same model converted in
    two processes gave different bytes. The conversion therefore runs in a fresh child process with
    ``PYTHONHASHSEED=0`` on the model as saved by the spec (``medinfer.export.isolated``), with the graph's nodes
    put in tf2onnx's own name-keyed topological order around every optimizer (:func:`ordered_optimizers`), and the
    result's internal names and node order derived from its structure (``canonical.canonical_names``): the same
    bytes however and wherever the export runs.

    Raises:
        UsageError: the spec declares a number of inputs the converter cannot handle.
    """
    from medinfer.schema import to_json

    from ..isolated import convert_in_child

    inputs = spec.inputs(dataset)
    if len(inputs) != 1:
        raise UsageError(f"the keras converter handles single-input models; {spec.name} declares {len(inputs)}")
    job = {"input": to_json(inputs[0]), "outputs": to_json(spec.outputs()), "opset": int(spec.opset.get("", 17))}
    return convert_in_child(spec, model, "medinfer.export.converters.keras:convert_tensors", job)


def convert_tensors(model: Any, tin: TensorSpec, outputs: tuple[TensorSpec, ...], opset: int) -> Any:
    """tf2onnx through ``tf.function`` (the conversion itself; :func:`convert` runs it in a child process)."""
    import tensorflow as tf
    import tf2onnx

    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    dims = [None if isinstance(d, str) else int(d) for d in tin.shape]
    signature = [tf.TensorSpec(dims, tf.as_dtype(tin.dtype), name=tin.name)]

    @tf.function(input_signature=signature)
    def serve(x: Any) -> Any:
        return model(x, training=False)

    with ordered_optimizers():
        onx, _ = tf2onnx.convert.from_function(serve, input_signature=signature, opset=opset)
    rename_outputs(onx, [o.name for o in outputs])
    _rename_input(onx, tin.name)
    _name_dims(onx.graph.input[0], tin.shape)
    for graph_out, tout in zip(onx.graph.output, outputs):
        _name_dims(graph_out, tout.shape)
    return canonical_names(onx)


@contextlib.contextmanager
def ordered_optimizers() -> Iterator[None]:
    """Make tf2onnx's graph optimizers see (and leave) the nodes in a deterministic order.

    ``optimize_graph`` deep-copies the graph before each optimizer; the copy's sets of nodes iterate in memory-address
    order, so the node order an optimizer walks, which duplicate ``merge_duplication`` keeps and which numbers
    generated names get changed from process to process (seen: ``lstm_1/zeros`` vs ``lstm_1/zeros_1``,
    ``const_axes__82`` vs ``__136``). Each optimizer is wrapped to topologically sort the nodes (tf2onnx's sort,
    ties broken by name) before and after it runs; what an optimizer does is unchanged.
    """
    import tf2onnx.optimizer as opt

    original = getattr(opt, "_get_optimizers", None)  # tf2onnx has no public hook for this (pinned release)
    if original is None:  # another tf2onnx: canonical_names still makes the result canonical
        yield
        return

    def wrap(factory: Any) -> Any:
        class Ordered:
            def __init__(self) -> None:
                self._inner = factory()

            @property
            def graph_been_opt(self) -> bool:
                return bool(self._inner.graph_been_opt)

            def optimize(self, graph: Any, iteration: int) -> Any:
                graph.topological_sort(graph.get_nodes())
                out = self._inner.optimize(graph, iteration) or graph
                out.topological_sort(out.get_nodes())
                return out

        return Ordered

    wrapped = {name: wrap(factory) for name, factory in original().items()}
    opt._get_optimizers = lambda: wrapped  # noqa: SLF001
    try:
        yield
    finally:
        opt._get_optimizers = original  # noqa: SLF001


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
