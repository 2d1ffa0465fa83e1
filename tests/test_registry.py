from __future__ import annotations

import pytest
from medinfer.train import registry
from medinfer.train.spec import ModelSpec


def test_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(registry.RegistryError, match=r"no model spec named 'drug_activty_rf'; did you mean "
                                                     r"'drug_activity_rf'\? \(\d+ registered"):
        registry.get("drug_activty_rf")


def test_duplicates_are_refused() -> None:
    name = registry.names()[0]

    class Impostor(ModelSpec):
        pass

    Impostor.name = name
    with pytest.raises(registry.RegistryError, match="already registered.*not overwritten"):
        registry.register(Impostor)
    assert type(registry.get(name)) is not Impostor


def test_a_spec_without_a_name_is_refused() -> None:
    class Nameless(ModelSpec):
        pass

    with pytest.raises(registry.RegistryError, match="needs a class attribute 'name'"):
        registry.register(Nameless)


@pytest.mark.parametrize("name", registry.names())
def test_every_spec_is_complete(name: str) -> None:
    """Every registered spec declares what the bundle needs (a new spec is checked without editing tests)."""
    spec = registry.get(name)
    assert spec.name == name
    assert spec.task in ("binary_classification", "multiclass_classification", "regression")
    assert spec.family in ("sklearn", "keras")
    assert spec.card.intended_use and spec.card.limitations and spec.card.out_of_scope
    assert spec.seed_section
    outputs = [o.name for o in spec.outputs()]
    assert spec.score_output in outputs
    if spec.task != "regression":
        assert spec.labels and len(spec.labels) >= 2
    if spec.task == "binary_classification":
        assert spec.positive_label in spec.labels and 0 <= spec.threshold <= 1
