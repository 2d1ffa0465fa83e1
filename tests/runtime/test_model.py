"""The runtime core on tiny bundles built in-process (no TensorFlow, no scikit-learn)."""

from __future__ import annotations

import json
from pathlib import Path

import medinfer
import numpy as np
import pytest
from medinfer.integrity import sha256_file

from ..helpers import tiny
from ..helpers.fields import MakeBundle


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 0x01
    path.write_bytes(bytes(data))


def test_load_and_predict_batch(tiny_bundle_ro: Path) -> None:
    model = medinfer.load(tiny_bundle_ro)
    x = np.array([[1, 2, 3], [3, 2, 1], [0, 0, 0]], dtype=np.float32)
    pred = model.predict(x)
    ref = tiny.reference(x)
    np.testing.assert_allclose(pred.scores, ref[:, 1], atol=1e-6)
    assert list(pred.labels) == ["positive" if p >= 0.5 else "negative" for p in ref[:, 1]]
    assert pred.model == "tiny_logistic" and pred.version == "0.0.1"
    assert pred.model_sha256 == sha256_file(tiny_bundle_ro / "model.onnx")
    assert pred.provider == "CPUExecutionProvider"
    assert not pred.single and len(pred) == 3


def test_single_sample_matches_batch(tiny_bundle_ro: Path) -> None:
    model = medinfer.load(tiny_bundle_ro)
    x = np.array([0.5, -1.0, 2.0], dtype=np.float32)
    one = model.predict(x)
    batch = model.predict(x[None])
    assert one.single
    assert one.label == batch.labels[0]
    assert one.score == pytest.approx(float(batch.scores[0]))


def test_safe_casting_and_lists(tiny_bundle_ro: Path) -> None:
    model = medinfer.load(tiny_bundle_ro)
    ref = model.predict(np.array([[1, 2, 3]], dtype=np.float32)).scores
    np.testing.assert_array_equal(model.predict(np.array([[1, 2, 3]], dtype=np.int16)).scores, ref)
    with pytest.raises(medinfer.InputTypeError, match="float64.*float32.*lose precision"):
        model.predict(np.array([[1, 2, 3]], dtype=np.float64))
    relaxed = medinfer.load(tiny_bundle_ro, cast="same_kind")
    np.testing.assert_array_equal(relaxed.predict(np.array([[1.0, 2.0, 3.0]])).scores, ref)
    # Nested Python lists have no dtype of their own: read into float32 like a JSON file (issue 32: they were
    # refused although the docstring offered them); integers only where float32 holds them exactly.
    np.testing.assert_array_equal(model.predict([[1, 2, 3]]).scores, ref)
    np.testing.assert_array_equal(model.predict([[1.0, 2.0, 3.0]]).scores, ref)
    np.testing.assert_array_equal(model.predict([[0.1, 0.2, 0.3]]).scores,
                                  model.predict(np.array([[0.1, 0.2, 0.3]], dtype=np.float32)).scores)
    with pytest.raises(medinfer.InputTypeError, match="int64"):
        model.predict([[2**24 + 1, 2, 3]])  # not exact in float32: refused, not rounded
    with pytest.raises(medinfer.InputTypeError, match="bool"):
        model.predict([[True, False, True]])
    with pytest.raises(medinfer.InputError, match="inf"):
        model.predict([[1e39, 2.0, 3.0]])  # beyond float32: infinite after reading, refused
    with pytest.raises(medinfer.InputTypeError, match="ragged"):
        model.predict([[1.0, 2.0], [1.0]])
    with pytest.raises(medinfer.InputTypeError, match="expects numbers"):
        model.predict("1,2,3")


