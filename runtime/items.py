"""Per-item answers of one call: ``Model.predict(x, on_error="item")``.

A batch answers each valid item and gives each invalid or refused item its own typed reason, in order: an item
that fails validation (a NaN row, a value out of range, a sequence of another length, a text that is not a
string), one that carries no information (a text with no known word), one outside the applicability domain under
``out_of_domain="no_result"``, one the runtime failed on. The whole call fails only when asked to
(``on_error="raise"``, the default of :meth:`~medinfer.Model.predict`, which keeps its one-Prediction answer and
its hot path).

How: the call is validated whole first; when that passes (the usual case) the batch runs once and the per-item
checks (evidence, domain) mark rows. When it does not, each item is validated alone, the valid ones run together
(items of one shape in one run, :func:`~medinfer.request_groups.group_feeds`), and a run that fails is retried
item by item, so one bad item never costs its neighbours their answers. The audit trail gets one record of the
answered items (the record ``predict`` of those alone would write) and one per refused item, with its reason.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .decision import in_domain
from .errors import (
    AuditError,
    InferenceError,
    InputError,
    MedinferError,
    NoInformationError,
    OutOfDomainError,
    UsageError,
)
from .failsafe import NoResult
from .prediction import Prediction, PredictionMeta

if TYPE_CHECKING:
    from .manifest import Manifest
    from .model import Model

#: What ``Model.predict(on_error=...)`` takes: ``"raise"`` (one Prediction, or the call raises) or ``"item"``.
ON_ITEM_ERROR = ("raise", "item")


class ItemResults(Sequence[Any]):
    """The per-item answers of one call, in input order: each item is a one-sample :class:`Prediction` or a
    :class:`NoResult` (``reason`` = the error code, ``index`` = the item's position).

    Attributes:
        single: the input was one sample (then there is one item).
        model, version: the model that answered.
        answered: the answered items' positions (ascending).
    """

    def __init__(self, meta: PredictionMeta, n: int, single: bool, parts: list[tuple[np.ndarray, Prediction]],
                 failures: dict[int, NoResult], errors: dict[int, MedinferError] | None = None) -> None:
        self._meta = meta
        self._errors = errors or {}
        self.model, self.version, self.single = meta.model, meta.version, single
        self._n = n
        self._parts = parts
        self.failures = failures
        self.answered = np.array(sorted(i for idx, _ in parts for i in idx.tolist()), dtype=np.int64)
        self._where = {int(i): (k, row) for k, (idx, _) in enumerate(parts) for row, i in enumerate(idx.tolist())}

    def __len__(self) -> int:
        return self._n

    # provenance, as every Prediction of the model carries it ----------------------------------------------
    @property
    def manifest(self) -> Manifest | None:
        return self._meta.manifest

    @property
    def model_sha256(self) -> str:
        return self._meta.model_sha256

    @property
    def manifest_sha256(self) -> str:
        return self._meta.manifest_sha256

    @property
    def variant(self) -> str:
        return self._meta.variant

    @property
    def provider(self) -> str:
        return self._meta.provider

    @property
    def explanation(self) -> Any:
        """The answered items' explanation (rows in the order of :attr:`answered`), or None."""
        answered = self.prediction
        return None if answered is None else answered.explanation

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(self._n))]
        i = int(i) + (self._n if int(i) < 0 else 0)
        if not 0 <= i < self._n:
            raise IndexError(f"item {i} of {self._n}")
        if i in self.failures:
            return self.failures[i]
        part, row = self._where[i]
        return self._parts[part][1].take([row])

    def __iter__(self) -> Iterator[Any]:
        return (self[i] for i in range(self._n))

    @property
    def ok(self) -> np.ndarray:
        """Per item: answered (True) or a NoResult (False)."""
        mask = np.zeros(self._n, dtype=bool)
        mask[self.answered] = True
        return mask

    @property
    def all_ok(self) -> bool:
        return not self.failures

    @property
    def no_results(self) -> list[NoResult]:
        """The refused items' NoResults, in order."""
        return [self.failures[i] for i in sorted(self.failures)]

    def _column(self, get: Any, fill: Any, dtype: Any) -> np.ndarray | None:
        values = [(idx, get(pred)) for idx, pred in self._parts]
        if any(v is None for _, v in values):
            return None
        shape = next((np.asarray(v).shape[1:] for _, v in values), ())
        out = np.full((self._n, *shape), fill, dtype=dtype)
        for idx, v in values:
            out[idx] = v
        return out

    @property
    def labels(self) -> np.ndarray | None:
        """Per item: its label, None for a refused item; None for a regression model."""
        if not self._parts:
            return None
        return self._column(lambda p: p.labels, None, object)

    @property
    def scores(self) -> np.ndarray:
        """Per item: its scores (as :attr:`Prediction.scores`), NaN for a refused item."""
        got = self._column(lambda p: np.asarray(p.scores, np.float64), np.nan, np.float64)
        return got if got is not None else np.full(self._n, np.nan)

    @property
    def domain_scores(self) -> np.ndarray | None:
        """Per item: its domain score, NaN for a refused item; None without a guard."""
        return self._column(lambda p: p.domain_scores, np.nan, np.float64) if self._parts else None

    @property
    def in_domain(self) -> np.ndarray | None:
        """Per item: True / False, None for a refused item; None (the whole) without a guard."""
        return self._column(lambda p: p.in_domain, None, object) if self._parts else None

    @property
    def prediction(self) -> Prediction | None:
        """The answered items as one Prediction (rows in item order; ``answered`` names their positions), or None
        when no item was answered.

        Raises:
            ValueError: the answered items ran as groups of different output shapes (e.g. sequences of different
                lengths with a per-step output); take the items one by one.
        """
        if not self._parts:
            return None
        if len(self._parts) == 1:
            return self._parts[0][1]
        order = np.argsort(np.concatenate([idx for idx, _ in self._parts]), kind="stable")
        first = self._parts[0][1]
        try:
            raw = [np.concatenate([p._raw[j] for _, p in self._parts])[order] for j in range(len(first._raw))]
        except ValueError as exc:
            raise ValueError(f"the answered items' outputs do not join ({exc}); take the items one by one") from None
        return Prediction(first._meta, raw, False)

    def error(self, i: int) -> MedinferError | None:
        """The error that refused item ``i`` (its NoResult's ``message`` without the ``item i:`` prefix), or None."""
        return self._errors.get(i)

    def raise_first(self) -> None:
        """Raise the first refused item's error, as it was raised (``on_error="raise"`` after the fact)."""
        if self.failures:
            first = min(self.failures)
            error = self._errors.get(first)
            raise error if error is not None else MedinferError(self.failures[first].message)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: per item its index, status ``ok`` (label, score, domain flag) or ``no_result`` (reason,
        error, message), and the counts."""
        items: list[dict[str, Any]] = []
        for i in range(self._n):
            got = self[i]
            if isinstance(got, NoResult):
                items.append({"index": i, "status": "no_result", "reason": got.reason, "error": got.error,
                              "message": got.message})
                continue
            labels = got.labels
            entry: dict[str, Any] = {"index": i, "status": "ok",
                                     "score": np.asarray(got.scores)[0].tolist()}
            if labels is not None:
                entry["label"] = str(labels[0])
            if got.in_domain is not None:
                entry["in_domain"] = bool(got.in_domain[0])
                entry["domain_score"] = float(got.domain_scores[0])  # type: ignore[index]
            items.append(entry)
        return {"model": self.model, "version": self.version, "n": self._n, "ok": int(self.ok.sum()),
                "no_result": len(self.failures), "items": items}

    def __repr__(self) -> str:
        return (f"ItemResults(model={self.model!r}, n={self._n}, ok={len(self.answered)}, "
                f"no_result={len(self.failures)})")


def split_items(model: Model, x: Any) -> list[Any] | None:
    """``x`` cut into items as ``predict`` would see them (each item in a form ``predict`` takes, a batch of one),
    without validating it: the rows of an array, of a data frame, of a mapping of columns or of inputs, the elements
    of a list of samples or of texts. None when ``x`` is one sample (or nothing that can be cut)."""
    checks = model.input_checks
    first = checks[0]
    if isinstance(x, Mapping):
        cut = {name: _rows(v) for name, v in x.items()}
        lengths = {len(v) for v in cut.values() if v is not None}
        if not cut or any(v is None for v in cut.values()) or len(lengths) != 1:
            return None
        return [{name: v[i] for name, v in cut.items()} for i in range(lengths.pop())]  # type: ignore[index]
    if hasattr(x, "iloc") and hasattr(x, "columns"):
        return [x.iloc[i:i + 1] for i in range(len(x))]
    if len(checks) != 1:
        return None
    if isinstance(x, np.ndarray):
        if x.ndim == 0 or (not first.is_string and x.ndim != first.rank):
            return None
        return [x[i:i + 1] for i in range(len(x))]
    if isinstance(x, (list, tuple)) and (first.is_string or _depth(x) == first.rank):
        return [x[i:i + 1] for i in range(len(x))]
    return None


def _rows(v: Any) -> list[Any] | None:
    if isinstance(v, np.ndarray) and v.ndim >= 1 or isinstance(v, (list, tuple)):
        return [v[i:i + 1] for i in range(len(v))]
    return None


def _depth(x: Any) -> int:
    depth = 0
    while isinstance(x, (list, tuple, np.ndarray)) and len(x):
        depth += 1
        x = x[0]
    return depth


def predict_items(model: Model, x: Any, deadline_ms: float | None, request_id: str | None,
                  explain: bool) -> ItemResults:
    """``model.predict(x, on_error="item")`` (see the module docstring).

    Raises:
        UsageError: a whole-slice variant (its answers are windows of one input, not items of a batch: the DICOM
            path gives each window its own answer, :func:`medinfer.tools.dicom.predict_file`).
    """
    from .audit.record import checked_request_id, refused_id

    if model.manifest.variants[model.variant].windows_of is not None:
        raise UsageError(f"{model.name} ({model.variant}) answers the windows of one image, not items of a batch: "
                         "per-item answers are per input sample; score a slice with medinfer.tools.dicom.predict_file "
                         "(each window gets its own answer and flag)")
    start = time.perf_counter()
    failures: dict[int, MedinferError] = {}
    groups: list[tuple[list[int], dict[str, np.ndarray]]] = []
    items: list[Any] | None = None
    single = False
    try:
        rid = checked_request_id(request_id)
    except InputError as exc:  # recorded under its digest, never run: every item gets the call's refusal
        items = split_items(model, x) or [x]
        return _finish(model, x, items, groups, {i: exc for i in range(len(items))}, [], refused_id(request_id),
                       start, False)
    try:
        feeds, single = model.prepare(x)
        groups.append((list(range(len(next(iter(feeds.values()))))), feeds))
    except MedinferError as whole:
        items = split_items(model, x)
        if items is None or len(items) <= 1:
            items = items or [x]
            failures[0] = whole
        else:
            prepared: dict[int, dict[str, np.ndarray]] = {}
            for i, item in enumerate(items):
                try:
                    prepared[i] = _one(model.prepare(item)[0], i)
                except MedinferError as exc:
                    failures[i] = exc
            groups = group_by_shape(prepared)
    deadline = None if deadline_ms is None else (start + deadline_ms / 1e3, deadline_ms)
    answered: list[tuple[np.ndarray, Prediction, dict[str, np.ndarray]]] = []
    for members, group in groups:
        _run_group(model, members, group, deadline, explain, failures, answered)
    return _finish(model, x, items, groups, failures, answered, rid, start, single)


def _one(feeds: dict[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
    n = len(next(iter(feeds.values())))
    if n != 1:
        raise InputError(f"item {i} holds {n} samples; an item is one sample")
    return feeds


def group_by_shape(prepared: Mapping[int, dict[str, np.ndarray]]) -> list[tuple[list[int], dict[str, np.ndarray]]]:
    """Validated items (position -> feeds) joined into runs: items of one shape and dtype per input run together."""
    keys: dict[tuple[Any, ...], list[int]] = {}
    for i, feeds in prepared.items():
        keys.setdefault(tuple((k, v.shape[1:], v.dtype.str) for k, v in sorted(feeds.items())), []).append(i)
    return [(members, {k: np.concatenate([prepared[i][k] for i in members]) for k in prepared[members[0]]})
            for members in keys.values()]


def _run_group(model: Model, members: list[int], feeds: dict[str, np.ndarray], deadline: tuple[float, float] | None,
               explain: bool, failures: dict[int, MedinferError],
               answered: list[tuple[np.ndarray, Prediction, dict[str, np.ndarray]]]) -> None:
    bound = model._max_batch
    if len(members) > bound:  # the bundle's per-call bound holds: the items run in calls of at most max_batch
        for at in range(0, len(members), bound):
            _run_group(model, members[at:at + bound], {n: v[at:at + bound] for n, v in feeds.items()}, deadline,
                       explain, failures, answered)
        return
    try:
        outs = model._run_batch(feeds, None) if deadline is None else \
            model._run_with_deadline(feeds, deadline[0], deadline[1])
    except MedinferError as exc:
        if exc.code == "timeout" or len(members) == 1:
            failures.update({i: exc for i in members})
            return
        outs = None
    except Exception as exc:  # onnxruntime's own exception types
        if len(members) == 1:
            failures[members[0]] = InferenceError(f"onnxruntime failed running {model.name}: {exc}")
            return
        outs = None
    if outs is None:  # the run failed for the group: each item alone, so one cannot cost the others their answers
        for k, i in enumerate(members):
            _run_group(model, [i], {n: v[k:k + 1] for n, v in feeds.items()}, deadline, explain, failures, answered)
        return
    keep = np.ones(len(members), dtype=bool)
    for k, error in _row_refusals(model, outs):
        failures[members[k]] = error
        keep[k] = False
    if not keep.any():
        return
    rows = np.flatnonzero(keep)
    pred = Prediction(model._meta, [o[rows] if len(rows) < len(members) else o for o in outs], False)
    kept = {n: v[rows] for n, v in feeds.items()} if len(rows) < len(members) else feeds
    if explain:
        from .explain import Explainer, with_explanation

        try:
            pred = with_explanation(pred, Explainer.for_model(model).explain(kept, pred._raw[0]))
        except UsageError:
            raise
        except MedinferError as exc:
            failures.update({members[k]: exc for k in rows})
            return
    answered.append((np.asarray(members, dtype=np.int64)[rows], pred, kept))


def _row_refusals(model: Model, outs: list[np.ndarray]) -> Iterator[tuple[int, MedinferError]]:
    """The rows the decision refuses: too little evidence (always), outside the domain (refusing policies)."""
    n = len(outs[0])
    refused: set[int] = set()
    minimum = model._evidence
    if minimum is not None:
        spec = model.manifest.decision.evidence
        meaning = f" ({spec.meaning})" if spec is not None and spec.meaning else ""
        weak = np.asarray(outs[1]).reshape(n, -1).min(axis=1)
        for k in np.flatnonzero(weak < minimum).tolist():
            refused.add(k)
            yield k, NoInformationError(
                f"{model.name}: this item carries no usable information ('{spec.output if spec else 'evidence'}' "
                f"{float(weak[k]):g} below {minimum:g}{meaning}); it gets no answer rather than a confident label: "
                "check what was sent")
    index = model._domain_index
    if model._refuse_ood and index is not None:
        scores = np.asarray(outs[index]).reshape(n)
        threshold = model._meta.domain_threshold
        coverage = model.manifest.domain.coverage if model.manifest.domain is not None else float("nan")
        for k in np.flatnonzero(~in_domain(scores, threshold)).tolist():
            if k not in refused:
                yield k, OutOfDomainError(
                    f"{model.name}: this item lies outside its applicability domain (domain score "
                    f"{float(scores[k]):.4g} above {threshold:.4g}, the threshold that accepts {coverage:.0%} of "
                    f"held-out in-domain data); loaded with out_of_domain={model.out_of_domain!r}, it gets no answer")


def _finish(model: Model, x: Any, items: list[Any] | None, groups: list[tuple[list[int], dict[str, np.ndarray]]],
            failures: dict[int, MedinferError], answered: list[tuple[np.ndarray, Prediction, dict[str, np.ndarray]]],
            rid: str | None, start: float, single: bool) -> ItemResults:
    """Record the call (the answered items, each refusal) and build the results; an unwritable record refuses all."""
    from .audit.record import digestible, summary

    n = len(items) if items is not None else sum(len(members) for members, _ in groups)
    parts = [(idx, pred) for idx, pred, _ in answered]
    audit = model._audit
    if audit is not None:
        latency = (time.perf_counter() - start) * 1e6
        try:
            for _, pred, feeds in answered:
                audit.record(feeds, "ok", latency, summary(pred, explained=model.audit_explanations), rid)
            for i in sorted(failures):
                audit.record(_fed(model, x, items, groups, i, digestible), "no_result", latency, None, rid,
                             failures[i].code)
        except AuditError as exc:  # a result that could not be recorded is not returned
            failures, parts = {i: exc for i in range(n)}, []
    out = {i: NoResult(err.code, f"item {i}: {err}" if n > 1 else str(err), model.name, model.version, rid,
                       type(err).__name__, index=i) for i, err in failures.items()}
    return ItemResults(model._meta, n, single and n == 1, parts, out, failures)


def _fed(model: Model, x: Any, items: list[Any] | None, groups: list[tuple[list[int], dict[str, np.ndarray]]],
         i: int, digestible: Any) -> Any:
    """What the audit record of refused item ``i`` digests: its validated feeds, else its raw input."""
    for members, feeds in groups:
        if i in members:
            k = members.index(i)
            return {name: v[k:k + 1] for name, v in feeds.items()}
    what = items[i] if items is not None else x
    try:
        return model.prepare(what)[0]
    except MedinferError:
        return digestible(what)
