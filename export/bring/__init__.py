"""Bring your own model: ``medinfer bundle SOURCE --reference REF.npz --contract contract.toml --out DIR``.

A model nobody in the project trained goes through the five specs' pipeline (:func:`medinfer.export.bundle.export`):
its source adapter (:mod:`.sources`: onnx, torch, keras, sklearn, xgboost, lightgbm) loads it and runs it in its own
framework, the converter of its family makes the graph, the contract is inferred from the graph and the reference
data and completed from the declared file (:mod:`.contract`), and the model becomes a :class:`~.spec.BroughtSpec`;
then the same stages: parity gate (against the source framework, or the outputs REF.npz holds for an ``.onnx``
source; fail closed: ParityError, exit 8, nothing written) -> golden I/O -> metrics with CIs (when REF.npz holds
labels) -> applicability-domain guard (fitted on ``--train-sample``; the card says when there is none) -> optional
int8 behind the clinical gate -> measured session profile -> card -> bundle -> verify -> optional signature.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from medinfer.errors import ParityError, UsageError
from medinfer.manifest import DataSource, TensorSpec
from medinfer.samples import INPUT, key

from ...train.spec import Dataset, OperatingPoint, Progress, quiet
from ..feeds import packed
from .contract import (
    Contract,
    GraphTensor,
    card_of,
    header,
    input_spec,
    need,
    output_spec,
    read_contract,
    score_and_label,
    tolerance,
)
from .reference import Reference, read_reference
from .sources import SOURCES, Loaded, Source, detect
from .spec import BroughtSpec

__all__ = ["bundle"]

ABSENT_GUARD = ("No applicability-domain guard: no training sample was declared when the model was brought "
                "(medinfer bundle --train-sample), so inputs unlike the training data are answered without a flag.")
ABSENT_LABELS = "No held-out metrics: the reference data had no labels (REF.npz 'y'), so only parity was measured."


def bundle(source: str | Path, reference: str | Path, out: str | Path = "bundles", *,
           contract: str | Path | None = None, kind: str | None = None, train_sample: str | Path | None = None,
           int8: bool = False, sign: str | Path | None = None, measure_profile: bool = True,
           progress: Progress = quiet) -> Path:
    """Bring ``source`` in as the verified bundle ``out/<name>``; returns its path.

    Args:
        source: an ``.onnx`` file, a ``.pt2`` ExportedProgram or ``module:attr`` nn.Module, a ``.keras`` file, a
            scikit-learn model (``.skops``/``.joblib``), a LightGBM ``.txt`` or XGBoost ``.json``/``.ubj`` file.
        reference: REF.npz (``in.<input>``, optionally ``out.<output>`` and ``y``).
        contract: the declared contract (``.toml``/``.json``): what cannot be inferred.
        kind: the source kind, when its name does not tell.
        train_sample: TRAIN.npz (``in.<input>``, optionally ``y``): fits the domain guard, calibrates int8.
        int8: also make a static int8 variant, shipped only within the clinical budget.
        sign: an Ed25519 private key: sign the written manifest.
        measure_profile: choose the session profile by measurement (else onnxruntime's defaults).

    Raises:
        UsageError: something the contract, the source or the reference data must say is missing or wrong
            (named, with an example). ParityError: the graph does not reproduce the source (nothing is written).
    """
    doc = read_contract(contract)
    head = header(doc)
    adapter = detect(str(source), kind)
    ref = read_reference(reference, need_outputs=adapter.run is None)
    if int8 and train_sample is None:
        raise UsageError("--int8 calibrates on training samples: give them with --train-sample TRAIN.npz")
    progress(f"[{head['name']}] loading {adapter.kind} source {source}")
    if int8 and ref.y is None:
        raise UsageError("--int8 ships only behind the clinical gate, which needs labels: add them to REF.npz as 'y'")
    loaded = adapter.load(str(source), head["task"])
    adapter = SOURCES.get(loaded.kind)  # a pickled LightGBM/XGBoost estimator is brought as its booster
    X = _inputs(doc, loaded, adapter, ref)
    if int8 and len(X) > 1:
        raise UsageError(f"--int8 calibrates one-input graphs; this model takes {len(X)} inputs ({', '.join(X)})")
    train = _train_inputs(train_sample, X) if train_sample is not None else None
    spec = BroughtSpec(None, adapter, loaded, given=ref.outputs, guard=train is not None, int8=int8,
                       measure_profile=measure_profile)
    spec.name, spec.task, spec.labels = head["name"], head["task"], head["labels"]  # what converters read
    X_obj: Any = packed(X)
    spec.reference_x = X_obj
    native = _native(doc, adapter, loaded, ref, X, head["task"])
    spec.set_io(tuple(_pre_input(doc, loaded, n, a) for n, a in X.items()),
                tuple(TensorSpec(k, _dtype(v), ("N", *v.shape[1:])) for k, v in native.items()))
    dataset = _dataset(doc, ref, X_obj, train, head, source, adapter)
    progress(f"[{spec.name}] converting ({adapter.family}) on {ref.n} reference samples")
    from ..converters import convert
    from ..converters.fixes import name_dynamic_dims

    onx = convert(spec, loaded.obj, dataset)
    name_dynamic_dims(onx, {t.name: t.shape for t in spec.inputs(dataset)})
    if train is not None:
        onx = _guard_opset(onx, spec.name)
    full = _contract(doc, head, spec, onx, adapter, native, ref, train is not None)
    spec.apply(full)
    if adapter.run is not None and ref.outputs:  # first: a swapped output is a mutated model, not a usage error
        _check_given(spec, native, ref)
    _check_scores(spec, native)
    art = _artifact(spec, loaded, dataset, native, ref, adapter, source, progress)
    from ..bundle import export

    try:
        path = export(art, out, progress=progress, graph=onx)
    except Exception as exc:
        if not type(exc).__module__.startswith("onnxruntime"):
            raise
        # the graph does not run on some input or batch size the gate tries: as much a failed gate as a wrong number
        raise ParityError(f"{spec.name}: parity gate FAILED: onnxruntime could not run the graph on the reference "
                          f"data ({type(exc).__name__}: {str(exc)[:300]}); nothing was written") from None
    if sign is not None:
        from medinfer.signing import sign_bundle

        sign_bundle(path, sign)
        progress(f"[{spec.name}] signed {path}/manifest.json")
    return path


GUARD_MIN_OPSET = 13  # the domain guard's nodes (TopK with K as input, Squeeze with axes as input)


def _guard_opset(onx: Any, name: str) -> Any:
    """``onx`` at a main-domain opset the domain guard's nodes exist in (a converter may emit the lowest opset its
    operators need, e.g. onnxmltools' trees): upgraded with onnx's version converter when lower.

    Raises:
        UsageError: the graph cannot be upgraded (then bring it without --train-sample, or re-export it at a newer
            opset).
    """
    import onnx
    from onnx import version_converter

    main = next((o.version for o in onx.opset_import if o.domain in ("", "ai.onnx")), None)
    if main is None:  # only ai.onnx.ml operators (an XGBoost graph): the guard's operators bring their own opset
        entry = onx.opset_import.add()
        entry.domain, entry.version = "", 15
        return onx
    if main >= GUARD_MIN_OPSET:
        return onx
    try:
        upgraded = version_converter.convert_version(onx, 15)
        onnx.checker.check_model(upgraded)
    except Exception as exc:  # noqa: BLE001 - any converter failure: say what to do instead
        raise UsageError(f"{name}: the domain guard needs opset >= {GUARD_MIN_OPSET}; the graph is at opset {main} "
                         f"and onnx could not upgrade it ({type(exc).__name__}: {exc}); bring it without "
                         "--train-sample, or export it at a newer opset") from None
    return upgraded


def _dtype(a: np.ndarray) -> str:
    return "string" if a.dtype.kind in "OU" else str(a.dtype)


def _inputs(doc: dict[str, Any], loaded: Loaded, adapter: Source, ref: Reference) -> dict[str, np.ndarray]:
    """The reference inputs by the model's own input names and order, cast to the model's dtypes.

    Raises:
        UsageError: names that differ from the model's, or a cast that would change values' kind.
    """
    given = list(ref.inputs)
    own = loaded.input_names
    if own is not None and adapter.kind == "torch" and len(own) == 1 and len(given) == 1:
        own = None  # one positional argument: REF.npz's name is the graph's (forward(self, input) takes any)
    if own is not None:
        if sorted(own) != sorted(given):
            raise UsageError(f"REF.npz holds inputs {given} but the model takes {list(own)}: store each under the "
                             f"key {key(INPUT, '<name>')} with the model's own names")
        order = list(own)
    else:
        if adapter.kind != "torch" and len(given) != 1:
            raise UsageError(f"a {adapter.kind} model takes one input; REF.npz holds {len(given)}: {given}")
        order = given
    graph_types = _graph_types(loaded) if adapter.kind == "onnx" else {}
    out = {}
    for name in order:
        arr = ref.inputs[name]
        declared = ((doc.get("inputs") or {}).get(name) or {}).get("dtype")
        want = declared or graph_types.get(name) or ("float32" if arr.dtype == np.float64 else _dtype(arr))
        if want == "string":
            out[name] = arr.astype(str)
            continue
        if not np.can_cast(arr.dtype, np.dtype(want), "same_kind"):
            raise UsageError(f"REF.npz {key(INPUT, name)!r} is {arr.dtype}, the model takes {want}: store it as {want}")
        out[name] = np.ascontiguousarray(arr.astype(want, copy=False))
    return out


def _graph_types(loaded: Loaded) -> dict[str, str]:
    from onnx import helper

    out = {}
    for vi in loaded.obj.graph.input:
        elem = vi.type.tensor_type.elem_type
        out[vi.name] = "string" if elem == 8 else str(np.dtype(helper.tensor_dtype_to_np_dtype(elem)))
    return out


def _pre_input(doc: dict[str, Any], loaded: Loaded, name: str, arr: np.ndarray) -> TensorSpec:
    """An input's dtype and shape before conversion: declared, the ONNX file's, else the reference's with a
    dynamic batch axis ``N``."""
    from ..converters.fixes import graph_dims

    declared = ((doc.get("inputs") or {}).get(name) or {}).get("shape")
    if declared is not None:
        shape = tuple(declared)
        if len(shape) != arr.ndim or any(isinstance(d, int) and d != s for d, s in zip(shape, arr.shape)):
            raise UsageError(f"[inputs.{name}] shape = {list(shape)} does not fit REF.npz {key(INPUT, name)!r} of "
                             f"shape {arr.shape}")
    elif loaded.kind == "onnx":
        vi = next(v for v in loaded.obj.graph.input if v.name == name)
        shape = graph_dims(vi) or ("N", *arr.shape[1:])
    else:
        shape = ("N", *arr.shape[1:])
    return TensorSpec(name, _dtype(arr), shape)  # type: ignore[arg-type]


def _output_names(doc: dict[str, Any], ref: Reference) -> tuple[str, ...] | None:
    names = doc.get("output_names") or list(doc.get("outputs") or {}) or list(ref.outputs)
    return tuple(str(n) for n in names) or None


def _native(doc: dict[str, Any], adapter: Source, loaded: Loaded, ref: Reference, X: dict[str, np.ndarray],
            task: str) -> dict[str, np.ndarray]:
    """The source framework's outputs on the reference inputs (an ``.onnx`` source: the ones REF.npz holds)."""
    if adapter.run is None:
        outputs = [o.name for o in loaded.obj.graph.output]
        unknown = [k for k in ref.outputs if k not in outputs]
        if unknown:
            raise UsageError(f"REF.npz holds outputs {unknown} that the graph does not have (outputs: {outputs})")
        return dict(ref.outputs)
    layout = adapter.layout(task)
    names = layout[0] if layout is not None else _output_names(doc, ref)
    return adapter.run(loaded, X, names)


def _train_inputs(path: str | Path, X: dict[str, np.ndarray]) -> Any:
    train = read_reference(path, what="TRAIN.npz")
    if sorted(train.inputs) != sorted(X):
        raise UsageError(f"TRAIN.npz holds inputs {list(train.inputs)}; the model takes {list(X)}")
    arrays = {k: train.inputs[k].astype(X[k].dtype) for k in X}
    return packed(arrays)


def _dataset(doc: dict[str, Any], ref: Reference, X: Any, train: Any, head: dict[str, Any], source: Any,
             adapter: Source) -> Dataset:
    data = doc.get("data") or {}
    n = ref.n
    y = ref.y if ref.y is not None else np.zeros(n, dtype=np.int64)
    if ref.y is not None and head["task"] != "regression":
        labels = head["labels"]
        if y.dtype.kind not in "iu" or y.min() < 0 or y.max() >= len(labels):
            raise UsageError(f"REF.npz 'y' must hold class indices from 0 (into labels {list(labels)}, in order); "
                             f"got {y.dtype} values {np.unique(y)[:5].tolist()}")
    sources = [DataSource(name="reference", package="user-supplied", version="-", file=ref.path.name,
                          sha256=ref.sha256, licence=str(data.get("licence", "not declared")),
                          citation=str(data.get("citation", "not declared")),
                          description="the reference inputs given to medinfer bundle (the parity gate's set)")]
    split = {"method": str(data.get("split", "the reference set given to medinfer bundle (REF.npz): the parity "
                                             "gate's set, and the held-out set of the metrics when it has labels")),
             "n_reference": n, "labels": ref.y is not None, "training_sample": train is not None}
    return Dataset(X_train=train if train is not None else X, y_train=np.zeros(0), X_test=X, y_test=y,
                   sources=tuple(sources), split=split, synthetic=bool(data.get("synthetic", False)),
                   description=str(data.get("description", f"reference data of a {adapter.kind} model brought from "
                                                           f"{Path(str(source)).name}")),
                   preprocessing=str(doc.get("preprocessing") or data.get("preprocessing") or "none declared"))


def _contract(doc: dict[str, Any], head: dict[str, Any], spec: BroughtSpec, onx: Any, adapter: Source,
              native: dict[str, np.ndarray], ref: Reference, guarded: bool) -> Contract:
    from ..converters.fixes import graph_dims

    types = {i.name: i for i in onx.graph.input}
    pre = {t.name: t for t in spec.inputs(None)}  # type: ignore[arg-type]
    inputs = tuple(input_spec(doc, GraphTensor(n, pre[n].dtype, _merge(graph_dims(types[n]), pre[n].shape)))
                   for n in pre)
    fixed = [f"{t.name} {list(t.shape)}" for t in inputs if not t.shape or not isinstance(t.shape[0], str)]
    if fixed:
        raise UsageError(f"the graph's input(s) {', '.join(fixed)} have a fixed first axis: a bundle answers batches "
                         "of any size, so the batch axis must be dynamic; export the model with a dynamic first axis "
                         "(torch: dynamic_shapes / a .pt2 exported with Dim; ONNX: a symbolic dim_param)")
    graph_out = tuple(GraphTensor(o.name, _elem(o), graph_dims(o)) for o in onx.graph.output)
    missing = [k for k in native if k not in {g.name for g in graph_out}]
    if missing:
        raise UsageError(f"the source gives outputs {missing} that the converted graph lacks (graph outputs: "
                         f"{[g.name for g in graph_out]}); name the outputs in the contract (output_names)")
    layout = adapter.layout(head["task"])
    score, label = score_and_label(doc, graph_out, layout[1] if layout else None, head["task"])
    if score not in native:
        raise UsageError(f"the score output {score!r} is not among the outputs the source gives ({list(native)})")
    outputs = tuple(output_spec(doc, g) for g in graph_out)
    absent = (() if guarded else (ABSENT_GUARD,)) + (() if ref.y is not None else (ABSENT_LABELS,))
    threshold = head["threshold"]
    return Contract(
        name=head["name"], version=head["version"], task=head["task"],
        description=str(doc.get("description") or (doc.get("card") or {}).get("summary") or ""),
        inputs=inputs, outputs=outputs, score_output=score, label_output=label, labels=head["labels"],
        positive_label=head["positive_label"], threshold=threshold,
        threshold_rationale=str(doc.get("threshold_rationale") or (
            f"declared in the contract ({threshold:g})" if threshold is not None else
            "argmax over the class probabilities" if head["task"] != "regression" else "")),
        card=card_of(doc, absent), parity=tolerance(doc, adapter.tolerance), data=dict(doc.get("data") or {}))


def _merge(graph: tuple[int | str, ...], pre: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """The graph's fixed sizes, the contract's names for dynamic axes."""
    if len(graph) != len(pre):
        return pre
    return tuple(g if isinstance(g, int) else (p if isinstance(p, str) and p != "?" else g) for g, p in zip(graph, pre))


def _elem(vi: Any) -> str:
    from onnx import helper

    elem = vi.type.tensor_type.elem_type
    return "string" if elem == 8 else str(np.dtype(helper.tensor_dtype_to_np_dtype(elem)))


def _check_scores(spec: BroughtSpec, native: dict[str, np.ndarray]) -> None:
    """A classifier's score output must hold probabilities (the threshold and the metrics read them as such)."""
    if spec.task == "regression":
        return
    raw = native[spec.score_output]
    score = next(o for o in spec.outputs() if o.name == spec.score_output)
    columns = raw.shape[-1] if raw.ndim >= 2 else 1
    want = (1, len(spec.labels or ())) if spec.task == "binary_classification" else (len(spec.labels or ()),)
    if raw.ndim > 2 or columns not in want:
        raise UsageError(f"the score output {score.name!r} has shape {raw.shape[1:]} per sample; a "
                         f"{spec.task} over labels {list(spec.labels or ())} needs "
                         + " or ".join(f"({w},)" for w in want) + " probabilities")
    low, high = float(np.min(raw)), float(np.max(raw))
    if low < -1e-6 or high > 1 + 1e-6:
        raise UsageError(f"the score output {score.name!r} holds values in [{low:.3g}, {high:.3g}], not probabilities: "
                         "add the softmax/sigmoid to the model (e.g. torch.nn.Sequential(net, torch.nn.Softmax(1))), "
                         "or declare which output holds probabilities: score_output = \"...\"")


def _check_given(spec: BroughtSpec, native: dict[str, np.ndarray], ref: Reference) -> None:
    """The source framework here must reproduce the outputs REF.npz holds (the model brought is the model the
    reference was made with): the same tolerance as the gate, fail closed."""
    from .. import parity

    common = {k: v for k, v in ref.outputs.items() if k in native}
    if not common:
        raise UsageError(f"REF.npz holds outputs {list(ref.outputs)}; the source gives {list(native)}: name them alike")
    fixed = {k: np.asarray(v).astype(native[k].dtype, copy=False) for k, v in common.items()}
    try:
        parity.gate(spec, {"reference_outputs": ({k: native[k] for k in common}, fixed)}, spec.threshold,
                    what="the source framework against the outputs REF.npz holds")
    except ParityError as exc:
        raise ParityError(f"{exc}\n  (the {spec.source.kind if spec.source else ''} model given is not the one "
                          "REF.npz's outputs came from: a changed weight, another file, or outputs in another "
                          "order)") from None


def _artifact(spec: BroughtSpec, loaded: Loaded, dataset: Dataset, native: dict[str, np.ndarray], ref: Reference,
              adapter: Source, source: Any, progress: Progress) -> Any:
    from ...train.artifact import Artifact, fit_domain

    point = OperatingPoint(spec.threshold, spec.threshold_rationale)
    scores = spec.scores(native)
    if ref.y is not None:
        try:
            metrics = spec.evaluate(scores, ref.y, dataset.X_test, point.threshold)
        except ValueError as exc:  # e.g. labels of one class only: no ROC-AUC, no CI
            raise UsageError(f"no held-out metrics from REF.npz's labels 'y': {exc} (the labels need every class "
                             "the metrics compare; give a held-out set with both outcomes, or no labels)") from None
        progress(f"[{spec.name}] metrics on the {ref.n} labelled reference samples: "
                 + ", ".join(f"{k} {v['value']:.3f}" for k, v in metrics["heldout"].items()))
    else:
        metrics = {"heldout": {}, "n_test": ref.n, "method": "no labels in REF.npz: no metrics"}
    guard, domain_report, arrays = fit_domain(spec, loaded.obj, dataset, point, scores, 0, progress)
    if guard is not None and ref.y is None:  # without labels the errors behind the curve are unknown
        domain_report["evaluation"]["selective"] = []
    from medinfer.integrity import sha256_bytes

    src = Path(str(source))
    digest = sha256_bytes(src.read_bytes()) if src.is_file() else "not a file"
    frameworks = {**spec.frameworks(), "brought_from": f"{adapter.kind}: {src.name} (sha256 {digest})"}
    report = {"metrics": metrics, "frameworks": frameworks, "seed": 0,
              **({"domain": domain_report} if guard is not None else {})}
    return Artifact(spec, ref.path.parent, loaded.obj, dataset, report, point, guard, arrays or None)


_ = need  # re-exported for the CLI's messages