@pytest.mark.parametrize(
    ("x", "error", "match"),
    [
        (np.zeros((2, 4), np.float32), medinfer.InputError, "X has 4 features, but tiny_logistic is expecting 3"),
        (np.zeros((2, 3, 1), np.float32), medinfer.InputError, r"rank 3.*expects rank 2"),
        (np.zeros((0, 3), np.float32), medinfer.InputError, "empty batch"),
        (np.array([[1, np.nan, 2]], np.float32), medinfer.InputError, r"1 NaN.*index \(0, 1\)"),
        (np.array([[1, np.inf, 2]], np.float32), medinfer.InputError, "1 infinite"),
        (np.array([[1, 11, 2]], np.float32), medinfer.InputError, r"outside the declared range \[-10, 10\] a.u."),
        (np.array([[True, False, True]]), medinfer.InputTypeError, "dtype bool"),
        ({"wrong": [1, 2]}, medinfer.InputError, r"3 missing \(.alpha.*1 not in the model \(.wrong.\)"),
    ],
)
def test_bad_input_is_refused_with_typed_error(tiny_bundle_ro: Path, x, error, match) -> None:
    model = medinfer.load(tiny_bundle_ro)
    with pytest.raises(error, match=match) as info:
        model.predict(x)
    assert isinstance(info.value, ValueError)  # callers can catch the builtin too


def test_named_columns(tiny_bundle_ro: Path) -> None:
    model = medinfer.load(tiny_bundle_ro)
    cols = {"gamma": [3.0, 1.0], "alpha": [1.0, 3.0], "beta": [2.0, 2.0]}
    by_name = model.predict({k: np.asarray(v, np.float32) for k, v in cols.items()})
    by_array = model.predict(np.array([[1, 2, 3], [3, 2, 1]], np.float32))
    np.testing.assert_array_equal(by_name.scores, by_array.scores)
    with pytest.raises(medinfer.InputError, match=r"1 missing \('gamma'\).*1 not in the model \('delta'\)"):
        model.predict({"alpha": [1.0], "beta": [1.0], "delta": [1.0]})


def test_non_contiguous_input(tiny_bundle_ro: Path) -> None:
    model = medinfer.load(tiny_bundle_ro)
    x = np.asfortranarray(np.arange(12, dtype=np.float32).reshape(4, 3) / 10)
    np.testing.assert_allclose(model.predict(x).scores, tiny.reference(x)[:, 1], atol=1e-6)


@pytest.mark.parametrize("name", ["model.onnx", "manifest.json", "model_card.md", "golden.npz"])
@pytest.mark.parametrize("where", [0, 97, -1])
def test_one_byte_change_of_any_file_is_refused(tiny_bundle: Path, name: str, where: int) -> None:
    path = tiny_bundle / name
    _flip_byte(path, where if where >= 0 else path.stat().st_size - 1)
    with pytest.raises((medinfer.IntegrityError, medinfer.ManifestError)):
        medinfer.load(tiny_bundle)


def test_integrity_error_names_the_file(tiny_bundle: Path) -> None:
    _flip_byte(tiny_bundle / "model.onnx", 200)
    with pytest.raises(medinfer.IntegrityError, match="file 'model.onnx' has sha256"):
        medinfer.load(tiny_bundle)


def test_missing_and_unpinned_files_are_refused(tiny_bundle: Path) -> None:
    (tiny_bundle / "extra.onnx").write_bytes(b"evil")
    with pytest.raises(medinfer.IntegrityError, match="'extra.onnx' is not pinned"):
        medinfer.load(tiny_bundle)
    (tiny_bundle / "extra.onnx").unlink()
    (tiny_bundle / "golden.npz").unlink()
    with pytest.raises(medinfer.IntegrityError, match="'golden.npz' is pinned by the manifest but missing"):
        medinfer.load(tiny_bundle)


