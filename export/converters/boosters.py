"""Gradient-boosted trees -> ONNX with onnxmltools: LightGBM (a ``Booster`` or ``LGBMClassifier``/``Regressor``) and
XGBoost (``XGBClassifier``/``XGBRegressor``), ZipMap off; outputs named as the spec's (``label`` + ``probabilities``
for classifiers, ``prediction`` for regressors), every dynamic axis named (onnxmltools declares LightGBM's label
output as shape [1]: corrected to (N,))."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from medinfer.errors import UsageError

from . import register_converter
from .fixes import name_dynamic_dims, rename_outputs

if TYPE_CHECKING:
    from ...train.spec import Dataset, ModelSpec

OPSET = 15  # the highest main-domain opset onnxmltools 1.16 converts trees at


def _initial_types(spec: ModelSpec, dataset: Dataset) -> list[Any]:
    from onnxmltools.convert.common.data_types import FloatTensorType

    inputs = spec.inputs(dataset)
    if len(inputs) != 1 or inputs[0].dtype != "float32" or len(inputs[0].shape) != 2:
        raise UsageError(f"a gradient-boosted tree model takes one float32 (N, F) input; {spec.name} declares "
                         f"{[(t.name, t.dtype, t.shape) for t in inputs]}")
    return [(inputs[0].name, FloatTensorType([None, int(inputs[0].shape[1])]))]


def _finish(onx: Any, spec: ModelSpec, dataset: Dataset) -> Any:
    rename_outputs(onx, [o.name for o in spec.outputs()])
    for out in onx.graph.output:
        dims = out.type.tensor_type.shape.dim
        if out.name == getattr(spec, "label_output", None) and len(dims) == 1:
            dims[0].ClearField("dim_value")
    name_dynamic_dims(onx, {t.name: t.shape for t in spec.inputs(dataset)})
    return onx


@register_converter("lightgbm", tool="onnxmltools")
def convert_lightgbm(spec: ModelSpec, model: Any, dataset: Dataset) -> Any:
    from onnxmltools import convert_lightgbm as convert

    zipmap = {"zipmap": False} if spec.task != "regression" else {}
    onx = convert(model, initial_types=_initial_types(spec, dataset), target_opset=OPSET, **zipmap)
    return _finish(onx, spec, dataset)


@register_converter("xgboost", tool="onnxmltools")
def convert_xgboost(spec: ModelSpec, model: Any, dataset: Dataset) -> Any:
    import copy

    from onnxmltools import convert_xgboost as convert

    obj = copy.deepcopy(model)
    booster = obj.get_booster()
    booster.feature_names = None  # onnxmltools reads features as f0, f1, ...: names would not match
    onx = convert(obj, initial_types=_initial_types(spec, dataset), target_opset=OPSET)
    return _finish(onx, spec, dataset)
