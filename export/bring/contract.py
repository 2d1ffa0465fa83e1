"""The contract of a brought model: what the source and the reference data tell, completed from a declared file.

Inferred (never asked for): input and output names, dtypes and shapes (from the graph the source converts to, the
batch axis dynamic), the score and label outputs of a source kind with a known layout (scikit-learn and boosters:
``label`` + ``probabilities``), and the only float output when there is one. Declared in ``contract.toml`` (or
``.json``; the format: docs/bring-your-own-model.md): what no file can tell - the name, version, task, labels,
positive label, operating threshold, each input's units and value range, the card's summary and intended use.
A field that is needed and neither inferred nor declared is a :class:`UsageError` naming it with an example line;
nothing is guessed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medinfer.decision import TASKS
from medinfer.errors import UsageError
from medinfer.manifest import Card, TensorSpec

from ...train.spec import ParityTolerance

#: The keys a contract file may hold at its top level (anything else is refused: a typo must not pass silently).
TOP_KEYS = ("name", "version", "task", "description", "labels", "positive_label", "threshold", "threshold_rationale",
            "score_output", "label_output", "inputs", "outputs", "input_names", "output_names", "card", "parity",
            "data", "preprocessing")
INPUT_KEYS = ("units", "range", "description", "names", "shape", "dtype", "facts", "feature_ranges")
OUTPUT_KEYS = ("description", "units", "names", "facts")
CARD_KEYS = ("summary", "intended_use", "out_of_scope", "limitations", "ethical_considerations")
PARITY_KEYS = ("atol", "rtol", "max_decision_flips")
DATA_KEYS = ("description", "licence", "citation", "split", "synthetic", "preprocessing")
NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def need(field_name: str, example: str, why: str = "") -> UsageError:
    """The error for a field the contract must declare: its name, why, and a line to add."""
    return UsageError(f"the contract does not declare '{field_name}'{(' (' + why + ')') if why else ''}; add it "
                      f"to the contract file (--contract contract.toml), e.g.  {example}")


def read_contract(path: str | Path | None) -> dict[str, Any]:
    """The declared contract (``.toml`` or ``.json``); ``{}`` when no file is given.

    Raises:
        UsageError: unreadable, not TOML/JSON, or a key this format does not know (named, with the known ones).
    """
    if path is None:
        return {}
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"contract file {p} does not exist (a .toml or .json file: docs/bring-your-own-model.md)")
    text = p.read_text(encoding="utf-8")
    suffix = p.suffix.lower()
    if suffix not in (".json", ".toml"):
        raise UsageError(f"contract file {p} must end in .toml or .json")
    try:
        if suffix == ".json":
            doc = json.loads(text)
        else:
            import tomllib

            doc = tomllib.loads(text)
    except ValueError as exc:  # json.JSONDecodeError and tomllib.TOMLDecodeError are ValueErrors
        raise UsageError(f"contract file {p} is not valid {p.suffix[1:].upper()}: {exc}") from None
    if not isinstance(doc, dict):
        raise UsageError(f"contract file {p} must hold a table/object at its top level")
    _check_keys(doc, TOP_KEYS, "the contract")
    for section, keys in (("inputs", INPUT_KEYS), ("outputs", OUTPUT_KEYS)):
        for name, entry in (doc.get(section) or {}).items():
            if not isinstance(entry, dict):
                raise UsageError(f"[{section}.{name}] must be a table of fields ({', '.join(keys)})")
            _check_keys(entry, keys, f"[{section}.{name}]")
    for section, keys in (("card", CARD_KEYS), ("parity", PARITY_KEYS), ("data", DATA_KEYS)):
        if section in doc:
            _check_keys(doc[section], keys, f"[{section}]")
    return doc


def _check_keys(doc: dict[str, Any], known: tuple[str, ...], where: str) -> None:
    import difflib

    for key in doc:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UsageError(f"{where} has an unknown field {key!r}{hint}"
                             + f" (known: {', '.join(known)})")


@dataclass(frozen=True)
class GraphTensor:
    """A graph input or output as the converted ONNX declares it."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]


@dataclass(frozen=True)
class Contract:
    """The whole contract of a brought model (declared + inferred), what :class:`~.spec.BroughtSpec` serves."""

    name: str
    version: str
    task: str
    description: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    score_output: str
    label_output: str | None
    labels: tuple[str, ...] | None
    positive_label: str | None
    threshold: float | None
    threshold_rationale: str
    card: Card
    parity: ParityTolerance
    data: dict[str, Any] = field(default_factory=dict)
    preprocessing: str = ""


def header(doc: dict[str, Any]) -> dict[str, Any]:
    """The fields every later step needs, checked first (before any conversion): name, version, task, labels,
    positive label, threshold.

    Raises:
        UsageError: one that is missing or malformed, naming it with an example.
    """
    name = doc.get("name")
    if not name:
        raise need("name", 'name = "ct_nodule_densenet"', "the bundle's folder and the model's name")
    if not isinstance(name, str) or not NAME.match(name):
        raise UsageError(f"contract 'name' must be lowercase letters, digits and '_' (starting with a letter), got "
                         f"{name!r}")
    version = doc.get("version")
    if not version:
        raise need("version", 'version = "1.0.0"')
    task = doc.get("task")
    if not task:
        raise need("task", 'task = "binary_classification"', f"one of {', '.join(TASKS)}")
    if task not in TASKS:
        raise UsageError(f"contract 'task' must be one of {', '.join(TASKS)}, got {task!r}")
    labels = doc.get("labels")
    if task != "regression":
        if not labels or not isinstance(labels, list) or len(labels) < 2:
            raise need("labels", 'labels = ["benign", "malignant"]', f"a {task} names its classes, in the order of "
                       "the score output's columns")
        labels = tuple(str(v) for v in labels)
    else:
        labels = None
    positive, threshold = doc.get("positive_label"), doc.get("threshold")
    if task == "binary_classification":
        if positive is None:
            raise need("positive_label", f'positive_label = "{labels[-1]}"', "which label the threshold decides for")
        if positive not in labels:
            raise UsageError(f"contract 'positive_label' {positive!r} is not one of the labels {list(labels)}")
        if threshold is None:
            raise need("threshold", "threshold = 0.5", "the operating point: a positive answer when score >= it")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
            raise UsageError(f"contract 'threshold' must be a number in [0, 1], got {threshold!r}")
        threshold = float(threshold)
    else:
        positive, threshold = None, None
    return {"name": name, "version": str(version), "task": task, "labels": labels, "positive_label": positive,
            "threshold": threshold}


