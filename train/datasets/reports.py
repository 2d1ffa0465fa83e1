"""Indiana University chest X-ray reports (shipped in the torchxrayvision wheel) → text + normal/abnormal label.

Each report is one XML file in ``NLMCXR_reports.tgz`` with FINDINGS / IMPRESSION sections and MeSH ``major``
terms. A report is *normal* when its only major term is ``normal``; any other term makes it *abnormal*.
Reports with neither FINDINGS nor IMPRESSION (no text to classify) and reports whose only term is
``No Indexing`` (never labelled) are excluded and counted.
"""

from __future__ import annotations

import io
import tarfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

import numpy as np
from medinfer.errors import DatasetError

from .sources import Source, fetch, register_source

register_source(Source(
    name="iu_cxr_reports",
    package="torchxrayvision",
    version="1.5.7",
    member="torchxrayvision/data/NLMCXR_reports.tgz",
    sha256="8fb6de7eec73d8c3665067ad4bb003ccd57f971ae316d2642e1627ac7268667a",
    licence="CC BY-NC-ND 4.0 (Indiana University chest X-ray collection, Open-i)",
    citation=(
        "Demner-Fushman D. et al., Preparing a collection of radiology examinations for distribution "
        "and retrieval, J Am Med Inform Assoc 23(2):304-310 (2016); Indiana University / NLM Open-i, "
        "as shipped with torchxrayvision (Cohen J. P. et al., MIDL 2022)"
    ),
    description="3955 de-identified chest X-ray reports (XML: FINDINGS, IMPRESSION, MeSH major terms)",
))

SOURCE = "iu_cxr_reports"
LABELS = ("normal", "abnormal")
SECTIONS = ("FINDINGS", "IMPRESSION")
UNLABELLED = ("No Indexing",)


class ReportFormatError(DatasetError):
    """The report archive does not have the layout this loader knows."""


@dataclass(frozen=True)
class Report:
    uid: str
    text: str
    label: int  # index into LABELS
    major: tuple[str, ...]
    sections: tuple[tuple[str, str], ...] = ()  # every labelled section (INDICATION, COMPARISON, ...) as read


def parse(archive: bytes) -> tuple[list[Report], dict[str, int]]:
    """Reports with text and a label, in archive order, and the counts of excluded ones.

    Raises:
        ReportFormatError: a member is not XML of the expected layout, or the archive holds no reports.
    """
    reports: list[Report] = []
    excluded = {"no_text": 0, "unlabelled": 0}
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        for member in tar.getmembers():
            if not (member.isfile() and member.name.endswith(".xml")):
                continue
            handle = tar.extractfile(member)
            try:
                root = ET.fromstring(handle.read() if handle else b"")
            except ET.ParseError as exc:
                raise ReportFormatError(f"{member.name} is not well-formed XML: {exc}") from None
            sections = {el.get("Label"): (el.text or "").strip() for el in root.iter("AbstractText")}
            text = " ".join(sections[s] for s in SECTIONS if sections.get(s))
            major = tuple((el.text or "").strip() for el in root.iter("major"))
            if not text:
                excluded["no_text"] += 1
                continue
            if not major or all(m in UNLABELLED for m in major):
                excluded["unlabelled"] += 1
                continue
            uid_el = root.find("uId")
            uid = uid_el.get("id", member.name) if uid_el is not None else member.name
            reports.append(Report(str(uid), text, int(major != ("normal",)), major,
                                  tuple((k, v) for k, v in sections.items() if k and v)))
    if not reports:
        raise ReportFormatError("the archive holds no report with FINDINGS/IMPRESSION text and MeSH terms")
    return reports, excluded


def load(sample: int | None = None, seed: int = 0) -> tuple[list[Report], dict[str, int]]:
    """The labelled reports (optionally a seeded random sample of them) and the exclusion counts."""
    reports, excluded = parse(fetch(SOURCE))
    if sample is not None and sample < len(reports):
        keep = np.sort(np.random.default_rng(seed).choice(len(reports), size=sample, replace=False))
        reports = [reports[i] for i in keep]
    return reports, excluded


def grouped_split(texts: list[str], y: np.ndarray, test_fraction: float = 0.2,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Stratified split in which identical report texts never straddle train and test.

    A quarter of the IU reports are verbatim templates ("The heart is normal in size. ... No acute disease."
    appears 50 times); a plain random split would score the model on texts it was trained on.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    n_splits = max(2, round(1 / test_fraction))
    groups = np.unique([" ".join(t.lower().split()) for t in texts], return_inverse=True)[1]
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    train, test = next(folds.split(np.zeros(len(y)), y, groups))
    info = {
        "method": "stratified, grouped by identical (whitespace- and case-normalised) report text",
        "test_fraction": round(len(test) / len(y), 3),
        "distinct_texts": int(groups.max() + 1),
        "n_train": int(len(train)),
        "n_test": int(len(test)),
        "test_positive_rate": round(float(y[test].mean()), 3),
    }
    return np.sort(train), np.sort(test), info


def hostile_strings() -> list[str]:
    """Inputs that break naive text pipelines; the parity gate runs them through both engines.

    Stop-word-only documents are included on purpose: a StringNormalizer that removed stop words at document
    level would drop those rows and shift every later row of the batch.
    """
    return [
        "",
        " ",
        "   \t\n\r  ",
        "...!!!???,,,;;;:::---",
        "()[]{}<>/\\|@#$%^&*_+=~`'\"",
        "0",
        "12 34 5678 3.14 1,000 2cm T12 L1-L2",
        "HEART SIZE NORMAL. LUNGS CLEAR.",
        "hEaRt SiZe NoRmAl, lUnGs ClEaR, nO pNeUmOtHoRaX",
        "Épanchement pleural droit; opacité basale, cœur élargi",
        "Ünïcödé çäsé: ÀÉÎÕÜ àéîõü ñ ß ø å",
        "İNFİLTRATE İN THE LEFT LOWER LOBE; İ",
        "ſtable KELVIN K ﬁbrosis ﬀ",
        "ΣΟΦΙΑ ΟΔΟΣ όγκος στον πνεύμονα",
        "右肺下叶结节，建议随访。",
        "Лёгкие без очаговых изменений. Синусы свободны.",
        "مرض الرئة",
        "胸部X線：異常なし",
        "🙂🫁💔 effusion 🫀 pneumothorax 👨‍⚕️",
        "\u200b\u200d\ufeff zero\u200bwidth \u00a0nbsp",
        "the",
        "The",
        "and",
        "no",
        "the and of no not",
        "effusion " * 11_112,  # 100 kB of one repeated token
        "pneumothorax pneumothorax pneumothorax cardiomegaly cardiomegaly",
        ("Heart size normal. Lungs clear. " * 3200)[:100_000],  # 100 kB of report text
        "x" * 100_000,  # 100 kB single token, not in any vocabulary
        "Normal chest. No pneumothorax, effusion or consolidation.",
    ]
