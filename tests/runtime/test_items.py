"""Per-item answers (issue 26): ``Model.predict(x, on_error="item")`` answers each valid item of a batch and gives
each invalid or refused item its own typed NoResult, in order; the default (``on_error="raise"``) keeps one answer
for the call or raises; audit records, deadlines and the micro-batcher keep each item's outcome."""

from __future__ import annotations

import json
from pathlib import Path

import medinfer
import numpy as np
import pytest
from medinfer.fleet.batching import MicroBatcher
from medinfer.items import ItemResults

from ..helpers import tiny

INSIDE = np.array([[1.0, 1.0, 1.0], [0.5, -0.5, 0.0]], np.float32)
OUTSIDE = np.array([5.0, 5.0, 5.0], np.float32)  # domain score 2.5 > threshold 1
NAN = np.array([np.nan, 0.0, 0.0], np.float32)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.build_domain(tmp_path_factory.mktemp("items") / "tiny_domain", threshold=1.0)


def _mixed() -> np.ndarray:
    return np.stack([INSIDE[0], NAN, OUTSIDE, INSIDE[1]])


def test_a_mixed_batch_answers_its_valid_items_and_refuses_each_other_one(guarded: Path) -> None:
    model = medinfer.load(guarded, out_of_domain="no_result")
    got = model.predict(_mixed(), on_error="item")
    assert isinstance(got, ItemResults) and len(got) == 4 and got.ok.tolist() == [True, False, False, True]
    kinds = [type(item).__name__ for item in got]
    assert kinds == ["Prediction", "NoResult", "NoResult", "Prediction"]
    assert (got[1].reason, got[1].index, got[1].error) == ("input", 1, "InputError") and "NaN" in got[1].message
    assert (got[2].reason, got[2].index) == ("out_of_domain", 2) and "domain score 2.5" in got[2].message
    expected = tiny.reference(INSIDE)[:, 1]  # the valid items' answers equal the model's on them alone
    np.testing.assert_allclose(got.scores[[0, 3]], expected, rtol=1e-6)
    assert np.isnan(got.scores[[1, 2]]).all() and got.labels[1] is None and got.labels[2] is None
    assert list(got.labels[[0, 3]]) == list(model.predict(INSIDE).labels)
    assert got.in_domain.tolist() == [True, None, None, True]
    items = got.to_dict()["items"]
    assert [i["status"] for i in items] == ["ok", "no_result", "no_result", "ok"] and items[2]["reason"] == \
        "out_of_domain"
    with pytest.raises(medinfer.InputError, match="NaN"):
        got.raise_first()  # the first refusal as it was raised


def test_the_default_still_answers_the_whole_call_or_raises(guarded: Path) -> None:
    model = medinfer.load(guarded, out_of_domain="no_result")
    with pytest.raises(medinfer.InputError, match="NaN"):
        model.predict(_mixed())
    assert isinstance(model.predict(INSIDE), medinfer.Prediction)
    with pytest.raises(medinfer.UnknownNameError, match="did you mean 'item'"):
        model.predict(INSIDE, on_error="itme")


def test_under_flag_an_outsider_is_answered_and_flagged(guarded: Path) -> None:
    got = medinfer.load(guarded).predict(np.stack([INSIDE[0], OUTSIDE]), on_error="item")
    assert got.all_ok and got.in_domain.tolist() == [True, False]
    assert got.prediction.in_domain.tolist() == [True, False]


def test_an_item_without_information_gets_no_information(tmp_path: Path) -> None:
    model = medinfer.load(tiny.build_evidence(tmp_path / "ev"))
    x = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [-1.0, 0.0, 4.5]], np.float32)
    with pytest.raises(medinfer.NoInformationError):
        model.predict(x)
    got = model.predict(x, on_error="item")
    assert got.ok.tolist() == [True, False, True] and got[1].reason == "no_information"
    np.testing.assert_allclose(got.scores[[0, 2]], tiny.reference(x[[0, 2]])[:, 1], rtol=1e-6)


def test_text_items_each_get_their_answer(tmp_path: Path) -> None:
    model = medinfer.load(tiny.build_text(tmp_path / "text"))
    got = model.predict(["normal", "Effusion", 42, "\ud800", "NORMAL"], on_error="item")
    assert got.ok.tolist() == [True, True, False, False, True]
    assert (got[2].reason, got[3].reason) == ("input_type", "input")
    assert list(got.labels[[0, 1, 4]]) == ["normal", "abnormal", "normal"]