def input_spec(doc: dict[str, Any], tensor: GraphTensor) -> TensorSpec:
    """One input's contract: the graph's name, dtype and shape; units and range as declared.

    Raises:
        UsageError: a numeric input without declared ``units`` or ``range`` (the runtime checks the range on every
            call; the card states the units), or a malformed one.
    """
    decl = (doc.get("inputs") or {}).get(tensor.name) or {}
    section = f"[inputs.{tensor.name}]"
    units = decl.get("units")
    value_range = decl.get("range")
    if tensor.dtype != "string":
        if not units:
            raise need(f"inputs.{tensor.name}.units", f'{section} units = "HU"   (or "1" for a unitless value)')
        if value_range is None:
            raise need(f"inputs.{tensor.name}.range", f"{section} range = [-1024.0, 3071.0]",
                       "the values the model was made for; the runtime refuses values outside it")
        if (not isinstance(value_range, list) or len(value_range) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value_range)
                or value_range[0] > value_range[1]):
            raise UsageError(f"contract {section} range must be [low, high] numbers with low <= high, got "
                             f"{value_range!r}")
    names = decl.get("names")
    ranges = decl.get("feature_ranges")
    return TensorSpec(tensor.name, tensor.dtype, tensor.shape, description=str(decl.get("description", "")),  # type: ignore[arg-type]
                      units=str(units) if units else None,
                      range=(float(value_range[0]), float(value_range[1])) if value_range is not None else None,
                      names=tuple(str(n) for n in names) if names else None, facts=dict(decl.get("facts") or {}),
                      feature_ranges=tuple((float(a), float(b)) for a, b in ranges) if ranges else None)


def output_spec(doc: dict[str, Any], tensor: GraphTensor, default_description: str = "") -> TensorSpec:
    decl = (doc.get("outputs") or {}).get(tensor.name) or {}
    names = decl.get("names")
    return TensorSpec(tensor.name, tensor.dtype, tensor.shape,  # type: ignore[arg-type]
                      description=str(decl.get("description", default_description)),
                      units=decl.get("units"), names=tuple(names) if names else None,
                      facts=dict(decl.get("facts") or {}))


def score_and_label(doc: dict[str, Any], outputs: tuple[GraphTensor, ...], known: tuple[str, str | None] | None,
                    task: str) -> tuple[str, str | None]:
    """The score output (declared; else the source kind's known layout; else the one float output) and the label
    output (declared, or the known layout's).

    Raises:
        UsageError: several float outputs and none declared, or a declared name that is not an output.
    """
    names = [o.name for o in outputs]
    score, label = doc.get("score_output"), doc.get("label_output")
    if score is None and known is not None:
        score, label = known[0], label if label is not None else known[1]
    if score is None:
        floats = [o.name for o in outputs if o.dtype.startswith("float")]
        if len(floats) != 1:
            raise need("score_output", f'score_output = "{floats[0] if floats else names[0]}"',
                       f"the graph has {len(floats)} float outputs ({', '.join(floats) or 'none'}): which one "
                       f"holds the {'class probabilities' if task != 'regression' else 'predicted values'}?")
        score = floats[0]
    for what, value in (("score_output", score), ("label_output", label)):
        if value is not None and value not in names:
            raise UsageError(f"contract '{what}' names {value!r}, which is not an output of the model "
                             f"(outputs: {', '.join(names)})")
    return str(score), (str(label) if label is not None else None)


def card_of(doc: dict[str, Any], absent: tuple[str, ...]) -> Card:
    """The model card's declared fields (summary and intended use are required), plus what the bring pipeline knows
    is absent (no guard, no labels, ...) as limitations.

    Raises:
        UsageError: no summary or intended use.
    """
    card = doc.get("card") or {}
    for key, example in (("summary", '"A 2-D DenseNet121 scoring CT patches for a nodule"'),
                         ("intended_use", '"Research triage of CT patches; a reader confirms every finding"')):
        if not card.get(key):
            raise need(f"card.{key}", f"[card] {key} = {example}", "the model card states it")
    return Card(summary=str(card["summary"]), intended_use=str(card["intended_use"]),
                out_of_scope=tuple(card.get("out_of_scope") or ()),
                limitations=(*tuple(card.get("limitations") or ()), *absent),
                ethical_considerations=tuple(card.get("ethical_considerations") or ()))


def tolerance(doc: dict[str, Any], default: ParityTolerance) -> ParityTolerance:
    """The parity tolerance: declared in ``[parity]``, else the source kind's default."""
    p = doc.get("parity") or {}
    return ParityTolerance(atol=float(p.get("atol", default.atol)), rtol=float(p.get("rtol", default.rtol)),
                           max_decision_flips=int(p.get("max_decision_flips", default.max_decision_flips)))
