"""On-device explanations (``Model.explain``, ``predict(..., explain=True)``): numpy + onnxruntime only.

The bundle says how it explains (manifest ``explanation``, :mod:`medinfer.explain_spec`); the explanation graphs were
made and gated at export, and this module only runs them, or runs the model's own graph on a batch of perturbed
copies (:mod:`medinfer.explain_perturb`). Nothing here knows a particular model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from . import explain_perturb as perturb
from .decision import score_column, scores_of
from .errors import BundleError, IntegrityError, SelfTestError, UnknownNameError, UsageError
from .explain_spec import GRAPH_METHODS, ExplanationEntry
from .manifest import Manifest, TensorSpec
from .prediction import Prediction
from .samples import select_pairs

if TYPE_CHECKING:
    from .model import Model

Feeds = dict[str, np.ndarray]


@dataclass(frozen=True)
class Explanation:
    """Per-sample attributions, with the method named.

    Attributes:
        model, method: the bundle's name and the method (``linear``, ``saabas``, ``occlusion``, ``masking``).
        explains, units: the explained quantity (``"log-odds of 'abnormal'"``, ``"forecast"``) and its units.
        features: the name of each attribution column (a word, a gene, a descriptor, an image cell, a time step).
        values: (N, F) attributions; positive = pushed the explained quantity up.
        output: (N,) the explained quantity of each sample.
        bias: (N,) additive methods: the explained quantity with every contribution removed (``exact``: ``bias +
            values.sum(1) == output``); None for occlusion and masking.
        exact: the method is exact (additive, to float32 rounding).
        baseline: what a removed feature becomes, in words.
        classes: multiclass models: the class each sample's attributions explain.
        maps: occlusion: (N, H, W) the mean score drop of the windows covering each pixel.
        groups: masking: the effect of masking each feature group, {group: (N,)}.
    """

    model: str
    method: str
    explains: str
    units: str
    features: tuple[str, ...]
    values: np.ndarray
    output: np.ndarray
    bias: np.ndarray | None
    exact: bool
    baseline: str
    classes: tuple[str, ...] | None = None
    maps: np.ndarray | None = None
    groups: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.values)

    def top(self, i: int = 0, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` largest attributions of sample ``i`` by magnitude, sign kept (zeros left out)."""
        row = np.asarray(self.values[i], np.float64)
        order = np.argsort(-np.abs(row), kind="stable")[:k]
        return [(self.features[j], float(row[j])) for j in order if row[j] != 0.0]

    def to_dict(self, k: int = 10, *, maps: bool = False) -> dict[str, Any]:
        """JSON-ready: the method, and per sample the top ``k`` attributions (``maps``: also occlusion maps)."""
        samples = []
        for i in range(len(self)):
            item: dict[str, Any] = {"output": float(self.output[i]),
                                    "top": [[n, round(v, 6)] for n, v in self.top(i, k)]}
            if self.bias is not None:
                item["bias"] = float(self.bias[i])
            if self.classes is not None:
                item["class"] = self.classes[i]
            if self.groups:
                item["groups"] = {g: round(float(v[i]), 6) for g, v in self.groups.items()}
            if maps and self.maps is not None:
                item["map"] = np.round(self.maps[i].astype(np.float64), 6).tolist()
            samples.append(item)
        return {"model": self.model, "method": self.method, "explains": self.explains, "units": self.units,
                "exact": self.exact, "baseline": self.baseline, "samples": samples}


class ExplainedPrediction(Prediction):
    """A :class:`Prediction` with its :class:`Explanation` (``predict(..., explain=True)``)."""

    __slots__ = ("explanation",)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "explanation": self.explanation.to_dict()}


def with_explanation(pred: Prediction, explanation: Explanation) -> ExplainedPrediction:
    out = ExplainedPrediction(pred._meta, pred._raw, pred.single)
    out.explanation = explanation
    return out


@dataclass(frozen=True)
class Subject:
    """What an explainer needs to know of the model: its name, task, labels, input and score output's shape."""

    name: str
    task: str
    labels: tuple[str, ...] | None
    positive_label: str | None
    input: TensorSpec
    score_shape: tuple[int | str, ...]

    @staticmethod
    def of(manifest: Manifest) -> Subject:
        score = next(o for o in manifest.outputs if o.name == manifest.decision.score_output)
        return Subject(manifest.name, manifest.task, manifest.labels, manifest.decision.positive_label,
                       manifest.inputs[0], score.shape)