def _edit_manifest(bundle: Path, edit) -> None:
    path = bundle / "manifest.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda d: d.pop("inputs"), "required field 'inputs' is missing"),
        (lambda d: d["inputs"][0].update(dtype="float128"), r"field 'inputs\[0\].dtype' must be one of"),
        (lambda d: d["inputs"][0].update(shape=["N", 0]), r"'inputs\[0\].shape\[1\]' must be a positive size"),
        (lambda d: d.update(colour="blue"), "unknown field 'colour'"),
        (lambda d: d["files"]["model.onnx"].update(sha256="abc"), r"files.model.onnx.sha256' must be 64"),
        (lambda d: d.update(schema_version=2), "schema_version 2 is not supported"),
        (lambda d: d["decision"].update(threshold=1.5), r"'decision.threshold' must be within \[0, 1\]"),
        (lambda d: d["variants"]["default"].update(file="nope.onnx"), "'variants.default.file' names 'nope.onnx'"),
        (lambda d: d["files"].update({"../x": d["files"]["golden.npz"]}), "must be a plain file name"),
        (lambda d: d.update(task="clustering"), "field 'task' must be one of"),
    ],
)
def test_malformed_manifest_names_the_field(tiny_bundle: Path, edit, match) -> None:
    _edit_manifest(tiny_bundle, edit)
    with pytest.raises(medinfer.ManifestError, match=match):
        medinfer.load(tiny_bundle)


def test_manifest_not_json(tiny_bundle: Path) -> None:
    (tiny_bundle / "manifest.json").write_bytes(b"{not json")
    with pytest.raises(medinfer.ManifestError, match="not valid UTF-8 JSON"):
        medinfer.load(tiny_bundle)


def test_not_a_bundle(tmp_path: Path) -> None:
    """One error for "not a bundle", whatever the path is (issue 32: a file exited 3, a folder 4)."""
    (tmp_path / "README.md").write_text("# not a bundle\n")
    for path, what in ((tmp_path, "has no manifest.json"), (tmp_path / "nowhere", "does not exist"),
                       (tmp_path / "README.md", "is a file, not a bundle folder")):
        with pytest.raises(medinfer.ManifestError, match=f"is not a medinfer bundle: it {what}"):
            medinfer.load(path)


def test_unknown_and_unavailable_provider(tiny_bundle_ro: Path) -> None:
    with pytest.raises(medinfer.ProviderError, match="unknown execution provider 'cdua'; did you mean 'cuda'"):
        medinfer.load(tiny_bundle_ro, providers=["cdua"])
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA; the unavailable-provider message cannot be produced here")
    with pytest.raises(medinfer.ProviderError,
                       match="'CUDAExecutionProvider' is unavailable. Available providers: .*'CPUExecutionProvider'"):
        medinfer.load(tiny_bundle_ro, providers="cuda")
    model = medinfer.load(tiny_bundle_ro, providers=["cuda", "cpu"])  # a preference list falls to what is listed
    assert model.providers == ("CPUExecutionProvider",)


def test_self_test_pass_and_fail(make_bundle: MakeBundle) -> None:
    good = make_bundle("good")
    report = medinfer.load(good).self_test()
    assert report.status in ("bit_exact", "within_tolerance")
    assert report.max_abs_diff <= 1e-5
    wrong = tiny.reference(tiny.GOLDEN_X)[:, ::-1].copy()  # a valid, pinned, but wrong golden output
    bad = make_bundle("bad", golden_out=wrong)
    with pytest.raises(medinfer.SelfTestError, match="differs from the golden output"):
        medinfer.load(bad)
    model = medinfer.load(bad, self_test=False)  # the caller can defer the check, not skip integrity
    with pytest.raises(medinfer.SelfTestError):
        model.self_test()


def test_graph_from_another_contract_is_refused(make_bundle: MakeBundle) -> None:
    bundle = make_bundle("swap", metadata={"medinfer.name": "other_model", "medinfer.version": "0.0.1",
                                                     "medinfer.contract_sha256": "0" * 64})
    with pytest.raises(medinfer.IntegrityError, match="carries medinfer.name='other_model'"):
        medinfer.load(bundle)


