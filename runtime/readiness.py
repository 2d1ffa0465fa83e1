"""The readiness self-test: the golden input's outputs on THIS machine and provider against the golden outputs the
bundle pins. Bit-exact (the outputs' digest matches) or within the manifest's tolerance; otherwise the bundle is not
ready here (:class:`~medinfer.errors.SelfTestError`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import SelfTestError
from .integrity import outputs_digest


@dataclass(frozen=True)
class SelfTestReport:
    """Outcome of running the golden input: ``bit_exact`` or ``within_tolerance`` (else SelfTestError)."""

    status: str
    max_abs_diff: float
    digest: str
    expected_digest: str
    seconds: float


def compare_golden(got: dict[str, np.ndarray], expected: dict[str, np.ndarray], names: list[str],
                   expected_digest: str, atol: float, rtol: float, seconds: float, model: str,
                   providers: list[str]) -> SelfTestReport:
    """``got`` against the ``expected`` golden outputs ``names``: bit-exact by digest, else within ``atol`` /
    ``rtol`` (floats) and equal (labels).

    Raises:
        SelfTestError: a shape or dtype differs, a float output differs beyond the tolerance, or a label differs.
    """
    digest = outputs_digest(got, tuple(names))
    if digest == expected_digest:
        return SelfTestReport("bit_exact", 0.0, digest, expected_digest, seconds)
    worst = 0.0
    for name in names:
        a, b = got[name], expected[name]
        if a.shape != b.shape or a.dtype.kind != b.dtype.kind:
            raise SelfTestError(f"{model} self-test: output '{name}' has shape {a.shape} {a.dtype}, expected "
                                f"{b.shape} {b.dtype}")
        if a.dtype.kind in "fc":
            diff = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)), initial=0.0))
            worst = max(worst, diff)
            if not np.allclose(a, b, atol=atol, rtol=rtol, equal_nan=False):
                raise SelfTestError(
                    f"{model} self-test failed on {providers}: output '{name}' differs from the golden output by "
                    f"{diff:.3g} (tolerance "
                    f"atol={atol:g}, rtol={rtol:g}); this machine or provider does not reproduce the validated model"
                )
        elif not np.array_equal(a, b):
            raise SelfTestError(f"{model} self-test failed: output '{name}' (labels) differs from golden")
    return SelfTestReport("within_tolerance", worst, digest, expected_digest, seconds)