class Explainer:
    """Runs a bundle's explanation: its explanation graph (``linear``, ``saabas``) or its model graph on perturbed
    copies (``occlusion``, ``masking``). Built by :meth:`for_model` on a device, or by the exporter on sessions."""

    def __init__(self, subject: Subject, entry: ExplanationEntry, data: dict[str, np.ndarray],
                 run_scores: Callable[[Feeds], np.ndarray], graph: Callable[[Feeds], np.ndarray] | None) -> None:
        self.subject = subject
        self.entry = entry
        self.data = data
        self.run_scores = run_scores  # feeds -> the raw score output
        self.graph = graph  # feeds -> the explanation graph's attributions
        self.input = subject.input
        self._column = score_column(subject.task, subject.labels, subject.positive_label, subject.score_shape)
        self._names: tuple[str, ...] | None = None

    @staticmethod
    def for_model(model: Model) -> Explainer:
        """The explainer of a loaded model (built once, on first use: its files read again against their pinned
        sha256, the explanation graph checked on its golden input).

        Raises:
            UsageError: the bundle has no explanation, or the model runs a whole-slice variant.
            IntegrityError / BundleError / SelfTestError: a file altered since load, unreadable, or an explanation
                graph that does not reproduce its golden output.
        """
        cached = getattr(model, "_explainer", None)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        manifest = model.manifest
        entry = manifest.explanation
        if entry is None:
            raise UsageError(f"{model.name} {model.version} has no explanation: the bundle was exported before "
                             "explanations existed (no manifest 'explanation'); re-export it with this medinfer")
        if manifest.variants[model.variant].inputs is not None:
            raise UsageError(f"{model.name}: the {model.variant!r} variant scores whole images; explain a patch with "
                             "the default variant (medinfer.load(path)), or a slice with medinfer.tools.explain_slice")
        data = _read_data(model, entry.data) if entry.data else {}
        graph = _graph_runner(model, entry, data) if entry.file else None
        explainer = Explainer(Subject.of(manifest), entry, data, lambda feeds: model._run_batch(feeds, None)[0],
                              graph)
        model._explainer = explainer  # type: ignore[attr-defined]
        return explainer

    # -- what is explained ---------------------------------------------------------------------------------
    def classes_of(self, raw: np.ndarray, target: str | None) -> np.ndarray | None:
        """The class index each sample is explained for (multiclass: the predicted class unless ``target``)."""
        labels = self.subject.labels or ()
        if self.subject.task != "multiclass_classification":
            if target is not None and target != self.subject.positive_label:
                raise UsageError(f"{self.subject.name} explains {self.entry.explains!r} only; target={target!r} "
                                 "cannot be chosen")
            return None
        if target is None:
            return np.argmax(raw, axis=1)
        if target not in labels:
            raise UnknownNameError("class", target, labels, of=self.subject.name)
        return np.full(len(raw), list(labels).index(target))

    def explained(self, raw: np.ndarray, classes: np.ndarray | None) -> np.ndarray:
        """The explained score per sample from the raw score output (the class's probability for multiclass)."""
        scores = scores_of(self.subject.task, raw, self._column)
        if classes is not None:
            return np.asarray(scores[np.arange(len(scores)), classes], np.float64)
        return np.asarray(scores, np.float64).reshape(len(scores))

    # -- explain ---------------------------------------------------------------------------------------------
    def explain(self, feeds: Feeds, raw: np.ndarray | None = None, target: str | None = None) -> Explanation:
        """Explain validated ``feeds`` (``raw``: the score output already computed for them, if any)."""
        raw = self.run_scores(feeds) if raw is None else raw
        classes = self.classes_of(raw, target)
        method = self.entry.method
        if method in GRAPH_METHODS:
            return self._additive(feeds, classes)
        if method == "occlusion":
            return self._occlusion(feeds, raw, classes)
        return self._masking(feeds, raw, classes)

    def _make(self, features: tuple[str, ...], values: np.ndarray, output: np.ndarray, bias: np.ndarray | None,
              classes: np.ndarray | None, **extra: Any) -> Explanation:
        labels = self.subject.labels or ()
        return Explanation(
            model=self.subject.name, method=self.entry.method, explains=self.entry.explains, units=self.entry.units,
            features=features, values=values, output=output, bias=bias, exact=self.entry.exact,
            baseline=self.entry.baseline, classes=tuple(str(labels[c]) for c in classes) if classes is not None
            else None, **extra)

    def feature_names(self) -> tuple[str, ...]:
        """The attribution columns' names of a graph method: the data file's (a vocabulary) or the input's."""
        if self._names is None:
            names = self.data.get("names")
            self._names = tuple(str(n) for n in names.tolist()) if names is not None else tuple(self.input.names or ())
        return self._names

    def _additive(self, feeds: Feeds, classes: np.ndarray | None) -> Explanation:
        if self.graph is None:
            raise BundleError(f"{self.subject.name}: method {self.entry.method!r} needs an explanation graph")
        attributions = np.asarray(self.graph(feeds), np.float32)
        bias = np.asarray(self.entry.bias, np.float64)
        n = len(attributions)
        if attributions.ndim == 3:
            picked = classes if classes is not None else np.zeros(n, np.int64)
            values = attributions[np.arange(n), picked]
            base = bias[picked]
        else:
            values, base = attributions, np.full(n, bias[0])
        output = base + values.astype(np.float64).sum(axis=1)
        return self._make(self.feature_names(), values, output, base, classes)

    def _occlusion(self, feeds: Feeds, raw: np.ndarray, classes: np.ndarray | None) -> Explanation:
        p = self.entry.params
        window, stride, cell = int(p["window"]), int(p["stride"]), int(p["cell"])
        x = feeds[self.input.name]
        base = self.explained(raw, classes)
        maps, values = [], []
        for i in range(len(x)):
            copies, corners = perturb.occluded(x[i], window, stride, float(np.median(x[i])))
            drops = base[i] - self.explained(self.run_scores({self.input.name: copies}),
                                             None if classes is None else np.full(len(copies), classes[i]))
            heat = perturb.occlusion_map(drops, corners, x.shape[1:3], window)
            maps.append(heat)
            values.append(perturb.cell_means(heat, cell))
        names = perturb.cell_names(x.shape[1], x.shape[2], cell)
        return self._make(names, np.asarray(values, np.float32).reshape(len(x), len(names)), base, None, classes,
                          maps=np.asarray(maps, np.float32).reshape(x.shape[:3]))

    def _masking(self, feeds: Feeds, raw: np.ndarray, classes: np.ndarray | None) -> Explanation:
        p = self.entry.params
        x = feeds[self.input.name]
        mean = np.asarray(p["mean"], x.dtype)
        groups: dict[str, list[int]] = p["groups"]
        steps = x.shape[1]
        base = self.explained(raw, classes)
        values, group_effects = [], []
        for i in range(len(x)):
            copies = np.concatenate([perturb.mask_steps(x[i], np.eye(steps, dtype=bool), p.get("events", ()), mean),
                                     perturb.mask_groups(x[i], list(groups.values()), mean)])
            effects = base[i] - self.explained(self.run_scores({self.input.name: copies}), None)
            values.append(effects[:steps])
            group_effects.append(effects[steps:])
        step = float(p.get("step_minutes", 1))
        names = tuple(f"t-{(steps - 1 - t) * step:g} min" for t in range(steps))
        per_group = np.asarray(group_effects, np.float32).reshape(len(x), len(groups))
        return self._make(names, np.asarray(values, np.float32).reshape(len(x), steps), base, None, classes,
                          groups={g: per_group[:, j] for j, g in enumerate(groups)})

    # -- fidelity ---------------------------------------------------------------------------------------------
    def remover(self, feeds: Feeds, i: int, explanation: Explanation) -> tuple[np.ndarray, Callable[[np.ndarray],
                                                                                                np.ndarray]]:
        """For sample ``i``: the features to rank (indices) and ``score(masks) -> explained score`` of copies with
        the masked features removed the method's way (the deletion/insertion curves of :mod:`medinfer.fidelity`)."""
        x = feeds[self.input.name][i]
        values = explanation.values[i]
        cls = None
        if explanation.classes is not None:
            cls = list(self.subject.labels or ()).index(explanation.classes[i])
        name, method, p = self.input.name, self.entry.method, self.entry.params

        def scored(batch: np.ndarray) -> np.ndarray:
            return self.explained(self.run_scores({name: batch}), None if cls is None else np.full(len(batch), cls))

        if method == "occlusion":
            fill = float(np.median(x))
            return np.arange(len(values)), lambda m: scored(perturb.fill_cells(x, m, int(p["cell"]), fill))
        if method == "masking":
            mean = np.asarray(p["mean"], x.dtype)
            return np.arange(len(values)), lambda m: scored(perturb.mask_steps(x, m, p.get("events", ()), mean))
        if self.input.dtype == "string":
            names = self.feature_names()
            pattern = str((self.input.facts or {}).get("token_pattern", r"\w+"))
            text = str(np.asarray(x).reshape(-1)[0])

            def texts(masks: np.ndarray) -> np.ndarray:
                return np.array([[perturb.drop_words(text, {names[j] for j in np.flatnonzero(m)}, pattern)]
                                 for m in masks], dtype=object)
            return np.flatnonzero(values != 0), lambda m: scored(texts(m))
        baseline = self.data["baseline"]
        return np.arange(len(values)), lambda m: scored(perturb.set_features(x, m, baseline))


