"""Every input refusal's full message (numbers, sequences, texts, several inputs, named columns) and what accepted
inputs become. These tests pin behaviours that mutation testing (``make mutation-score``, promises/mutation.toml)
found unpinned: each fails when the code it names is changed in the way the mutant changed it."""

from __future__ import annotations

import medinfer
import numpy as np
import pytest
from medinfer.errors import LossyCastError


def _check(shape=("N", 3), dtype="float32", max_elements=None, casting="safe", **spec):
    from medinfer.manifest import TensorSpec
    from medinfer.validation import InputCheck

    return InputCheck(TensorSpec("x", dtype, shape, **spec), "m", casting, max_elements)


F32 = np.float32
RANGED = {"range": (-10.0, 10.0), "units": "a.u.", "names": ("a", "b", "c")}
WHO = "input 'x' of m"


@pytest.mark.parametrize("case", [
    ("text", {}, "text", medinfer.InputTypeError, f"{WHO} expects numbers of dtype float32, got a str"),
    ("mapping", {}, {"q": 1}, medinfer.InputTypeError,
     f"{WHO} expects an array of shape (N, 3), got a mapping with keys ['q']; named columns are accepted by "
     "Model.predict for models whose manifest lists feature names"),
    ("objects", {}, [[1.0, None, 2.0]], medinfer.InputTypeError,
     f"{WHO} expects a rectangular array of numbers; got ragged or mixed-type data (every row must have the same "
     "length and hold only numbers)"),
    ("float64", {}, np.zeros((1, 3)), LossyCastError,
     f"{WHO} has dtype float64, but m expects float32; converting float64 to float32 can lose precision, so it is "
     "not done silently. Pass x.astype(np.float32) if that is what you want, or load(..., cast='same_kind')"),
    ("bool", {}, np.zeros((1, 3), bool), medinfer.InputTypeError,
     f"{WHO} has dtype bool, but m expects float32; convert it with x.astype(np.float32) if the values are meant "
     "as float32"),
    ("rank", {}, np.zeros((2, 3, 1), F32), medinfer.InputError,
     f"{WHO} has shape (2, 3, 1) (rank 3), but m expects rank 2 (N, 3) or one sample of rank 1; reshape the input"),
    ("features", {}, np.zeros((2, 4), F32), medinfer.InputError,
     "X has 4 features, but m is expecting 3 features as input (input 'x', shape (N, 3))"),
    ("empty", {}, np.zeros((0, 3), F32), medinfer.InputError,
     f"{WHO} got an empty batch (shape (0, 3)); pass at least one sample"),
    ("too big", {"max_elements": 5}, np.zeros((2, 3), F32), medinfer.InputError,
     f"{WHO} has shape (2, 3) (6 values), but m takes at most 5 per call (the bundle bounds the memory one call may "
     "use): cut the input into parts"),
    ("nan", RANGED, np.array([[0, np.nan, np.inf]], F32), medinfer.InputError,
     f"{WHO} contains 1 NaN and 1 infinite values (first at index (0, 1)); m needs finite values: impute or drop "
     "missing measurements before predicting"),
    ("nan, no range", {}, np.array([[0, 1, -np.inf]], F32), medinfer.InputError,
     f"{WHO} contains 0 NaN and 1 infinite values (first at index (0, 2)); m needs finite values: impute or drop "
     "missing measurements before predicting"),
    ("range", RANGED, np.array([[1, 11, -3]], F32), medinfer.InputError,
     f"{WHO} has 1 values outside the declared range [-10, 10] a.u. (first: {F32(11)!r} at index (0, 1), observed "
     f"min {F32(-3)!r}, max {F32(11)!r}); check the units and preprocessing of the input"),
    ("below range", {"range": (0.0, 5.0)}, np.array([[1, 2, -1]], F32), medinfer.InputError,
     f"{WHO} has 1 values outside the declared range [0, 5] (first: {F32(-1)!r} at index (0, 2), observed "
     f"min {F32(-1)!r}, max {F32(2)!r}); check the units and preprocessing of the input"),
    ("feature", {"names": ("a", "b", "c"), "feature_ranges": ((0, 1), (0, 1), (0, 100)),
                 "facts": {"features": [{"name": "c", "unit": "mg/dL"}]}}, np.array([[0.5, 0.5, 150]], F32),
     medinfer.InputError,
     f"{WHO}: feature 'c' has 1 value(s) outside its range [0, 100] mg/dL (first: {F32(150)!r} at index (0, 2)); "
     "check the sensor, its units and the feature's preprocessing"),
    ("feature, unnamed", {"feature_ranges": ((0, 1), (-1, 1), (0, 1))}, np.array([[0.5, -2, 0.5]], F32),
     medinfer.InputError,
     f"{WHO}: feature '#1' has 1 value(s) outside its range [-1, 1] (first: {F32(-2)!r} at index (0, 1)); check "
     "the sensor, its units and the feature's preprocessing"),
], ids=lambda c: c[0])
def test_every_numeric_refusal_says_what_was_received_and_expected(case) -> None:
    _, options, value, error, message = case
    check = _check(**options)  # the case's own dict is never changed: the test runs again under mutmut
    with pytest.raises(error) as info:
        check(value)
    assert type(info.value) is error and str(info.value) == message


