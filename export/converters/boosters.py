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
    exact_lightgbm_thresholds(onx, getattr(model, "booster_", model))
    return _finish(onx, spec, dataset)


def _floor32(t: float) -> float:
    """The largest float32 <= ``t``: for every float32 x, ``x <= t`` exactly when ``x <= _floor32(t)``."""
    import numpy as np

    v = np.float32(t)
    return float(np.nextafter(v, np.float32(-np.inf)) if float(v) > t else v)


def exact_lightgbm_thresholds(onx: Any, booster: Any) -> int:
    """LightGBM splits on double thresholds (``x <= t`` with the float32 input widened to double); onnxmltools
    writes them rounded to the NEAREST float32, which flips the decision of an input equal to a threshold rounded
    up — a different leaf, and probabilities off by a whole leaf value (seen on the drug descriptors, whose values
    repeat). Each ``BRANCH_LEQ`` node's threshold is set to the largest float32 not above LightGBM's double one,
    which gives every float32 input the native model's branch. Nodes are matched per tree by feature and rounded
    value; returns how many thresholds changed.

    Raises:
        UsageError: a node whose threshold is not one of its tree's LightGBM thresholds (a converter change).
    """
    import numpy as np
    from onnx import helper

    trees: dict[int, dict[tuple[int, float], set[float]]] = {}
    for i, info in enumerate(booster.dump_model()["tree_info"]):
        table = trees.setdefault(i, {})
        stack = [info["tree_structure"]]
        while stack:
            node = stack.pop()
            if "split_feature" not in node:
                continue
            if node.get("decision_type", "<=") == "<=":
                t = float(node["threshold"])
                table.setdefault((int(node["split_feature"]), float(np.float32(t))), set()).add(_floor32(t))
            stack += [node["left_child"], node["right_child"]]
    changed = 0
    for op in onx.graph.node:
        if not op.op_type.startswith("TreeEnsemble"):
            continue
        attrs = {a.name: a for a in op.attribute}
        if "nodes_values" not in attrs:
            continue
        modes = [m.decode() for m in attrs["nodes_modes"].strings]
        values = list(attrs["nodes_values"].floats)
        for k, (tree, feature, mode) in enumerate(zip(attrs["nodes_treeids"].ints, attrs["nodes_featureids"].ints,
                                                      modes)):
            if mode != "BRANCH_LEQ":
                continue
            floors = trees.get(int(tree), {}).get((int(feature), float(np.float32(values[k]))))
            if not floors or len(floors) != 1:
                raise UsageError(f"LightGBM tree {tree}: no single native threshold for feature {feature} at "
                                 f"{values[k]!r} (onnxmltools changed how it writes trees?)")
            (floor,) = floors
            if floor != values[k]:
                values[k], changed = floor, changed + 1
        op.attribute.remove(attrs["nodes_values"])
        op.attribute.append(helper.make_attribute("nodes_values", values))
    return changed


@register_converter("xgboost", tool="onnxmltools")
def convert_xgboost(spec: ModelSpec, model: Any, dataset: Dataset) -> Any:
    import copy

    from onnxmltools import convert_xgboost as convert

    obj = copy.deepcopy(model)
    booster = obj.get_booster()
    booster.feature_names = None  # onnxmltools reads features as f0, f1, ...: names would not match
    onx = convert(obj, initial_types=_initial_types(spec, dataset), target_opset=OPSET)
    return _finish(onx, spec, dataset)
