"""scikit-learn → ONNX with skl2onnx (ZipMap off: a plain probability tensor; ZipMap costs ~19 % at batch 1)."""

from __future__ import annotations

from typing import Any

from .fixes import fix_string_normalizer_locale, rename_outputs


def convert(spec: Any, model: Any, dataset: Any) -> Any:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType, StringTensorType

    types = {"float32": FloatTensorType, "int64": Int64TensorType, "string": StringTensorType}
    initial = []
    for t in spec.inputs(dataset):
        dims = [None if isinstance(d, str) else d for d in t.shape]
        initial.append((t.name, types[t.dtype](dims)))
    options = {id(model): {"zipmap": False}} if hasattr(model, "predict_proba") else None
    onx = convert_sklearn(model, initial_types=initial, options=options, target_opset=dict(spec.opset))
    fix_string_normalizer_locale(onx)
    rename_outputs(onx, [t.name for t in spec.outputs()])
    return onx