def test_accepted_numeric_inputs_come_back_ready_for_onnxruntime() -> None:
    check = _check(**RANGED)
    arr, single = check(np.array([1, 2, 3], np.int16))  # one sample, a safe cast
    assert arr.dtype == np.float32 and arr.shape == (1, 3) and single
    near = np.array([[9.99, -9.99, 9.99]], F32)  # inside the range, beyond the fast path's bound
    assert check(near)[0] is near
    wide = _check()  # no range: finite values whose sum overflows float32 are still accepted
    big = np.array([[3e38, 3e38, 0]], F32)
    with np.errstate(over="ignore"):
        assert wide(big)[0] is big
    strided = np.zeros((3, 6), F32)[:, ::2]
    out, _ = check(strided)
    assert out.flags.c_contiguous and out.shape == (3, 3)
    relaxed = _check(casting="same_kind", **RANGED)
    assert relaxed(np.zeros((1, 3)))[0].dtype == np.float32
    with pytest.raises(ValueError) as info:
        _check(casting="unsafe")
    assert str(info.value) == "cast must be one of ('safe', 'same_kind'), got 'unsafe'"
    ints = _check(dtype="int64", range=(0.0, 5.0))
    with pytest.raises(medinfer.InputError, match=r"outside the declared range \[0, 5\]"):
        ints(np.array([[1, 9, 2]], np.int64))


def test_sequence_inputs_name_their_features_per_step_and_empty_axes() -> None:
    seq = _check(shape=("N", "T", 2), names=("g", "i"))
    with pytest.raises(medinfer.InputError) as info:
        seq(np.zeros((1, 4, 3), F32))
    assert str(info.value) == ("X has 3 features per time step, but m is expecting 2 features per step (g, i) "
                               "(input 'x', shape (N, T, 2); the time axis 'T' may have any length)")
    unnamed = _check(shape=("N", "T", 2))
    with pytest.raises(medinfer.InputError) as info:
        unnamed(np.zeros((1, 4, 3), F32))
    assert str(info.value).startswith("X has 3 features per time step, but m is expecting 2 features per step (input")
    with pytest.raises(medinfer.InputError) as info:
        seq(np.zeros((1, 0, 2), F32))
    assert str(info.value) == (f"{WHO} has shape (1, 0, 2): axis 1 ('T') is empty, but m needs at least one element "
                               "there (e.g. at least one time step)")
    image = _check(shape=("N", 4, 4, 1))
    with pytest.raises(medinfer.InputError) as info:
        image(np.zeros((1, 4, 5, 1), F32))
    assert str(info.value) == f"{WHO} has shape (1, 4, 5, 1), but m expects (N, 4, 4, 1): axis 2 must be 4, got 5"
    fixed = _check(shape=(2, 3))
    with pytest.raises(medinfer.InputError) as info:
        fixed(np.zeros((3,), F32))
    assert str(info.value) == f"{WHO} has shape (3,) (rank 1), but m expects rank 2 (2, 3); reshape the input"


