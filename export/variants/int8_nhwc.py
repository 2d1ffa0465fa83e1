"""The ``int8_nhwc`` variant kind: :mod:`.int8_nhwc_graph`'s channels-last int8 CNN, registered with
``@register_variant("int8_nhwc")`` (a spec lists ``"int8_nhwc"`` in ``variants``).

Before the graph goes to the clinical gate every patch variant passes (:mod:`.gate`), two proofs, each a refusal when
it fails:

- the same rewrite in fp32 reproduces the validated graph on the calibration samples within the spec's parity
  tolerance (the chain was read right: layout, window order, flatten order, weights);
- the int8 graph gives each sample the same score alone as in a batch (``BATCH_ATOL``): no activation scale is
  shared between the samples of a batch, so a patch's answer never depends on its batch mates.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from ...train.artifact import calibration_indices
from ..canonical import canonical_bytes
from . import VariantJob, VariantsBuilt, register_variant
from .gate import INT8_GOLDEN_ATOL, gated_variant, refused
from .int8_nhwc_graph import Plan, build

if TYPE_CHECKING:
    from ...train.spec import ModelSpec, Progress

log = logging.getLogger(__name__)
KIND = "int8_nhwc"
FILE = "model.int8_nhwc.onnx"
PLAN = Plan()
BATCH_ATOL = 1e-5  # float summation order differs between a 1-row and an N-row product (~1e-6 seen)
CHECK_SAMPLES = 16


def _run(model_bytes: bytes, input_name: str, output: str, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    session = ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
    return np.asarray(session.run([output], {input_name: x})[0], dtype=np.float64)


def check_rewrite(model_bytes: bytes, twin: bytes, input_name: str, output: str, x: np.ndarray, atol: float) -> float:
    """Max abs difference of the fp32 rewrite from the validated graph on ``x``.

    Raises:
        ValueError: above ``atol``.
    """
    diff = float(np.max(np.abs(_run(twin, input_name, output, x) - _run(model_bytes, input_name, output, x))))
    if not diff <= atol:
        raise ValueError(f"the fp32 rewrite differs from the validated graph by {diff:.3g} (tolerance {atol:g})")
    return diff


def check_batch_invariance(data: bytes, input_name: str, output: str, x: np.ndarray, atol: float = BATCH_ATOL,
                           ) -> float:
    """Max abs difference between each sample scored alone and in one batch.

    Raises:
        ValueError: above ``atol`` (a sample's score would depend on its batch mates).
    """
    together = _run(data, input_name, output, x)
    alone = np.concatenate([_run(data, input_name, output, x[i:i + 1]) for i in range(len(x))])
    diff = float(np.max(np.abs(together - alone)))
    if not diff <= atol:
        raise ValueError(f"a sample's score changes by {diff:.3g} with its batch mates (tolerance {atol:g})")
    return diff


def int8_nhwc_variant(spec: ModelSpec, model_bytes: bytes, input_name: str, calibration: np.ndarray,
                      progress: Progress, plan: Plan = PLAN) -> tuple[bytes, str, float]:
    """The variant's graph, its description and its golden tolerance (see the module's docstring).

    Raises:
        ValueError: the graph is not a chain the rewrite handles, or one of the two proofs fails.
    """
    output = spec.score_output
    x = np.asarray(calibration[:CHECK_SAMPLES], dtype=np.float32)
    twin = build(model_bytes, input_name, output, plan, quantize=False)
    diff = check_rewrite(model_bytes, twin, input_name, output, x, max(spec.parity.atol, 1e-6))
    progress(f"[{spec.name}] int8_nhwc: the fp32 rewrite equals the validated graph (max diff {diff:.2g}); "
             f"{plan.label}, calibrated on {len(calibration)} training samples")
    data = build(model_bytes, input_name, output, plan, calibration=np.asarray(calibration, dtype=np.float32))
    check_batch_invariance(data, input_name, output, x)
    description = ("int8, channels-last: QLinearConv (per-channel int8 weights, uint8 activations with calibrated "
                   "scales; first layer's channels padded to 4), Dense as MatMulNBits (4-bit weights in blocks of "
                   f"{plan.block}, int8 compute on activations quantized per row), fp32 head; CT windows computed "
                   "as the input quantizer")
    return data, description, INT8_GOLDEN_ATOL


@register_variant(KIND)
def _build(job: VariantJob, kinds: list[str]) -> VariantsBuilt:
    """The variant from the training rows an artifact keeps (the same calibration rows as ``int8``), gated."""
    spec, ds = job.spec, job.dataset
    calibration = np.asarray(ds.X_train)[calibration_indices(len(ds.X_train), job.seed)]
    try:
        data, description, golden_atol = int8_nhwc_variant(spec, job.graph, job.input_name, calibration,
                                                           job.progress)
    except ValueError as exc:  # a rewrite that cannot prove itself is refused, never shipped
        return refused(spec, KIND, str(exc), job.progress)
    except (KeyError, IndexError, StopIteration) as exc:  # a graph shaped otherwise: refused like any mismatch
        return refused(spec, KIND, f"the int8_nhwc rewrite does not apply: {type(exc).__name__}: {exc}",
                       job.progress)
    data = canonical_bytes(data, spec.name)  # same model, same bytes
    return gated_variant(spec, ds, job.graph, job.input_name, job.golden_x, job.threshold, data, kind=KIND,
                         file=FILE, description=description, golden_atol=golden_atol, progress=job.progress)
