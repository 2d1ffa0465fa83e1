"""Text normalisation and tokenization, defined once and reproduced exactly by the exported ONNX graph.

The clinical-notes model tokenizes with an NLTK ``RegexpTokenizer`` pattern on lowercased text and drops NLTK's
English stop words. scikit-learn trains with the same three pieces (``token_pattern``, ``preprocessor``,
``stop_words``) and skl2onnx turns them into ``StringNormalizer`` (lowercase, C.UTF-8 locale) → ``Tokenizer``
(re2, the same pattern) → ``TfIdfVectorizer`` whose vocabulary excludes the stop words. Two details make the
engines agree on every input, hostile ones included:

- the pattern matches ASCII only (``[a-z0-9]+``): Python's ``\\w`` and ``\\b`` are Unicode-aware, re2's are not;
- lowercasing is the per-code-point (simple) Unicode mapping the graph's StringNormalizer applies, see
  :func:`simple_lower`.

Nothing here downloads anything: the stop word list ships in ``nltk-data/`` beside this file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medinfer.errors import DatasetError

TOKEN_PATTERN = r"[a-z0-9]+"
STOPWORDS_LANGUAGE = "english"
NLTK_DATA = Path(__file__).resolve().parent / "nltk-data"  # a folder name no import can reach: plain data


def simple_lower(text: str) -> str:
    """Lowercase ``text`` exactly as the ONNX graph does (Unicode simple case mapping, one code point at a time).

    ``str.lower()`` applies the *full* mapping, which differs from the graph's in one code point that matters
    to ASCII tokens: U+0130 (İ) becomes ``"i"`` + U+0307 (combining dot above), which splits a word that the
    graph keeps whole (``"İNFİLTRATE"`` → ``i``, ``nfi``, ``ltrate`` instead of ``infiltrate``). Every other code
    point lowercases identically in both (checked over all of Unicode on onnxruntime's C.UTF-8 StringNormalizer).
    """
    return text.replace("\u0130", "i").lower()


# The converter replaces a vectorizer's preprocessor that declares an ONNX equivalent by these parameters
# (skl2onnx refuses custom preprocessors; this one is exactly its lowercase=True).
simple_lower.onnx_equivalent = {"lowercase": True}  # type: ignore[attr-defined]


def stopwords(language: str = STOPWORDS_LANGUAGE) -> tuple[str, ...]:
    """NLTK's stop word list for ``language``, read by NLTK's own corpus reader from the copy in this package.

    Raises:
        DatasetError: no list for ``language`` ships with medinfer.
    """
    import nltk
    from nltk.corpus.reader import StopwordsCorpusReader

    # NLTK only reads corpora under its data path; append (not insert) so a user's own nltk_data keeps its
    # priority elsewhere, and read from our root explicitly so another copy of the list can never be used here.
    if str(NLTK_DATA) not in nltk.data.path:
        nltk.data.path.append(str(NLTK_DATA))
    root = NLTK_DATA / "corpora" / "stopwords"
    if not (root / language).is_file():
        shipped = sorted(p.name for p in root.iterdir() if p.name != "README")
        raise DatasetError(f"no stop word list {language!r} ships in {root}; shipped: {shipped}")
    reader = StopwordsCorpusReader(str(root), r"(?!README|\.).*", encoding="utf8")
    return tuple(reader.words(language))


def tokenizer() -> Any:
    """The NLTK tokenizer that defines a token (apply it to :func:`simple_lower` text)."""
    from nltk.tokenize import RegexpTokenizer

    return RegexpTokenizer(TOKEN_PATTERN)


def tokens(text: str, stop: frozenset[str] | None = None) -> list[str]:
    """The reference tokenization: NLTK ``RegexpTokenizer`` on :func:`simple_lower` text, stop words dropped."""
    stop = frozenset(stopwords()) if stop is None else stop
    return [t for t in tokenizer().tokenize(simple_lower(text)) if t not in stop]


def vectorizer(**overrides: Any) -> Any:
    """A ``TfidfVectorizer`` configured with exactly this tokenization (overrides for min_df, etc.)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    params: dict[str, Any] = {
        "token_pattern": TOKEN_PATTERN,
        "preprocessor": simple_lower,
        "lowercase": True,  # ignored by scikit-learn when a preprocessor is set; documents the intent
        "stop_words": list(stopwords()),
        "strip_accents": None,  # the graph cannot strip accents
        "ngram_range": (1, 1),  # stop words are removed before n-grams in sklearn but not in the graph
    }
    params.update(overrides)
    return TfidfVectorizer(**params)