@pytest.mark.parametrize("value,error,message", [
    (5, medinfer.InputTypeError, f"{WHO} expects text: a string or a list/array of strings, got int"),
    (np.array([1.5]), medinfer.InputTypeError, f"{WHO} expects strings, got an array of dtype float64"),
    ([b"\xff"], medinfer.InputError, f"{WHO} item 0 is not valid UTF-8 (invalid start byte at byte 0); decode the "
                                     "text with its real encoding before predicting"),
    (["ok", 3], medinfer.InputTypeError, f"{WHO} item 1 is a int, expected a string"),
    ([], medinfer.InputError, f"{WHO} got no text; pass at least one string"),
    (["ok", "a\x00b"], medinfer.InputError, f"{WHO} item 1 contains a NUL character; clean the text before "
                                           "predicting"),
    (["ok", "caf\u00e9", "\ud800"], medinfer.InputError, f"{WHO} item 2 is not valid Unicode text (surrogates not "
                                                         "allowed at 0); decode the source bytes with their real "
                                                         "encoding"),
    ([["a", "b"]], medinfer.InputError, f"{WHO} has shape (1, 2), but m expects one text per row (N, 1); pass a "
                                        "1-D list of strings"),
])
def test_every_text_refusal_names_the_item(value, error, message) -> None:
    check = _check(shape=("N", 1), dtype="string")
    with pytest.raises(error) as info:
        check(value)
    assert type(info.value) is error and str(info.value) == message


def test_accepted_texts_come_back_one_per_row() -> None:
    check = _check(shape=("N", 1), dtype="string")
    arr, single = check("one report")
    assert arr.shape == (1, 1) and arr[0, 0] == "one report" and single
    arr, single = check([b"caf\xc3\xa9", "ok"])
    assert arr.reshape(-1).tolist() == ["caf\u00e9", "ok"] and not single
    flat = _check(shape=("N",), dtype="string")
    assert flat(np.array(["a", "b"]))[0].shape == (2,)


def test_several_inputs_and_named_columns() -> None:
    from medinfer.manifest import Manifest
    from medinfer.validation import Validator

    def validator(*specs):
        fake = Manifest.__new__(Manifest)
        object.__setattr__(fake, "name", "m")
        object.__setattr__(fake, "inputs", specs)
        return Validator(fake)

    from medinfer.manifest import TensorSpec

    two = validator(TensorSpec("a", "float32", ("N", 2)), TensorSpec("b", "float32", ("N", 1)))
    with pytest.raises(medinfer.InputTypeError) as info:
        two(np.zeros((1, 2), F32))
    assert str(info.value) == "m has 2 inputs ['a', 'b']; pass a dict name -> array"
    with pytest.raises(medinfer.InputError) as info:
        two({"a": np.zeros((1, 2), F32), "c": 1})
    assert str(info.value) == "m expects inputs ['a', 'b']; missing ['b'], unexpected ['c']"
    with pytest.raises(medinfer.InputError) as info:
        two({"a": np.zeros(2, F32), "b": np.zeros((3, 1), F32)})
    assert str(info.value) == "m: mix of single-sample and batched inputs; batch all of them"
    feeds, single = two({"b": np.zeros(1, F32), "a": np.zeros(2, F32)})
    assert list(feeds) == ["a", "b"] and single and feeds["a"].shape == (1, 2)

    named = validator(TensorSpec("x", "float32", ("N", 3), names=("p", "q", "r")))
    feeds, _ = named({"r": np.array([3.0], F32), "p": np.array([1.0], F32), "q": np.array([2.0], F32)})
    np.testing.assert_array_equal(feeds["x"], [[1.0, 2.0, 3.0]])
    assert named({"x": np.zeros((2, 3), F32)})[0]["x"].shape == (2, 3)  # the input by its own name
    with pytest.raises(medinfer.InputError) as info:
        named({"p": [1.0], "q": [2.0], "s": [0.0], "t": [0.0]})
    assert str(info.value) == ("columns for input 'x' of m do not match its 3 features: 1 missing ('r'); 2 not in "
                               "the model ('s', 't'). The manifest lists the expected names in order (medinfer info "
                               "BUNDLE --json)")
    with pytest.raises(medinfer.InputError) as info:
        named({"p": [1.0, 2.0], "q": [2.0], "r": [3.0]})
    assert str(info.value).startswith("columns for input 'x' of m differ in length: ")
    check = named.checks[0]
    named.check_order(check, ["p", "q", "r"])
    with pytest.raises(medinfer.InputError) as info:
        named.check_order(check, ["p", "p", "r"])
    assert str(info.value) == "columns for input 'x' of m repeat 'p'; each feature once"
    with pytest.raises(medinfer.InputError) as info:
        named.check_order(check, ["p", "r", "q"])
    assert str(info.value) == ("columns for input 'x' of m are in a different order: column 1 is 'r', expected 'q'; "
                               "reorder the columns to the manifest's order")
    with pytest.raises(medinfer.InputError, match=r"1 missing \('r'\); 1 not in the model \('z'\)"):
        named.check_order(check, ["p", "q", "z"])
    many = validator(TensorSpec("x", "float32", ("N", 1), names=("only",)))
    with pytest.raises(medinfer.InputError) as info:
        many({f"c{i}": [0.0] for i in range(7)})
    assert "7 not in the model ('c0', 'c1', 'c2', 'c3', 'c4', … 2 more)" in str(info.value)