def test_session_profile_override(tiny_bundle_ro: Path) -> None:
    model = medinfer.load(tiny_bundle_ro, session_profile={"intra_op_num_threads": 2, "allow_spinning": False})
    assert model.predict(tiny.GOLDEN_X).labels is not None
    with pytest.raises(ValueError, match="unknown session profile setting 'threads'"):
        medinfer.load(tiny_bundle_ro, session_profile={"threads": 2})


def test_unknown_variant(tiny_bundle_ro: Path) -> None:
    with pytest.raises(medinfer.MedinferError, match=r"unknown variant 'int8' of tiny_logistic \(1 known: default\)"):
        medinfer.load(tiny_bundle_ro, variant="int8")


@pytest.mark.parametrize("value", [10.0001, -10.0001, 1e30, np.inf, -np.inf, np.nan])
@pytest.mark.parametrize("where", [0, 1, 2])
def test_range_fast_path_never_accepts_an_out_of_range_value(tiny_bundle_ro: Path, value: float, where: int) -> None:
    model = medinfer.load(tiny_bundle_ro)
    x = np.zeros((1, 3), np.float32)
    x[0, where] = value
    with pytest.raises(medinfer.InputError):
        model.predict(x)


def test_range_exact_path_accepts_values_at_the_bound(tiny_bundle_ro: Path) -> None:
    model = medinfer.load(tiny_bundle_ro)
    edge = np.array([[10.0, -10.0, 10.0]], np.float32)  # sum of squares far above the fast-path bound
    assert model.predict(edge).labels is not None
    many = np.full((50, 3), 10.0 / np.sqrt(150), np.float32)  # batch sum of squares == bound: exact path
    assert len(model.predict(many)) == 50


def test_large_batch_session(make_bundle: MakeBundle) -> None:
    bundle = make_bundle("lb", profile={"intra_op_num_threads": 1, "large_batch_from": 4,
                                                  "large_batch": {"intra_op_num_threads": 2}})
    model = medinfer.load(bundle)
    assert model.large_session is not None
    assert model.large_session.get_session_options().intra_op_num_threads == 2
    assert model.session.get_session_options().intra_op_num_threads == 1
    rng = np.random.default_rng(0)
    for n in (1, 3, 4, 50):
        x = rng.uniform(-5, 5, (n, 3)).astype(np.float32)
        np.testing.assert_allclose(model.predict(x).scores, tiny.reference(x)[:, 1], atol=1e-6)
    off = medinfer.load(bundle, session_profile={"large_batch_from": 0})
    assert off.large_session is None
    mine = medinfer.load(bundle, session_profile={"intra_op_num_threads": 3})  # the caller's setting wins
    assert mine.large_session.get_session_options().intra_op_num_threads == 3


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_range_from_zero_accepts_exactly_what_the_exact_check_accepts(dtype: str) -> None:
    """[0, hi] ranges take a one-reduction fast accept (the floats read as unsigned integers): it must accept
    nothing the exact check refuses (negatives, -0.0 aside, NaN of either sign, inf, the next float above hi) and
    refuse nothing in range."""
    from medinfer.manifest import TensorSpec
    from medinfer.validation import InputCheck

    check = InputCheck(TensorSpec("x", dtype, ("N", 4), range=(0.0, 20.0)), "m")
    assert check.bits is not None  # the fast accept is on for this range
    t = np.dtype(dtype).type
    hi = t(20.0)
    tiny = np.finfo(dtype).smallest_subnormal
    for bad in (np.nextafter(hi, t(np.inf)), t(-tiny), t(-1.0), t(np.nan), -t(np.nan), t(np.inf), t(-np.inf),
                t(1e30)):
        x = np.array([[1.0, 2.0, bad, 3.0]], dtype)
        wide = np.zeros((1, 8), dtype)
        wide[0, 4] = bad
        for value in (x, wide[:, ::2]):  # contiguous, and a strided view
            with pytest.raises(medinfer.InputError):
                check(value)
    for good in (t(0.0), t(-0.0), tiny, hi, t(19.999)):
        x = np.array([[good, 0.0, hi, good]], dtype)
        assert np.array_equal(check(x)[0], x)
