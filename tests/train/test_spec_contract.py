"""The spec contract: every hook declared with a default, no per-run state on the spec instance."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from medinfer.train import registry
from medinfer.train.spec import Dataset, ModelSpec, OperatingPoint

HOOKS = ("load_data", "build", "fit", "native_outputs", "inputs", "outputs", "evaluate", "save_native", "load_native",
         "frameworks", "native_predictors", "operating_point", "parity_sets", "plots", "configure")


def test_every_hook_is_declared_on_the_base_with_a_docstring() -> None:
    for hook in HOOKS:
        assert callable(getattr(ModelSpec, hook, None)), hook
        assert inspect.getdoc(getattr(ModelSpec, hook)), f"{hook} has no docstring"


def _dataset(**extra) -> Dataset:
    return Dataset(X_train=np.zeros((2, 1)), y_train=np.zeros(2), X_test=np.zeros((2, 1)), y_test=np.zeros(2),
                   sources=(), split={}, **extra)


def test_glucose_evaluates_on_a_fresh_instance() -> None:
    """The persistence baseline comes from the inputs, not from state left by load_data on the same instance."""
    pytest.importorskip("sklearn")
    spec = registry.get("glucose_lstm")
    X = np.zeros((40, 6, 10), np.float32)
    X[:, -1, 0] = np.linspace(80, 200, 40)
    y = X[:, -1, 0] + 10
    metrics = spec.evaluate(X[:, -1, 0] + 5, y, X, None)
    assert metrics["heldout"]["rmse"]["value"] == pytest.approx(5.0)
    assert metrics["baseline"]["heldout"]["rmse"]["value"] == pytest.approx(10.0)


def test_the_cnn_operating_point_comes_from_the_dataset_not_the_spec() -> None:
    spec = registry.get("lung_nodule_cnn")
    before = type(spec).threshold
    scores = np.array([0.1, 0.2, 0.35, 0.8, 0.9, 0.95])
    y_val = np.array([0, 0, 1, 1, 1, 1])

    class Fixed:  # a "model" whose native outputs are the scores above
        pass

    spec.native_outputs = lambda model, X: {"probability": scores[:, None].astype(np.float32)}
    point = spec.operating_point(Fixed(), _dataset(X_val=np.zeros((6, 1)), y_val=y_val))
    assert isinstance(point, OperatingPoint) and 0.2 < point.threshold <= 0.35 and "sensitivity" in point.rationale
    assert type(spec).threshold == before and spec.threshold == before  # nothing written back onto the spec
    assert spec.operating_point(Fixed(), _dataset()).threshold == before  # no validation part: the default


def test_the_base_spec_knows_no_variant_kind_and_the_variants_read_the_specs_settings() -> None:
    """What only one kind of model needs (the CT's whole-slice graphs, a CT window folded into int8) is declared by
    that spec (``variant_settings``), not carried by every spec."""
    assert not [name for name in vars(ModelSpec) if name.startswith(("slice_", "int8_"))]
    pytest.importorskip("onnx")
    from medinfer.export.variants import VARIANTS, settings
    from medinfer.train.variants import Int8, WholeSlice

    assert {"int8", "slice", "slice_int8"} <= set(VARIANTS.names())
    lung = registry.get("lung_nodule_cnn")
    assert settings(lung, "int8", Int8()).fold_window == ("ct_windows", "window_clip")
    assert settings(lung, "slice", WholeSlice()) == WholeSlice()
    assert set(lung.variants) <= set(VARIANTS.names())  # every kind a spec names has a registered builder
