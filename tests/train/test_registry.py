"""The spec and converter registries: duplicates refused, unknown names answered with the closest, every spec
complete, every family converted."""

from __future__ import annotations

import pytest
from medinfer.errors import UnknownNameError, UsageError
from medinfer.export import converters
from medinfer.train import registry
from medinfer.train.spec import ModelSpec


def test_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(UnknownNameError, match=r"unknown model spec 'drug_activty_rf'; did you mean "
                                               r"'drug_activity_rf'\? \(\d+ known"):
        registry.get("drug_activty_rf")


def test_duplicates_are_refused() -> None:
    name = registry.names()[0]

    class Impostor(ModelSpec):
        pass

    Impostor.name = name
    with pytest.raises(UsageError, match="already registered.*not overwritten"):
        registry.register(Impostor)
    assert type(registry.get(name)) is not Impostor


def test_a_spec_without_a_name_is_refused() -> None:
    class Nameless(ModelSpec):
        pass

    with pytest.raises(UsageError, match="needs a class attribute 'name'"):
        registry.register(Nameless)


def test_converter_registry_refuses_a_second_converter_and_names_the_known() -> None:
    known = converters.converters()
    assert {"sklearn": "skl2onnx", "keras": "tf2onnx"}.items() <= {k: c.tool for k, c in known.items()}.items()

    def other(spec, model, dataset):  # pragma: no cover - never called
        raise AssertionError

    with pytest.raises(UsageError, match="converter family 'keras' is already registered"):
        converters.register_converter("keras", tool="other")(other)
    assert converters.get_converter("keras").tool == "tf2onnx"
    with pytest.raises(UnknownNameError, match="unknown converter family 'kerass'; did you mean 'keras'"):
        converters.get_converter("kerass")


@pytest.mark.parametrize("name", registry.names())
def test_every_spec_is_complete(name: str) -> None:
    """Every registered spec declares what the bundle needs (a new spec is checked without editing tests)."""
    spec = registry.get(name)
    assert spec.name == name
    assert spec.task in ("binary_classification", "multiclass_classification", "regression")
    assert spec.family in converters.converters()
    assert spec.card.intended_use and spec.card.limitations and spec.card.out_of_scope
    assert spec.seed_section
    outputs = [o.name for o in spec.outputs()]
    assert spec.score_output in outputs
    if spec.task != "regression":
        assert spec.labels and len(spec.labels) >= 2
    if spec.task == "binary_classification":
        assert spec.positive_label in spec.labels
        assert spec.threshold is None or 0 <= spec.threshold <= 1
    for option in spec.options:
        assert hasattr(type(spec), option), f"{name} declares option {option!r} without a default"
