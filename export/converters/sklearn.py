"""scikit-learn → ONNX with skl2onnx (ZipMap off: a plain probability tensor; ZipMap costs ~19 % at batch 1)."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from medinfer.errors import UsageError

from . import register_converter
from .fixes import fix_string_normalizer_locale, rename_outputs

if TYPE_CHECKING:
    from ...train.spec import Dataset, ModelSpec


@register_converter("sklearn", tool="skl2onnx")
def convert(spec: ModelSpec, model: Any, dataset: Dataset) -> Any:
    """Convert a fitted scikit-learn estimator or pipeline at ``spec.opset``."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType, StringTensorType

    types = {"float32": FloatTensorType, "int64": Int64TensorType, "string": StringTensorType}
    initial = []
    for t in spec.inputs(dataset):
        dims = [None if isinstance(d, str) else d for d in t.shape]
        initial.append((t.name, types[t.dtype](dims)))
    model = onnx_equivalent(model)
    options = {id(model): {"zipmap": False}} if hasattr(model, "predict_proba") else None
    onx = convert_sklearn(model, initial_types=initial, options=options, target_opset=dict(spec.opset))
    fix_string_normalizer_locale(onx)
    rename_outputs(onx, [t.name for t in spec.outputs()])
    return onx


def onnx_equivalent(model: Any) -> Any:
    """``model``, or a copy whose text preprocessors are swapped for the vectorizer options they equal.

    skl2onnx refuses any custom ``preprocessor``. A preprocessor function may declare the built-in options it
    is equivalent to in ``fn.onnx_equivalent`` (``medinfer.train.text.simple_lower`` declares
    ``{"lowercase": True}``: it is exactly what the graph's StringNormalizer does); the copy sets those options
    instead. The fitted vocabulary and weights are untouched, and the parity gate still compares the converted
    graph with the original model.

    Raises:
        UsageError: a vectorizer has a custom preprocessor that declares no ONNX equivalent.
    """
    vectorizers = [est for est in _estimators(model) if getattr(est, "preprocessor", None) is not None
                   and hasattr(est, "vocabulary_")]
    if not vectorizers:
        return model
    for est in vectorizers:
        if not isinstance(getattr(est.preprocessor, "onnx_equivalent", None), dict):
            raise UsageError(
                f"{type(est).__name__} has a custom preprocessor {est.preprocessor!r} that skl2onnx cannot convert; "
                "give it an 'onnx_equivalent' dict of built-in options it equals, or use those options instead"
            )
    model = copy.deepcopy(model)
    for est in _estimators(model):
        equivalent = getattr(getattr(est, "preprocessor", None), "onnx_equivalent", None)
        if isinstance(equivalent, dict) and hasattr(est, "vocabulary_"):
            est.preprocessor = None
            for key, value in equivalent.items():
                setattr(est, key, value)
    return model


def _estimators(model: Any) -> list[Any]:
    """``model`` and every estimator nested in it (pipelines, column transformers, feature unions)."""
    found = [model]
    for attr in ("steps", "transformer_list", "transformers"):
        for item in getattr(model, attr, None) or ():
            if isinstance(item, tuple) and len(item) >= 2 and hasattr(item[1], "get_params"):
                found += _estimators(item[1])
    return found
