"""clinical_notes_tfidf beyond the registry-wide tests: the tokenization contract, export with parity on a synthetic
corpus, hostile strings, and the real reports' source."""

from __future__ import annotations

import dataclasses

import medinfer
import numpy as np
import pytest
from medinfer.errors import InputError, ParityError, UsageError

from ..helpers.pipeline import SYNTHETIC, fit_and_export

pytest.importorskip("sklearn")
pytest.importorskip("skl2onnx")
pytest.importorskip("nltk")

from medinfer.train import registry, text  # noqa: E402
from medinfer.train.datasets import reports  # noqa: E402
from medinfer.train.spec import Dataset  # noqa: E402

NORMAL_WORDS = ["heart", "size", "normal", "lungs", "clear", "mediastinum", "unremarkable", "acute", "disease"]


ABNORMAL_WORDS = ["cardiomegaly", "effusion", "pneumothorax", "infiltrate", "opacity", "consolidation", "nodule",
                  "atelectasis", "edema"]


def _corpus(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Report-like sentences: normal ones from one word pool, abnormal ones mixing in findings; mixed case."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    docs = []
    for label in y:
        words = list(rng.choice(NORMAL_WORDS, size=6))
        if label:
            words[rng.integers(0, 6)] = str(rng.choice(ABNORMAL_WORDS)).upper()
            words.append(str(rng.choice(ABNORMAL_WORDS)))
        docs.append("The " + " ".join(words) + ". No change.")
    return np.asarray(docs, dtype=object).reshape(-1, 1), y.astype(np.int64)


@pytest.fixture(scope="module")
def notes(tmp_path_factory: pytest.TempPathFactory):
    spec = registry.get("clinical_notes_tfidf")
    X, y = _corpus(160, seed=1)
    ds = Dataset(X_train=X[:120], y_train=y[:120], X_test=X[120:], y_test=y[120:], sources=(SYNTHETIC,),
                 split={"method": "first 120 / last 40"}, synthetic=True, description="synthetic reports",
                 edge=np.asarray(reports.hostile_strings(), dtype=object).reshape(-1, 1))
    art, path = fit_and_export(spec, ds, tmp_path_factory.mktemp("notes"))
    return spec, art.model, ds, path


def test_stopwords_ship_in_the_package_and_nltk_reads_them(monkeypatch) -> None:
    import nltk
    from nltk.corpus.reader import StopwordsCorpusReader
    from nltk.corpus.util import LazyCorpusLoader

    words = text.stopwords()
    assert len(words) == 179 and words[:3] == ("i", "me", "my") and {"no", "not", "the"} <= set(words)
    # NLTK's own loader, pointed at the shipped folder only (what NLTK_DATA=<that folder> does): same list.
    monkeypatch.setattr(nltk.data, "path", [str(text.NLTK_DATA)])
    fresh = LazyCorpusLoader("stopwords", StopwordsCorpusReader, r"(?!README|\.).*", encoding="utf8")
    assert tuple(fresh.words("english")) == words
    with pytest.raises(medinfer.DatasetError, match="no stop word list 'klingon' ships in .*shipped: \\['english'\\]"):
        text.stopwords("klingon")


def test_nltk_tokenization_equals_the_vectorizer_analyzer() -> None:
    analyzer = text.vectorizer().build_analyzer()
    X, _ = _corpus(50, seed=2)
    stop = frozenset(text.stopwords())
    for doc in list(X.reshape(-1)) + reports.hostile_strings():
        assert text.tokens(doc, stop) == analyzer(doc), doc[:60]
    assert text.tokens("The İNFİLTRATE, 2 cm; no effusion 🙂 café") == ["infiltrate", "2", "cm", "effusion", "caf"]


def test_simple_lower_is_what_the_graph_does_for_every_code_point() -> None:
    """One string of all of Unicode through the graph's StringNormalizer vs simple_lower (and vs str.lower)."""
    import onnxruntime as ort
    from medinfer.export.converters.fixes import fix_string_normalizer_locale
    from onnx import TensorProto, helper

    node = helper.make_node("StringNormalizer", ["x"], ["y"], case_change_action="LOWER", is_case_sensitive=0)
    graph = helper.make_graph([node], "lower", [helper.make_tensor_value_info("x", TensorProto.STRING, [None])],
                              [helper.make_tensor_value_info("y", TensorProto.STRING, [None])])
    onx = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onx.ir_version = 8
    fix_string_normalizer_locale(onx)
    session = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    everything = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    got = session.run(None, {"x": np.array([everything], dtype=object)})[0][0]
    assert got == text.simple_lower(everything)
    # str.lower() (full case mapping) differs in one code point only: U+0130 → "i" + U+0307, which splits
    # ASCII tokens where the graph does not
    assert [c for c in everything if c.lower() != text.simple_lower(c)] == ["\u0130"]


def test_notes_bundle_runtime_equals_sklearn(notes) -> None:
    spec, model, ds, path = notes
    m = medinfer.load(path)
    assert m.manifest.inputs[0].dtype == "string" and list(m.manifest.inputs[0].shape) == ["N", 1]
    native = spec.native_outputs(model, ds.X_test)
    for x in (ds.X_test, ds.X_test.reshape(-1), [str(s) for s in ds.X_test.reshape(-1)]):  # (N,1), (N,), list
        pred = m.predict(x)
        np.testing.assert_allclose(pred.scores, native["probabilities"][:, 1], atol=spec.parity.atol)
        assert list(pred.labels) == [spec.labels[i] for i in native["label"]]
    parity = m.manifest.parity
    assert parity.passed and parity.sets["edge"]["n"] == len(reports.hostile_strings())
    assert parity.sets["heldout"]["n"] == len(ds.y_test) and parity.decision_flips == 0


def test_hostile_strings_through_the_runtime_equal_sklearn(notes) -> None:
    spec, model, _, path = notes
    m = medinfer.load(path)
    hostile = reports.hostile_strings()
    outputs = spec.native_outputs(model, hostile)
    native = spec.scores(outputs)
    labels = [spec.labels[i] for i in spec.decisions(native, m.manifest.decision.threshold)]
    known = outputs["known_tokens"] > 0
    assert known.any() and (~known).any()  # both kinds are among the hostile strings
    with pytest.raises(medinfer.NoInformationError, match="no usable information"):
        m.predict(hostile)  # a batch holding a text with no known word gets no answer at all
    texts = [t for t, k in zip(hostile, known) if k]
    batch = m.predict(texts)
    np.testing.assert_allclose(batch.scores, native[known], atol=spec.parity.atol)
    assert list(batch.labels) == [lab for lab, k in zip(labels, known) if k]
    for i, doc in enumerate(hostile):  # one at a time too: a row can never be dropped or shifted
        if known[i]:
            one = m.predict(doc)
            assert one.score == pytest.approx(native[i], abs=spec.parity.atol) and one.label == labels[i]
        else:
            assert m.try_predict(doc).reason == "no_information"
    # bytes are decoded as UTF-8; NUL and undecodable bytes are refused with a typed error, never run
    np.testing.assert_allclose(m.predict([b"Heart size normal."]).scores, m.predict(["Heart size normal."]).scores)
    with pytest.raises(InputError, match="item 1 contains a NUL character"):
        m.predict(["fine", "bad\x00text"])
    with pytest.raises(InputError, match="item 0 is not valid UTF-8"):
        m.predict([b"\xff\xfe broken"])
    with pytest.raises(InputError, match="expects one text per row"):
        m.predict(np.array([["a", "b"]], dtype=object))


def test_the_gate_catches_str_lower_on_dotted_capital_i(notes, tmp_path) -> None:
    """With Python's own lowercasing (full case mapping) 'İNFİLTRATE' tokenizes differently from the graph."""
    spec, _, ds, _ = notes
    plain = spec.build(ds)
    plain.set_params(tfidf__preprocessor=None, tfidf__lowercase=True)
    edge = np.asarray(["İNFİLTRATE İN THE LEFT LUNG"], dtype=object).reshape(-1, 1)
    with pytest.raises(ParityError, match="(?s)parity gate FAILED.*edge: output 'probabilities' max abs diff"):
        fit_and_export(spec, dataclasses.replace(ds, edge=edge), tmp_path, model=plain)
    assert not (tmp_path / "bundles" / spec.name).exists()


def test_a_preprocessor_without_onnx_equivalent_is_refused(notes) -> None:
    from medinfer.export.converters.sklearn import onnx_equivalent

    spec, _, ds, _ = notes
    model = spec.fit(spec.build(ds), ds)
    model.set_params(tfidf__preprocessor=str.upper)
    with pytest.raises(UsageError, match="custom preprocessor .* skl2onnx cannot convert"):
        onnx_equivalent(model)


def test_real_source_pins_its_licence_and_parses() -> None:
    from medinfer.train.datasets import sources

    assert sources.get_source("iu_cxr_reports").licence.startswith("CC BY-NC-ND 4.0")
    rows, excluded = reports.parse(sources.fetch("iu_cxr_reports"))
    assert (len(rows), sum(r.label for r in rows), excluded) == (3832, 2469, {"no_text": 28, "unlabelled": 95})


@pytest.mark.hostile("texts with no information")
@pytest.mark.parametrize("text", ["", "   \n\t", "the and of a to", "... !!! ???", "🙂🙂🚑", "\u200b\u200b"])
def test_a_text_with_no_known_word_gets_no_confident_label(notes, text: str) -> None:
    """The logistic model would answer its intercept with full confidence; the bundle refuses instead."""
    m = medinfer.load(notes[3])
    out = m.try_predict(text)
    assert isinstance(out, medinfer.NoResult) and out.reason == "no_information"
    with pytest.raises(medinfer.NoInformationError):
        m.predict([text])
