"""The fail-closed parity gate: an export whose graph disagrees with the native model writes nothing."""

from __future__ import annotations

import medinfer
import numpy as np
import pytest
from medinfer.train import registry


@pytest.mark.parametrize("name", registry.names())
def test_parity_gate_fails_closed(built, tmp_path, name: str) -> None:
    """A native model that disagrees with the graph must stop the export, and no bundle may appear."""
    import dataclasses

    from medinfer.export.bundle import export
    from medinfer.train.spec import ParityTolerance

    art, _ = built(name)
    strict = dataclasses.replace(art, spec=type(art.spec)())
    real = strict.spec.native_outputs

    def skewed(model, X):
        out = real(model, X)
        key = strict.spec.score_output
        out[key] = (out[key] + np.float32(0.01)).astype(out[key].dtype)
        return out

    strict.spec.native_outputs = skewed
    strict.spec.parity = ParityTolerance(atol=1e-4)
    with pytest.raises(medinfer.ParityError, match="(?s)parity gate FAILED.*max abs diff"):
        export(strict, tmp_path / "bundles")
    out = tmp_path / "bundles"
    assert not out.exists() or not any(out.iterdir())  # no bundle and no staging folder left behind


def _outputs(p: list[float], labels: list[int] | None = None) -> dict[str, np.ndarray]:
    probs = np.array([[1 - v, v] for v in p], dtype=np.float32)
    return {"label": np.asarray(labels if labels is not None else np.argmax(probs, axis=1), dtype=np.int64),
            "probabilities": probs}


@pytest.fixture
def spec():
    return registry.get("drug_activity_rf")  # binary, labels (inactive, active), atol 1e-5, no flips allowed


def test_an_output_beyond_tolerance_fails(spec) -> None:
    from medinfer.export.parity import gate

    native = _outputs([0.1, 0.7, 0.9])
    with pytest.raises(medinfer.ParityError, match="output 'probabilities' max abs diff 0.01"):
        gate(spec, {"heldout": (native, _outputs([0.11, 0.7, 0.9]))}, threshold=0.5)


def test_a_decision_straddling_the_threshold_fails_within_tolerance(spec) -> None:
    """2e-7 apart (far inside atol 1e-5) but on both sides of the operating point: a flipped decision."""
    from medinfer.export.parity import gate

    native = _outputs([0.1, 0.5000001, 0.9])
    exported = _outputs([0.1, 0.4999999, 0.9], labels=[0, 1, 1])  # the label output agrees: only the decision flips
    with pytest.raises(medinfer.ParityError, match="1 decisions at the operating threshold differ"):
        gate(spec, {"heldout": (native, exported)}, threshold=0.5)
    gate(spec, {"heldout": (native, exported)}, threshold=0.3)  # away from the threshold it is no flip


def test_a_flipped_label_output_fails(spec) -> None:
    from medinfer.export.parity import gate

    native = _outputs([0.1, 0.7, 0.9])
    with pytest.raises(medinfer.ParityError, match="output 'label' differs from the native model on 1 samples"):
        gate(spec, {"heldout": (native, _outputs([0.1, 0.7, 0.9], labels=[0, 0, 1]))}, threshold=0.5)


def test_a_shape_mismatch_fails(spec) -> None:
    from medinfer.export.parity import gate

    native = _outputs([0.1, 0.7])
    exported = {**native, "probabilities": native["probabilities"].reshape(-1)}
    with pytest.raises(medinfer.ParityError, match="has shape"):
        gate(spec, {"heldout": (native, exported)}, threshold=0.5)


def test_every_failure_is_listed_at_once(spec) -> None:
    from medinfer.export.parity import gate

    native = _outputs([0.1, 0.7])
    with pytest.raises(medinfer.ParityError, match=r"(?s)2 problem\(s\).*heldout.*edge"):
        gate(spec, {"heldout": (native, _outputs([0.2, 0.7])), "edge": (native, _outputs([0.1, 0.6]))},
             threshold=0.5)


def test_a_shipped_profile_that_differs_fails_the_export(spec, tmp_path) -> None:
    """gate_profiles compares each graph under each shipped profile with its reference: a graph whose output
    moved (here: a reference that disagrees) is refused."""
    from medinfer.export.parity import gate_profiles
    from medinfer.manifest import SessionProfile

    from ..helpers import tiny

    graph = tiny.model_bytes()
    x = tiny.GOLDEN_X
    good = {"probabilities": tiny.reference(x), "label": np.argmax(tiny.reference(x), axis=1).astype(np.int64)}
    profile = SessionProfile(intra_op_num_threads=1, large_batch_from=2, large_batch={"intra_op_num_threads": 2})
    report = gate_profiles(spec, {"default": graph}, profile, "x", x, {"default": good},
                           {"default": spec.parity}, 0.5)
    assert set(report) == {"default/batch1", "default/large_batch"}
    moved = {**good, "probabilities": good["probabilities"] + np.float32(0.001)}
    with pytest.raises(medinfer.ParityError, match="shipped session profiles"):
        gate_profiles(spec, {"default": graph}, profile, "x", x, {"default": moved}, {"default": spec.parity}, 0.5)


@pytest.mark.parametrize("name", registry.names())
def test_a_domain_score_that_differs_from_the_native_guard_fails_closed(built, tmp_path, name: str) -> None:
    """The gate covers the domain output too: a graph whose domain_score drifts from the native guard writes
    nothing."""
    import copy
    import dataclasses

    from medinfer.export.bundle import export

    art, _ = built(name)
    guard = copy.copy(art.domain)
    real = guard.score
    guard.score = lambda X: real(X) + np.float32(0.05)  # the native reference moves, the graph does not
    with pytest.raises(medinfer.ParityError, match="domain_score"):
        export(dataclasses.replace(art, domain=guard), tmp_path / "bundles")
    assert not (tmp_path / "bundles").exists() or not any((tmp_path / "bundles").iterdir())