def test_range_bounds_are_inclusive_and_only_values_beyond_them_are_counted() -> None:
    """A value exactly at a declared bound is in range: the refusal counts and points at the value beyond it, not at
    one on the bound (whole-input range and per-feature ranges alike); a dimensionless unit ("1") is not printed."""
    check = _check(**RANGED)
    with pytest.raises(medinfer.InputError) as info:
        check(np.array([[-10, 10, 10.5]], F32))
    assert f"has 1 values outside the declared range [-10, 10] a.u. (first: {F32(10.5)!r} at index (0, 2)" \
        in str(info.value)
    with pytest.raises(medinfer.InputError) as info:
        check(np.array([[-10, -10.5, 10]], F32))
    assert f"has 1 values outside the declared range [-10, 10] a.u. (first: {F32(-10.5)!r} at index (0, 1)" \
        in str(info.value)
    ranged = _check(names=("a", "b", "c"), feature_ranges=((0, 1), (0, 1), (0, 100)),
                    facts={"features": [{"name": "b", "unit": "1"}]})
    assert ranged(np.array([[0, 1, 100], [1, 0, 0]], F32))[0].shape == (2, 3)  # every bound itself is accepted
    with pytest.raises(medinfer.InputError) as info:
        ranged(np.array([[0, 1, 100], [1, 1.5, 0], [1, 0, 0]], F32))
    assert str(info.value) == (f"{WHO}: feature 'b' has 1 value(s) outside its range [0, 1] (first: {F32(1.5)!r} at "
                               "index (1, 1)); check the sensor, its units and the feature's preprocessing")


def test_long_or_many_column_names_are_cut_in_refusals() -> None:
    """A header read with the wrong delimiter is one 'name' of kilobytes: names beyond 40 characters are cut to 39
    and an ellipsis, at most 5 are shown, and "… N more" only when there are more; a missing column alone (nothing
    extra) is refused too."""
    from medinfer.manifest import Manifest, TensorSpec
    from medinfer.validation import Validator

    fake = Manifest.__new__(Manifest)
    object.__setattr__(fake, "name", "m")
    object.__setattr__(fake, "inputs", (TensorSpec("x", "float32", ("N", 2), names=("p", "q")),))
    named = Validator(fake)
    with pytest.raises(medinfer.InputError) as info:
        named({"p": [1.0]})
    assert str(info.value) == ("columns for input 'x' of m do not match its 2 features: 1 missing ('q'). The manifest "
                               "lists the expected names in order (medinfer info BUNDLE --json)")
    forty, long = "a" * 40, "b" * 41
    with pytest.raises(medinfer.InputError) as info:
        named({"p": [1.0], "q": [1.0], forty: [0.0], long: [0.0], "c": [0.0], "d": [0.0], "e": [0.0]})
    assert f"5 not in the model ('{forty}', '{'b' * 39}…', 'c', 'd', 'e'). " in str(info.value)
    with pytest.raises(medinfer.InputError) as info:
        named({"p": [1.0], "q": [1.0], "c": [0.0], "d": [0.0], "e": [0.0], "f": [0.0], "g": [0.0], "h": [0.0]})
    assert "6 not in the model ('c', 'd', 'e', 'f', 'g', … 1 more)" in str(info.value)
    columns = named.from_columns(named.checks[0], {"q": np.array([[2.0]], F32), "p": np.array([[1.0]], F32)})
    assert columns.shape == (1, 1, 2)  # columns stack on the last axis, whatever their own rank


