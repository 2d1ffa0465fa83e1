"""PyTorch -> ONNX with the dynamo exporter (``torch.onnx.export(..., dynamo=True)``, onnxscript underneath).

The contract's symbolic axes (the batch axis ``N``, any other declared name) become ``torch.export.Dim`` s shared by
name, so the graph keeps them dynamic; an ExportedProgram keeps the dynamic axes it was exported with. Inputs and
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
    target = model if program else model.eval()
    dims: dict[str, Any] = {}
    dynamic = None
    if not program:
        dynamic = {t.name: {axis: dims.setdefault(d, torch.export.Dim(d, min=1))
                            for axis, d in enumerate(t.shape) if isinstance(d, str)} for t in inputs}
        dynamic = {k: (v or None) for k, v in dynamic.items()}
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program_out = torch.onnx.export(target, args, None, dynamo=True, input_names=[t.name for t in inputs],
                                        output_names=outputs, dynamic_shapes=dynamic,
                                        opset_version=int(spec.opset.get("", 18)), verbose=False)
    onx = program_out.model_proto
    name_dynamic_dims(onx, {t.name: t.shape for t in inputs})
    return onx
