"""Clinical notes — TF-IDF + logistic regression on chest X-ray reports (seed section "医疗数据分析").

Real data: the Indiana University chest X-ray reports shipped in the torchxrayvision wheel; text = FINDINGS +
IMPRESSION, label = normal (MeSH major term 'normal' only) vs abnormal. The graph takes raw strings: NLTK's
tokenization (see ``medinfer.train.text``), stop words, TF-IDF and the classifier all run inside ONNX.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from medinfer.codings import RESULT_CODES, Coding, Codings, FhirResult
from medinfer.decision import DEFAULT_THRESHOLD
from medinfer.integrity import sha256_file
from medinfer.manifest import Card, Evidence, SessionProfile, TensorSpec

from .. import domain, text
from ..datasets import reports
from ..datasets.sources import fetch, get_source
from ..domain import DomainGuard, Part, Shift
from ..families import SklearnClassifierSpec
from ..metrics import binary_metrics, bootstrap
from ..registry import register
from ..spec import Dataset, OperatingPoint, ParityTolerance, Progress, quiet

# 5-fold CV on the training reports, grouped by identical text: ROC-AUC 0.985 (C=1), 0.989 (3), 0.991 (10),
# 0.992 (30); flat from C=10 on, which keeps more regularisation. min_df=2 drops one-off tokens (typos, numbers)
# that no second report could confirm.
C = 10.0
MIN_DF = 2
N_UPPERCASED_EDGE = 3


def docs(X: Any) -> list[str]:
    """One document per row: the graph takes (N, 1) strings, scikit-learn a flat list."""
    return [str(s) for s in np.asarray(X, dtype=object).reshape(-1)]


@register
class ClinicalNotesTfidf(SklearnClassifierSpec):
    name = "clinical_notes_tfidf"
    version = "1.0.0"
    task = "binary_classification"
    description = (
        "Flags chest X-ray report text (FINDINGS + IMPRESSION) as describing an abnormal study, from raw "
        "strings: NLTK-defined tokenization, English stop words, TF-IDF and logistic regression in one graph."
    )
    seed_section = "医疗数据分析 (medical data analysis): NLTK tokenize + stopwords + TfidfVectorizer + classifier"
    labels = reports.LABELS
    positive_label = "abnormal"
    threshold = 0.5
    threshold_rationale = (
        "probability of 'abnormal' >= 0.5, the logistic model's default; the ROC plot shows the trade-off "
        "for a site that wants another operating point"
    )
    parity = ParityTolerance(atol=1e-5, max_decision_flips=0)
    profile = SessionProfile(intra_op_num_threads=1, inter_op_num_threads=1, allow_spinning=True)
    test_sample = 400
    explain = {
        "method": "linear", "explains": "log-odds of 'abnormal'",
        "can_tell": "which words of this report pushed it towards 'abnormal' (positive) or 'normal' (negative), and by "
                    "exactly how much: the contributions add up to the log-odds the score comes from",
        "cannot_tell": "whether a finding is negated ('no effusion' counts 'effusion'; 'no' is a stop word), whether "
                       "the words are clinically right, or what deleting a word would do exactly (TF-IDF renormalises "
                       "the others); it explains the model, not the patient",
    }
    # A text with no word of the vocabulary (empty, stop words, punctuation, emoji) carries no information: the
    # logistic model would answer its intercept (p = 0.97 "abnormal") with full confidence. The graph counts the
    # known words; the runtime refuses a text with none.
    evidence = Evidence(output="known_tokens", minimum=1.0,
                        meaning="distinct vocabulary words in the text after stop words; 0: nothing to read")
    codings = Codings(fhir=FhirResult(
        "RiskAssessment", Coding(RESULT_CODES, "chest-xray-report-abnormality", "Abnormal study described by a chest "
                                 "X-ray report's text (model assessment)"),
        outcome=Coding(RESULT_CODES, "abnormal-chest-xray-report", "Chest X-ray report describes an abnormal study")))
    card = Card(
        summary="TF-IDF + logistic-regression classifier of chest X-ray report text: normal vs abnormal.",
        intended_use=(
            "Retrospective quality assurance and worklist research on English chest X-ray reports: flagging "
            "reports whose FINDINGS/IMPRESSION text describes an abnormal study, for review by a person."
        ),
        out_of_scope=(
            "Diagnosis or any decision about a patient's care; the model reads report text, never images.",
            "Reports in other languages, other modalities or body parts, or free-text notes that are not "
            "radiology reports.",
            "Commercial use: the training reports are licensed CC BY-NC-ND 4.0.",
        ),
        limitations=(
            "Labels come from MeSH 'major' indexing of the reports (Indiana University, Open-i), not from "
            "clinical follow-up; 95 reports never indexed and 28 without FINDINGS/IMPRESSION text are excluded.",
            "One institution's reporting style and templates; de-identification replaced words by 'XXXX'.",
            "Bag of words (unigrams): NLTK's stop words include 'no' and 'not', so 'no effusion' and "
            "'effusion' differ only through the other words of the report.",
            "Tokens are ASCII letters and digits after lowercasing; accented and non-Latin letters split or "
            "drop words (identically in scikit-learn and in the graph, which the parity gate checks).",
        ),
        ethical_considerations=(
            "De-identified public reports (CC BY-NC-ND 4.0, Indiana University / National Library of Medicine).",
            "A false 'normal' on an abnormal report is the costly error: review the sensitivity and its CI.",
        ),
    )

    def load_data(self, *, sample: int | None = None, seed: int = 0, progress: Progress = quiet) -> Dataset:
        rows, excluded = reports.load(sample=sample, seed=seed)
        texts = [r.text for r in rows]
        y = np.asarray([r.label for r in rows], dtype=np.int64)
        train, test, split = reports.grouped_split(texts, y, seed=seed)
        split.update(sample=sample, seed=seed)
        progress(f"{len(rows)} reports ({int(y.sum())} abnormal); excluded {excluded}")
        X = np.asarray(texts, dtype=object).reshape(-1, 1)
        stop = text.stopwords()
        return Dataset(
            X_train=X[train], y_train=y[train], X_test=X[test], y_test=y[test],
            sources=(get_source(reports.SOURCE).provenance(),),
            split=split,
            description=(
                f"{len(rows)} Indiana University chest X-ray reports (via the torchxrayvision wheel); "
                f"abnormal = any MeSH major term other than 'normal' ({int(y.sum())} abnormal, "
                f"{int(len(y) - y.sum())} normal); excluded: {excluded['no_text']} without FINDINGS/IMPRESSION "
                f"text, {excluded['unlabelled']} with 'No Indexing' only"
            ),
            preprocessing=(
                f"FINDINGS + IMPRESSION joined by a space; inside the graph: lowercase (Unicode simple mapping), "
                f"NLTK RegexpTokenizer pattern {text.TOKEN_PATTERN!r}, NLTK English stop words ({len(stop)}), "
                f"TF-IDF (unigrams, min_df={MIN_DF}, l2), logistic regression (C={C:g})"
            ),
            facts={"excluded": excluded, "report_ids": [rows[i].uid for i in test[:5]],
                   "test_uids": [rows[i].uid for i in test]},
            edge=_edge_inputs(X[test]),
        )

    def build(self, dataset: Dataset) -> Any:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline

        return Pipeline([
            ("tfidf", text.vectorizer(min_df=MIN_DF)),
            ("classifier", LogisticRegression(C=C, max_iter=5000)),
        ])

    def fit(self, model: Any, dataset: Dataset, progress: Progress = quiet) -> Any:
        progress(f"fitting TF-IDF + LogisticRegression on {dataset.n_train} reports")
        model.fit(docs(dataset.X_train), dataset.y_train)
        model.known_pairs_ = known_pairs(docs(dataset.X_train))  # for the domain guard: word pairs of >= 2 reports
        progress(f"vocabulary: {len(model.named_steps['tfidf'].vocabulary_)} tokens")
        return model

    def native_outputs(self, model: Any, X: Any) -> dict[str, np.ndarray]:
        texts = docs(X)
        known = model.named_steps["tfidf"].transform(texts).getnnz(axis=1).astype(np.float32)
        return {**super().native_outputs(model, texts), "known_tokens": known}

    def extra_outputs(self) -> tuple[TensorSpec, ...]:
        return (TensorSpec("known_tokens", "float32", ("N",),
                           description="distinct vocabulary words found in each text (0: no known word)"),)

    def augment_graph(self, onx: Any, model: Any, dataset: Dataset) -> None:
        """Count the non-zero entries of the TF-IDF vector per row (Greater(0) -> Cast -> ReduceSum), and the share
        of tokens outside the vocabulary (``unknown_share``, for the domain guard): 1 - vocabulary tokens (the
        term counts' sum) / all tokens (the tokenizer's non-pad cells, counted with a LabelEncoder)."""
        from onnx import TensorProto, helper, numpy_helper

        tfidf = next(n for n in onx.graph.node if n.op_type == "TfIdfVectorizer")
        tokenizer = next(n for n in onx.graph.node if n.op_type == "Tokenizer")
        pad = next(helper.get_attribute_value(a) for a in tokenizer.attribute if a.name == "pad_value").decode()
        g = onx.graph
        for opset in onx.opset_import:  # LabelEncoder's default_float needs ai.onnx.ml >= 2 (same other ops)
            if opset.domain == "ai.onnx.ml" and opset.version < 2:
                opset.version = 2
        g.initializer.extend([numpy_helper.from_array(np.array([1], np.int64), "unknown_axis"),
                              numpy_helper.from_array(np.array(1.0, np.float32), "unknown_one")])
        g.node.extend([
            helper.make_node("LabelEncoder", [tokenizer.output[0]], ["unknown_is_token"], domain="ai.onnx.ml",
                             keys_strings=[pad], values_floats=[0.0], default_float=1.0),
            helper.make_node("ReduceSum", ["unknown_is_token", "unknown_axis"], ["unknown_tokens"], keepdims=0),
            helper.make_node("Max", ["unknown_tokens", "unknown_one"], ["unknown_total"]),
            helper.make_node("ReduceSum", [tfidf.output[0], "unknown_axis"], ["unknown_known"], keepdims=0),
            helper.make_node("Div", ["unknown_known", "unknown_total"], ["unknown_known_share"]),
            helper.make_node("Sub", ["unknown_one", "unknown_known_share"], ["unknown_share"]),
        ])
        g.initializer.append(numpy_helper.from_array(np.zeros((), np.float32), "known_tokens_zero"))
        g.initializer.append(numpy_helper.from_array(np.array([1], np.int64), "known_tokens_axis"))
        g.node.extend([
            helper.make_node("Greater", [tfidf.output[0], "known_tokens_zero"], ["known_tokens_present"]),
            helper.make_node("Cast", ["known_tokens_present"], ["known_tokens_flags"], to=TensorProto.FLOAT),
            helper.make_node("ReduceSum", ["known_tokens_flags", "known_tokens_axis"], ["known_tokens"], keepdims=0),
        ])
        g.output.append(helper.make_tensor_value_info("known_tokens", TensorProto.FLOAT, ["N"]))
        _add_pair_share(onx, tokenizer.output[0], sorted(getattr(model, "known_pairs_", ())))

    def native_predictors(self, model: Any) -> dict[str, Any]:
        # the native pipeline takes a flat list of documents; the graph's (N, 1) rows are flattened first
        return {"sklearn predict_proba": lambda X: model.predict_proba(docs(X))}

    def inputs(self, dataset: Dataset) -> tuple[TensorSpec, ...]:
        stop_file = text.NLTK_DATA / "corpora" / "stopwords" / text.STOPWORDS_LANGUAGE
        return (
            TensorSpec(
                "text", "string", ("N", 1),
                description="one report per row (FINDINGS + IMPRESSION), raw UTF-8 text; (N,) is accepted too",
                facts={
                    "token_pattern": text.TOKEN_PATTERN,
                    "tokenizer": "nltk.tokenize.RegexpTokenizer (re2 Tokenizer in the graph)",
                    "lowercase": "Unicode simple case mapping (StringNormalizer, locale C.UTF-8)",
                    "stop_words": f"NLTK english, {len(text.stopwords())} words, shipped with medinfer",
                    "stop_words_sha256": sha256_file(stop_file),
                    "language": "English",
                },
            ),
        )

    def frameworks(self) -> dict[str, str]:
        import nltk

        return {**super().frameworks(), "nltk": nltk.__version__}

    def evaluate(self, scores: np.ndarray, y: np.ndarray, X: Any, threshold: float | None) -> dict[str, Any]:
        t = DEFAULT_THRESHOLD if threshold is None else threshold
        y = self.outcome(y)
        metrics = binary_metrics(y, scores, t)

        def f1(yy: np.ndarray, ss: np.ndarray) -> float:
            pred = ss >= t
            tp = float(np.sum(pred & (yy == 1)))
            denom = float(np.sum(pred) + np.sum(yy == 1))
            if denom == 0:
                raise ValueError("no positives predicted or present")
            return 2 * tp / denom

        majority = np.full(len(y), float(np.mean(y) >= 0.5))
        metrics["heldout"]["f1"] = bootstrap(f1, y, scores)
        metrics["baseline"]["heldout"]["f1"] = bootstrap(f1, y, majority)
        return metrics

    # -- applicability domain -----------------------------------------------------------------------------------
    domain_method = ("the largest of: the share of a text's tokens outside the vocabulary (stop words counted), "
                     "1 / (1 + the number of vocabulary words it contains), and the share of its word pairs (two "
                     "consecutive tokens) never seen in two training reports (word salad, shuffled words); each "
                     "relative to in-domain data's 99th percentile")

    def domain_features(self, model: Any) -> Any:
        tfidf = model.named_steps["tfidf"]
        vocab = tfidf.vocabulary_
        tokenize = text.tokenizer().tokenize
        pairs = set(getattr(model, "known_pairs_", ()))

        def features(X: Any) -> dict[str, np.ndarray]:
            texts = docs(X)
            tokens = [tokenize(text.simple_lower(t)) for t in texts]
            share = np.array([1.0 - sum(w in vocab for w in ts) / max(len(ts), 1) for ts in tokens])
            known = np.asarray((tfidf.transform(texts) > 0).sum(axis=1), dtype=np.float32).reshape(-1)
            unknown_pairs = np.array([max(len(ts) - 1 - sum(p in pairs for p in zip(ts, ts[1:])), 0)
                                      / max(len(ts) - 1, 1) for ts in tokens])
            return {"unknown_share": share, "known_tokens": known,  # known words as the graph counts them
                    "unknown_pair_share": unknown_pairs}

        return features

    def domain_sources(self, onx: Any) -> dict[str, str]:
        return {"unknown_share": "unknown_share", "known_tokens": "known_tokens",
                "unknown_pair_share": "unknown_pair_share"}

    def domain_parts(self, model: Any, dataset: Dataset) -> list[Part]:
        # Measured on the real build: a cosine kNN distance to 1000 training reports added 0.05 AUROC on one shift
        # (IMPRESSION-only reports, 0.88 -> 0.93) for ~57 µs per report, 3.5x the model itself: left out.
        # Word pairs: one more TfIdfVectorizer over the graph's own tokens, every known pair counted in one column
        # (the pairs are fitted with the model, see fit, and saved with it).
        return [domain.value("unknown_share", "share of tokens outside the vocabulary"),
                # a text with few words the model knows (e.g. a one-line impression) carries little evidence
                domain.inverse("known_tokens", "few vocabulary words: 1 / (1 + known words)"),
                domain.value("unknown_pair_share", "share of word pairs never seen in training reports")]

    def domain_shifts(self, model: Any, dataset: Dataset, guard: DomainGuard) -> dict[str, Shift]:
        test = set(dataset.facts.get("test_uids", ()))
        rows, _ = reports.parse(fetch(reports.SOURCE))
        sections = [dict(r.sections) for r in rows if r.uid in test]
        impression = [s["IMPRESSION"] for s in sections if s.get("IMPRESSION")]
        indication = [s["INDICATION"] for s in sections if len(s.get("INDICATION", "").split()) >= 3]
        other = python_documentation(len(impression) or 200)
        held = docs(dataset.X_test)
        rng = np.random.default_rng(0)
        vocab = sorted(model.named_steps["tfidf"].vocabulary_)
        words = [t.split() for t in held]

        def shift(kind: str, texts: list[str], description: str, role: str, family: str,
                  synthetic: bool = True, source: str = "", note: str = "") -> Shift:
            return Shift(kind, guard.score(_column(texts)), description, role=role, family=family,
                         synthetic=synthetic, source=source, note=note)

        return {
            "impression_only": shift("subtle", impression, "held-out reports with the FINDINGS removed (IMPRESSION "
                                     "only)", "design", "report sections", synthetic=False,
                                     note="many impressions are one of the sentences findings also use ('no acute "
                                     "cardiopulmonary abnormality'): in words and word pairs they are ordinary text"),
            "indication_section": shift("subtle", indication, "the INDICATION section of held-out reports (the "
                                        "clinical question, not a finding)", "design", "report sections",
                                        synthetic=False),
            "python_documentation": shift("gross", other[0], "paragraphs of English prose that are not radiology "
                                          "reports", "design", "other documents", synthetic=False, source=other[1]),
            "word_salad": shift("nonsense", [" ".join(rng.choice(vocab, max(len(w), 1))) for w in words],
                                "vocabulary words in random order, as many as a held-out report has", "design",
                                "word salad"),
            "words_shuffled": shift("nonsense", [" ".join(rng.permutation(w)) for w in words],
                                    "held-out reports with their words in random order", "design", "word order"),
            # evaluation families: held out while choosing the parts
            "letters_scrambled": shift("nonsense", [" ".join(_scramble(x, rng) for x in w) for w in words],
                                       "held-out reports with the letters of every word in random order",
                                       "evaluation", "scrambled letters"),
            "vocabulary_sorted": shift("nonsense", [" ".join(sorted(w)) for w in words],
                                       "held-out reports with their words sorted alphabetically", "evaluation",
                                       "sorted words"),
            "typos_30pct": shift("subtle", [" ".join(_typo(x, rng) if rng.random() < 0.3 else x for x in w)
                                            for w in words],
                                 "held-out reports with a typing error (one letter replaced) in 30 % of the words",
                                 "evaluation", "typos", note="a typo makes one word unknown and two "
                                 "pairs unseen: 30 % of the words changed stays within what long real reports show"),
        }

    def plots(self, model: Any, dataset: Dataset, folder: Path, point: OperatingPoint) -> dict[str, str]:
        from .. import plots

        y = self.outcome(dataset.y_test)
        scores = self.scores(self.native_outputs(model, dataset.X_test))
        t = DEFAULT_THRESHOLD if point.threshold is None else point.threshold
        return {
            "Held-out ROC with the operating point": plots.roc(y, scores, t, folder / "roc.png", "abnormal"),
            "Held-out confusion matrix at the operating point": plots.confusion(
                np.asarray(dataset.y_test).astype(int), self.decisions(scores, t), self.labels or (),
                folder / "confusion.png"),
            "Held-out calibration (reliability diagram with counts per bin)": plots.calibration_binary(
                y, scores, folder / "calibration.png", "abnormal", t),
        }


def _add_pair_share(onx: Any, tokens: str, pairs: list[tuple[str, str]]) -> None:
    """``unknown_pair_share`` (N,): the share of a text's consecutive token pairs that are not in ``pairs`` (0 for a
    text of fewer than two tokens): a second TfIdfVectorizer over the graph's own tokens with every known pair
    counted into one column, against the token count ``unknown_tokens`` made above."""
    from onnx import helper, numpy_helper

    g = onx.graph
    pool = [w for p in pairs for w in p] or ["#", "#"]  # a pair of pads never occurs: no known pair
    g.initializer.extend([numpy_helper.from_array(np.array([-1], np.int64), "pairs_flat"),
                          numpy_helper.from_array(np.array(0.0, np.float32), "pairs_zero")])
    g.node.extend([
        helper.make_node("TfIdfVectorizer", [tokens], ["pairs_counts"], min_gram_length=2, max_gram_length=2,
                         max_skip_count=0, mode="TF", ngram_counts=[0, 0], ngram_indexes=[0] * (len(pool) // 2),
                         pool_strings=pool),
        helper.make_node("Reshape", ["pairs_counts", "pairs_flat"], ["pairs_known"]),
        helper.make_node("Sub", ["unknown_tokens", "unknown_one"], ["pairs_total"]),  # tokens - 1
        helper.make_node("Sub", ["pairs_total", "pairs_known"], ["pairs_unknown0"]),
        helper.make_node("Max", ["pairs_unknown0", "pairs_zero"], ["pairs_unknown"]),
        helper.make_node("Max", ["pairs_total", "unknown_one"], ["pairs_denominator"]),
        helper.make_node("Div", ["pairs_unknown", "pairs_denominator"], ["unknown_pair_share"]),
    ])


def known_pairs(texts: list[str], min_df: int = MIN_DF) -> list[tuple[str, str]]:
    """Pairs of consecutive tokens (the graph's tokenization, stop words included) found in at least ``min_df``
    training texts, sorted."""
    from collections import Counter

    tokenize = text.tokenizer().tokenize
    counts: Counter[tuple[str, str]] = Counter()
    for t in texts:
        tokens = tokenize(text.simple_lower(t))
        counts.update(set(zip(tokens, tokens[1:])))
    return sorted(p for p, c in counts.items() if c >= min_df)


def _scramble(word: str, rng: np.random.Generator) -> str:
    return "".join(rng.permutation(list(word)))


def _typo(word: str, rng: np.random.Generator) -> str:
    if not word:
        return word
    i = int(rng.integers(len(word)))
    return word[:i] + "abcdefghijklmnopqrstuvwxyz"[int(rng.integers(26))] + word[i + 1:]


def _column(texts: list[str]) -> np.ndarray:
    return np.asarray(texts, dtype=object).reshape(-1, 1)


def python_documentation(limit: int) -> tuple[list[str], str]:
    """Paragraphs of the Python documentation topics shipped in the standard library (``pydoc_data.topics``, PSF
    licence): English prose that is not a radiology report. Returns (paragraphs, provenance)."""
    import platform
    import pydoc_data.topics as topics

    paragraphs = [p.strip() for v in topics.topics.values() for p in v.split("\n\n") if len(p.split()) > 15]
    digest = sha256_file(topics.__file__)
    return paragraphs[:limit], (f"python=={platform.python_version()}:pydoc_data/topics.py (sha256 {digest[:16]}…, "
                                "PSF licence)")


def _edge_inputs(X_test: np.ndarray) -> np.ndarray:
    """Hostile strings plus held-out reports shouted in capitals, one with every I as a dotted capital İ."""
    shouted = [d.upper() for d in docs(X_test[:N_UPPERCASED_EDGE])]
    if shouted:
        shouted.append(shouted[0].replace("I", "\u0130"))
    return np.asarray(reports.hostile_strings() + shouted, dtype=object).reshape(-1, 1)
