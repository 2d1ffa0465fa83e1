"""The ``int8`` variant: static QDQ int8 of the validated graph (uint8 activations, per-channel int8 weights).

It ships only if it passes the clinical gate every patch variant passes (:mod:`.gate`: the spec's budget of held-out
loss vs the fp32 graph, and for binary tasks no sensitivity below the fp32 sensitivity's 95 % CI). A refused variant
is reported, never shipped.
Settings: the spec's ``variant_settings["int8"]`` (:class:`medinfer.train.variants.Int8`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...train.artifact import calibration_indices
from ...train.spec import Dataset, ModelSpec, Progress, quiet
from ...train.variants import Int8
from ..canonical import canonical_bytes
from ..optimize import fold_window_into_quantize, static_int8
from . import VariantJob, VariantsBuilt, register_variant, settings
from .gate import gated_variant, refused

FILE = "model.int8.onnx"


@register_variant("int8")
def _build(job: VariantJob, kinds: list[str]) -> VariantsBuilt:
    return build_int8(job.spec, job.dataset, job.graph, job.input_name, job.golden_x, job.threshold, job.progress,
                      seed=job.seed)


def quantize(spec: ModelSpec, ds: Dataset, model_bytes: bytes, input_name: str, seed: int = 0,
             progress: Progress = quiet) -> bytes:
    """The static int8 graph, calibrated on the training rows an artifact keeps (:func:`calibration_indices` with
    the training ``seed``: exporting right after training and exporting the saved artifact give the same bytes).

    Raises:
        ValueError: the spec's input window cannot be folded into the quantizer.
    """
    options = settings(spec, "int8", Int8())
    calibration = np.asarray(ds.X_train)[calibration_indices(len(ds.X_train), seed)]
    progress(f"[{spec.name}] static int8 (QDQ, per-channel) calibrated on {len(calibration)} training samples")
    data = static_int8(model_bytes, calibration, input_name, exclude_name_prefixes=options.exclude_prefixes
                       + ("domain_",))
    if options.fold_window:
        data = fold_window_into_quantize(data, *options.fold_window)
    return canonical_bytes(data, spec.name)  # the quantizer keeps set-ordered fields: same model, same bytes


def build_int8(spec: ModelSpec, ds: Dataset, model_bytes: bytes, input_name: str, golden_x: Any,
               threshold: float | None, progress: Progress = quiet, seed: int = 0) -> VariantsBuilt:
    """Make the int8 variant and gate it on clinical metrics (:func:`.gate.gated_variant`).

    Returns:
        (manifest variants, {file name: bytes}, report incl. a refused variant, {variant: ({}, golden outputs)}).
    """
    try:
        data = quantize(spec, ds, model_bytes, input_name, seed, progress)
    except ValueError as exc:
        return refused(spec, "int8", f"window folding failed: {exc}", progress)
    folded = bool(settings(spec, "int8", Int8()).fold_window)
    return gated_variant(
        spec, ds, model_bytes, input_name, golden_x, threshold, data, kind="int8", file=FILE, progress=progress,
        description="static QDQ int8 (uint8 activations, per-channel int8 weights), calibrated on training samples"
        + ("; input windows folded into one per-channel QuantizeLinear" if folded else ""))