def explain(model: Model, x: Any, target: str | None = None) -> Explanation:
    """``model.explain(x)``: validate ``x`` as ``predict`` does and explain each sample (see :class:`Explanation`).
    A sample that ``predict`` would not answer for lack of information (no known word) is not explained either."""
    feeds, _ = model.prepare(x)
    explainer = Explainer.for_model(model)
    outs = model._run_batch(feeds, None)
    if model._evidence is not None:
        model._check_evidence(outs[1])
    return explainer.explain(feeds, outs[0], target=target)


def _read_data(model: Model, name: str) -> dict[str, np.ndarray]:
    from .samples import load_npz, read_pinned

    raw = read_pinned(model.path, name, model.manifest.files[name])
    return load_npz(raw, f"{model.name}: explanation data '{name}'")  # decompression bounded, no pickles


def _graph_runner(model: Model, entry: ExplanationEntry, data: dict[str, np.ndarray]) -> Callable[[Feeds],
                                                                                                  np.ndarray]:
    """A CPU session of the explanation graph from its verified bytes, checked against the model's contract and on
    its golden input."""
    from .integrity import expected_contract
    from .samples import read_pinned
    from .session import create_session

    file = str(entry.file)
    graph = read_pinned(model.path, file, model.manifest.files[file])
    profile = dataclasses.replace(model.manifest.profile, large_batch={}, large_batch_from=0)
    session = create_session(graph, profile, [("CPUExecutionProvider", {})])
    meta = session.get_modelmeta().custom_metadata_map
    want = expected_contract(model.manifest.to_json(), meta, f"{model.path}: '{entry.file}'")
    if meta.get("medinfer.name") != model.name or meta.get("medinfer.contract_sha256") != want:
        raise IntegrityError(f"{model.path}: '{entry.file}' carries medinfer.name={meta.get('medinfer.name')!r}, "
                             f"contract {str(meta.get('medinfer.contract_sha256'))[:12]}…: it explains another model "
                             "or contract; re-export the bundle")
    chunk = max(1, model.manifest.profile.chunk)

    def run(feeds: Feeds) -> np.ndarray:
        n = len(next(iter(feeds.values())))
        parts = [session.run([entry.output], {k: v[i:i + chunk] for k, v in feeds.items()})[0]
                 for i in range(0, max(n, 1), chunk)]
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    golden_in, golden_out = select_pairs(data)
    expected = golden_out.get(entry.output)
    if golden_in and expected is not None:
        got = run(golden_in)
        if got.shape != expected.shape or not np.allclose(got, expected, atol=entry.atol, rtol=0.0):
            diff = float(np.max(np.abs(got.astype(np.float64) - expected), initial=np.inf)) \
                if got.shape == expected.shape else float("inf")
            raise SelfTestError(f"{model.name}: the explanation graph '{entry.file}' differs from its golden output "
                                f"by {diff:.3g} (tolerance {entry.atol:g}) on {list(model.providers)}")
    return run
