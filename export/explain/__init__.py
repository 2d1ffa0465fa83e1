"""Explanations made and gated at export (the device only runs them: :mod:`medinfer.explain`).

A spec says how its model explains (``ModelSpec.explain``: ``{"method": ..., settings}``); the method's builder,
registered here, makes what the device needs (an explanation graph and its data, or the settings of a perturbation),
gates it against the native reference (fail closed: :class:`~medinfer.errors.ParityError`), and the fidelity of the
result is measured on held-out samples (deletion/insertion curves, :mod:`medinfer.fidelity`) for the manifest and
the card. One call from the export pipeline: :func:`build_explanation`.
"""

from __future__ import annotations

import dataclasses
import io
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from medinfer.errors import ParityError, UnknownNameError
from medinfer.explain import Explainer, Subject
from medinfer.explain_spec import ExplanationEntry
from medinfer.fidelity import measure
from medinfer.samples import pair_arrays

from ...train.spec import Dataset, ModelSpec, Progress, quiet
from ..samples import sample_indices
from . import linear, perturbation, saabas
from .context import Built, Context
from .plot import PLOT, fidelity_figure

GOLDEN_ROWS = 2  # golden inputs of an explanation graph (its outputs are (N, F) or (N, C, F): kept small)
Builder = Callable[[Context, Subject], Built]
BUILDERS: dict[str, Builder] = {
    "linear": lambda ctx, _subject: linear.build(ctx),
    "saabas": lambda ctx, _subject: saabas.build(ctx),
    "occlusion": perturbation.build_occlusion,
    "masking": perturbation.build_masking,
}


def subject_of(spec: ModelSpec, dataset: Dataset) -> Subject:
    score = next(o for o in spec.outputs() if o.name == spec.score_output)
    return Subject(spec.name, spec.task, spec.labels, spec.positive_label, spec.inputs(dataset)[0], score.shape)


def build_explanation(spec: ModelSpec, model: Any, dataset: Dataset, onx: Any, model_bytes: bytes,
                      metadata: dict[str, str], *, seed: int = 0, golden_x: Any = None,
                      progress: Progress = quiet) -> tuple[ExplanationEntry | None, dict[str, tuple[bytes, str]]]:
    """Make, gate and measure the explanation ``spec.explain`` asks for.

    Args:
        onx: the model's converted graph (``onnx.ModelProto``) as it ships.
        model_bytes: its serialized bytes (the session the fidelity measurement runs).
        metadata: the ``medinfer.*`` metadata of the model graph (an explanation graph carries the same contract).
        golden_x: the golden input (the explanation graph's golden output is computed on it).

    Returns:
        (the manifest's ``explanation`` section or None when the spec asks for none, {file name: (bytes, role)}:
        the explanation graph and its data (role ``explain``) and the fidelity figure (``plot``)).

    Raises:
        UnknownNameError: an unknown method.
        ParityError: the explanation does not reproduce its native reference (nothing is written).
    """
    settings = dict(getattr(spec, "explain", None) or {})
    if not settings:
        return None, {}
    method = settings.pop("method", None)
    if method not in BUILDERS:
        raise UnknownNameError("explanation method", str(method), BUILDERS, of=spec.name)
    from .. import parity

    input_name = spec.inputs(dataset)[0].name
    ctx = Context(spec, model, dataset, onx, input_name, metadata, settings, parity.ort_session(model_bytes), seed,
                  progress)
    subject = subject_of(spec, dataset)
    try:
        built = BUILDERS[method](ctx, subject)
    except TypeError as exc:  # a model the method cannot explain: refused like a failed gate
        raise ParityError(f"{spec.name}: no {method} explanation: {exc}") from exc
    arrays = dict(built.arrays)
    if built.graph is not None:
        golden = np.asarray(dataset.X_test if golden_x is None else golden_x)[:GOLDEN_ROWS]
        arrays.update(pair_arrays({input_name: golden}, {built.entry.output: ctx.run(built.session, golden)}))
    graph_run = (lambda feeds: ctx.run(built.session, feeds[input_name])) if built.graph is not None else None
    explainer = Explainer(subject, built.entry, arrays,
                          lambda feeds: ctx.model_session.run([spec.score_output], feeds)[0], graph_run)
    rows = sample_indices(dataset.X_test)
    progress(f"[{spec.name}] explanation fidelity: deletion/insertion curves on {len(rows)} held-out samples")
    measured = measure(explainer, {input_name: np.asarray(dataset.X_test)[rows]})
    entry = dataclasses.replace(built.entry, fidelity={**measured, "rows": "the parity sample's held-out rows"},
                                can_tell=str(settings.get("can_tell", "")),
                                cannot_tell=str(settings.get("cannot_tell", "")))
    progress(f"[{spec.name}] explanation {method}: area between curves {measured['gain']:.4g} {measured['units']} "
             f"(deletion {measured['deletion_gain']:.4g}, insertion {measured['insertion_gain']:.4g}); better than "
             f"random order on {measured['share_better']:.0%} of samples")
    files: dict[str, tuple[bytes, str]] = {}
    if built.graph is not None:
        files[ctx.graph_file] = (built.graph, "explain")
    if arrays:
        files[ctx.data_file] = (_npz(arrays), "explain")
    with tempfile.TemporaryDirectory() as folder:
        files[PLOT] = (fidelity_figure({spec.name: entry.fidelity}, Path(folder) / "plot.png").read_bytes(), "plot")
    return dataclasses.replace(entry, data=ctx.data_file if arrays else None), files


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    plain = {k: np.array(np.asarray(v).tolist(), dtype=str).reshape(np.shape(v)) if np.asarray(v).dtype.kind in "OU"
             else np.asarray(v) for k, v in arrays.items()}
    np.savez(buf, **plain)
    return buf.getvalue()
