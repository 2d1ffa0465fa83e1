"""Edges of the decision rule (every score layout) and of the fail-safe outcomes (NO_RESULT documents, unavailable
models). These tests pin behaviours that mutation testing (``make mutation-score``, promises/mutation.toml) found
unpinned: each fails when the code it names is changed in the way the mutant changed it."""

from __future__ import annotations

from pathlib import Path

import medinfer
import numpy as np
import pytest

from ..helpers import tiny


def test_a_pinned_file_in_a_subfolder_is_part_of_a_valid_bundle(tmp_path: Path) -> None:
    """Real bundles pin ``plots/roc.png``: its folder is needed, not an unpinned extra."""
    bundle = tiny.build(tmp_path / "m", extra_files={"plots/roc.png": (b"\x89PNG fake", "plot"),
                                                     "plots/pr.png": (b"\x89PNG fake 2", "plot")})
    assert medinfer.load(bundle).predict(tiny.GOLDEN_X).labels.tolist() == ["positive", "positive", "negative"]

def test_which_column_scores_the_positive_label_in_every_layout() -> None:
    from medinfer.decision import score_column

    binary = "binary_classification"
    assert score_column(binary, ("neg", "pos"), "pos", ("N",)) is None  # one score per sample, no class axis
    assert score_column(binary, ("neg", "pos"), "pos", ("N", "C")) == 1  # a symbolic class axis: one per label
    assert score_column(binary, ("pos", "neg"), "pos", ("N", "C")) == 0
    assert score_column(binary, ("neg", "pos"), "pos", ("N", 1, 2)) == 1  # the LAST axis holds the classes
    assert score_column(binary, ("neg", "pos"), None, ("N", 2)) == 1  # no positive label: the last label
    assert score_column(binary, ("neg", "pos"), "other", ("N", 2)) == 1  # an unknown one: the last label too
    assert score_column("regression", None, None, ("N", 1)) is None
    assert score_column("multiclass_classification", ("a", "b", "c"), None, ("N", 3)) is None


def test_scores_of_keeps_what_is_already_one_score_per_sample() -> None:
    from medinfer.decision import scores_of

    flat = np.array([0.25, 0.75], np.float32)
    assert scores_of("regression", flat, None) is flat  # (N,) regression values pass unchanged
    column = np.array([[1.5], [2.5]], np.float32)
    np.testing.assert_array_equal(scores_of("regression", column, None), [1.5, 2.5])
    single_class = np.array([[0.4], [0.6]], np.float32)
    assert scores_of("multiclass_classification", single_class, None).shape == (2, 1)  # probabilities stay (N, C)
    np.testing.assert_array_equal(scores_of("binary_classification", column, None), [1.5, 2.5])


def test_decide_defaults_to_label_index_one_for_the_positive_class() -> None:
    from medinfer.decision import decide

    assert decide("binary_classification", np.array([0.9, 0.1, 0.5])).tolist() == [1, 0, 1]
    assert decide("binary_classification", np.array([0.6]), 0.7).tolist() == [0]
    assert decide("binary_classification", np.array([0.7]), 0.7).tolist() == [1]
    values = np.array([3.5, -1.0])
    assert decide("regression", values) is values

def test_no_result_as_a_document() -> None:
    out = medinfer.NoResult("timeout", "no result within 5 ms", "m", "1.0", "req-1", "DeadlineExceeded")
    assert out.to_dict() == {"outcome": "NO_RESULT", "reason": "timeout", "error": "DeadlineExceeded",
                             "message": "no result within 5 ms", "model": "m", "version": "1.0", "request_id": "req-1"}
    assert not out.ok and out.labels is None and out.scores is None


def test_an_unavailable_model_answers_no_result_naming_the_bundle_and_the_error(tmp_path: Path) -> None:
    bundle = tiny.build(tmp_path / "tiny_logistic")
    (bundle / "golden.npz").write_bytes(b"changed")
    model = medinfer.load(str(bundle) + "/", on_error="no_result")
    assert isinstance(model, medinfer.UnavailableModel) and not model.ok
    assert model.path == str(bundle) + "/" and model.name == "tiny_logistic" and model.version is None
    assert model.reason == "integrity" and isinstance(model.error, medinfer.IntegrityError)
    out = model.try_predict(tiny.GOLDEN_X)
    assert (out.reason, out.model, out.version, out.request_id, out.error) == \
        ("integrity", "tiny_logistic", None, None, "IntegrityError")
    assert out.message == f"model unavailable: {model.error}"
    with pytest.raises(medinfer.IntegrityError):
        model.predict(tiny.GOLDEN_X)
    from medinfer.failsafe import UnavailableModel

    plain = UnavailableModel("a/b/c", ValueError("boom"))
    assert plain.reason == "error" and plain.name == "c" and repr(plain) == "UnavailableModel('a/b/c', reason='error')"
    assert UnavailableModel("alone", ValueError()).name == "alone"  # no folder in the path
    assert UnavailableModel("models/CT_X//", ValueError()).name == "CT_X"  # only slashes are stripped


def test_a_new_watchdog_has_not_woken() -> None:
    from medinfer.watchdog import Watchdog

    assert Watchdog().wakeups == 0
