"""PyTorch -> ONNX with the dynamo exporter (``torch.onnx.export(..., dynamo=True)``, onnxscript underneath).

The contract's symbolic axes stay dynamic in the graph (:func:`dynamic_axes`); an ExportedProgram keeps the dynamic
axes it was exported with. Inputs and
outputs get the contract's names.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from . import register_converter
from .fixes import name_dynamic_dims

if TYPE_CHECKING:
    from ...train.spec import Dataset, ModelSpec

EXAMPLE_ROWS = 2  # example inputs: two samples, so the exporter cannot specialise the batch axis to 1


@register_converter("torch", tool="torch")
def convert(spec: ModelSpec, model: Any, dataset: Dataset) -> Any:
    """Convert a PyTorch model (an ``nn.Module`` or an ExportedProgram) at ``spec.opset[""]``."""
    import torch

    from ..feeds import is_multi, rows

    inputs = spec.inputs(dataset)
    X = rows(dataset.X_test, 0, EXAMPLE_ROWS)
    arrays = X if is_multi(X) else {inputs[0].name: X}
    args = tuple(torch.from_numpy(np.ascontiguousarray(arrays[t.name])) for t in inputs)
    outputs = [o.name for o in spec.outputs()]
    program = isinstance(model, torch.export.ExportedProgram)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)

    def to_onnx(target: Any, dynamic: Any) -> Any:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            return torch.onnx.export(target, args, None, dynamo=True, input_names=[t.name for t in inputs],
                                     output_names=outputs, dynamic_shapes=dynamic,
                                     opset_version=int(spec.opset.get("", 18)), verbose=False)

    if program:
        try:  # the program's own dynamic axes
            program_out = to_onnx(model, None)
        except Exception:  # noqa: BLE001 - a loaded program with derived axes (4*h) fails here (torch 2.13):
            program_out = to_onnx(torch.export.export(model.module(), args, dynamic_shapes=dynamic_axes(inputs)), None)
    else:
        program_out = to_onnx(model.eval(), dynamic_axes(inputs))
    onx = program_out.model_proto
    name_dynamic_dims(onx, {t.name: t.shape for t in inputs})
    return onx


def dynamic_axes(inputs: Any) -> list[dict[int, Any] | None]:
    """``dynamic_shapes`` for the contract's inputs, by position: the batch axis ``N`` one shared ``Dim`` (so a
    model that fixes its batch fails here instead of shipping a graph for one batch size), every other symbolic axis
    ``Dim.AUTO`` (torch finds its constraints itself, e.g. a UNet's multiples of 4)."""
    import torch

    batch = torch.export.Dim("N", min=1)
    axes = []
    for t in inputs:
        dims = {axis: (batch if d == "N" else torch.export.Dim.AUTO) for axis, d in enumerate(t.shape)
                if isinstance(d, str)}
        axes.append(dims or None)
    return axes