def test_sequences_of_any_length_and_one_of_the_wrong_width(tmp_path: Path) -> None:
    model = medinfer.load(tiny.build_sequence(tmp_path / "seq"))
    items = [np.full((8, 2), 0.8, np.float32), np.full((12, 2), 1.2, np.float32), np.ones((8, 3), np.float32),
             np.full((30, 2), 3.0, np.float32)]
    got = model.predict(items, on_error="item")
    assert got.ok.tolist() == [True, True, False, True] and "3 features per time step" in got[2].message
    np.testing.assert_allclose(got.scores[[0, 1, 3]], [0.8, 1.2, 3.0], rtol=1e-6)


def test_columns_and_data_frames_are_cut_by_row(guarded: Path) -> None:
    model = medinfer.load(guarded)
    columns = {name: np.array(values, np.float32) for name, values in
               {"alpha": [1.0, 50.0, 0.5], "beta": [1.0, 0.0, -0.5], "gamma": [1.0, 0.0, 0.0]}.items()}
    got = model.predict(columns, on_error="item")
    assert got.ok.tolist() == [True, False, True] and "outside the declared range" in got[1].message
    pd = pytest.importorskip("pandas")
    assert model.predict(pd.DataFrame(columns), on_error="item").ok.tolist() == [True, False, True]


def test_one_sample_is_one_item(guarded: Path) -> None:
    model = medinfer.load(guarded)
    assert len(model.predict(INSIDE[0], on_error="item")) == 1
    bad = model.predict(NAN, on_error="item")
    assert len(bad) == 1 and bad[0].reason == "input" and bad.prediction is None


def test_the_audit_trail_records_the_answered_items_and_each_refusal(guarded: Path, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    model = medinfer.load(guarded, out_of_domain="no_result", audit=log)
    got = model.predict(_mixed(), on_error="item", request_id="worklist-7")
    assert got.ok.sum() == 2
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["status"], r.get("reason"), r["request_id"]) for r in records] == [
        ("ok", None, "worklist-7"), ("no_result", "input", "worklist-7"), ("no_result", "out_of_domain", "worklist-7")]
    assert records[0]["output"]["n"] == 2
    assert medinfer.verify_log(log).ok


def test_a_deadline_refuses_every_item_it_cuts(tmp_path: Path) -> None:
    # no self-test: it would run the whole slow graph once (minutes under emulation, make test-arm)
    model = medinfer.load(tiny.build(tmp_path / "slow", slow=400), self_test=False)
    got = model.predict(np.zeros((4, 3), np.float32), on_error="item", deadline_ms=0.5)
    assert not got.ok.any() and {r.reason for r in got.no_results} == {"timeout"}


def test_a_run_that_fails_for_the_batch_is_retried_item_by_item(guarded: Path, monkeypatch) -> None:
    model = medinfer.load(guarded)
    real = model._run_batch

    def refuse_batches(feeds, options):
        if len(next(iter(feeds.values()))) > 1:
            raise RuntimeError("a failure only the joined batch meets")
        return real(feeds, options)

    monkeypatch.setattr(model, "_run_batch", refuse_batches)
    got = model.predict(np.concatenate([INSIDE, INSIDE]), on_error="item")
    assert got.all_ok and len(got) == 4


def test_the_micro_batcher_keeps_each_request_s_answer(guarded: Path) -> None:
    model = medinfer.load(guarded, out_of_domain="no_result")
    with MicroBatcher(model, max_batch=8, max_wait_ms=50) as batcher:
        with pytest.raises(medinfer.InputError, match="NaN"):
            batcher.submit(NAN)  # validated in the caller's thread
        futures = [batcher.submit(INSIDE[0]), batcher.submit(OUTSIDE), batcher.submit(INSIDE[1])]
        first, third = futures[0].result(10), futures[2].result(10)
        with pytest.raises(medinfer.OutOfDomainError):
            futures[1].result(10)
    np.testing.assert_allclose([first.score, third.score], tiny.reference(INSIDE)[:, 1], rtol=1e-6)


def test_a_whole_slice_variant_is_not_cut_into_items(tmp_path: Path) -> None:
    from ..helpers import tiny_cnn

    model = medinfer.load(tiny_cnn.build(tmp_path / "cnn"), variant="slice")
    x = {"hu": tiny_cnn.ct_image((124, 148))[None, :, :, None], "stride_cells": np.array([3])}
    with pytest.raises(medinfer.UsageError, match="windows of one image"):
        model.predict(x, on_error="item")


def test_a_batch_beyond_max_batch_runs_in_calls_within_the_bound(guarded: Path, monkeypatch) -> None:
    model = medinfer.load(guarded)
    monkeypatch.setattr(model, "_max_batch", 3)  # the bundle's profile.max_batch, as loaded
    sizes = []
    real = model._run_batch
    monkeypatch.setattr(model, "_run_batch", lambda feeds, options: sizes.append(len(feeds["x"])) or
                        real(feeds, options))
    got = model.predict(np.tile(INSIDE, (4, 1)), on_error="item")
    assert got.all_ok and len(got) == 8 and max(sizes) <= 3