def test_conversions_of_python_and_array_like_values() -> None:
    """What reaches the model's dtype and how: Python floats beyond float32 become inf and are refused as not finite
    without a numpy overflow warning; Python ints convert only when exact (2**24 + 1 is not a float32); an array-like
    that is not a list (array.array of doubles) keeps its dtype and meets the cast rule like an ndarray; a boolean
    input takes booleans; a mapping's keys are listed, five at most."""
    import array
    import warnings

    check = _check()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(medinfer.InputError, match=r"contains 0 NaN and 1 infinite values \(first at index"):
            check([[1e39, 0.0, 0.0]])
    assert check([[16777216, 0, 0]])[0].dtype == np.float32
    with pytest.raises(LossyCastError, match="has dtype int64, but m expects float32"):
        check([[16777217, 0, 0]])
    with pytest.raises(LossyCastError, match="has dtype int64, but m expects float32"):
        check([[2**60 + 1, 0, 0]])  # float64 cannot tell 2**60 + 1 from 2**60 either: the round trip is in int64
    with pytest.raises(LossyCastError, match="has dtype float64, but m expects float32"):
        check(array.array("d", [1.0, 2.0, 3.0]))
    flags = _check(dtype="bool")(np.array([[True, False, True]]))[0]
    assert flags.dtype == np.bool_ and flags.tolist() == [[True, False, True]]
    with pytest.raises(medinfer.InputTypeError) as info:
        check({k: 1 for k in "gfedcba"})
    assert "got a mapping with keys ['a', 'b', 'c', 'd', 'e']; named" in str(info.value)


def test_a_fixed_sequence_length_is_named_as_an_axis_not_as_features() -> None:
    steps = _check(shape=("N", 5, 3))
    with pytest.raises(medinfer.InputError) as info:
        steps(np.zeros((1, 4, 3), F32))
    assert str(info.value) == (f"{WHO} has shape (1, 4, 3), but m expects (N, 5, 3): axis 1 must be 5, got 4")
    images = _check(shape=("N", "H", "W", 3))  # free height and width: a wrong channel count is no time step
    with pytest.raises(medinfer.InputError) as info:
        images(np.zeros((1, 8, 8, 4), F32))
    assert str(info.value) == f"{WHO} has shape (1, 8, 8, 4), but m expects (N, H, W, 3): axis 3 must be 3, got 4"


def test_a_text_input_beside_a_numeric_one_is_batched_like_it() -> None:
    """A model with a text input and a numeric input: both batched is one batch, not a 'mix of single-sample and
    batched inputs' (the text check must say "not a single sample" the way the numeric one does)."""
    from medinfer.manifest import Manifest, TensorSpec
    from medinfer.validation import Validator

    fake = Manifest.__new__(Manifest)
    object.__setattr__(fake, "name", "m")
    object.__setattr__(fake, "inputs", (TensorSpec("note", "string", ("N", 1)), TensorSpec("age", "float32", ("N", 1))))
    feeds, single = Validator(fake)({"note": np.array([["chest pain"], ["cough"]], dtype=object),
                                     "age": np.array([[61.0], [35.0]], F32)})
    assert single is False and feeds["note"].shape == (2, 1) and feeds["age"].shape == (2, 1)
