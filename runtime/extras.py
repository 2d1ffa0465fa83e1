"""The one way medinfer imports an optional dependency (MONAI's ``optional_import`` habit).

:func:`optional_import` imports a module that an extra of the distribution provides, and when it is missing raises
:class:`~medinfer.errors.MissingExtraError` (exit 9) naming the feature, the extra and its install command. It can
only name the extras ``pyproject.toml`` declares (:data:`EXTRAS`; a test keeps the two equal and checks that each
call's extra really lists the module's distribution), so an install advice never names an extra that does not
exist.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from .errors import MissingExtraError

#: The extras of the medinfer distribution (``[project.optional-dependencies]`` in pyproject.toml).
EXTRAS = ("train", "dicom", "fhir", "sign", "cpu", "gpu", "openvino", "trees", "lifecycle", "serve", "triton", "score",
          "dask", "spark", "dev", "torch", "boost", "chem")


def _declared(extra: str) -> None:
    if extra not in EXTRAS:  # a programming error: the advice would name an extra pip cannot install
        raise ValueError(f"extra {extra!r} is not declared in pyproject.toml (declared: {', '.join(EXTRAS)})")


def optional_import(module: str, extra: str, feature: str) -> ModuleType:
    """Import ``module`` (a dotted name), which the ``extra`` of medinfer provides, for ``feature``.

    Args:
        module: e.g. ``"pydicom"`` or ``"cryptography.hazmat.primitives.serialization"``.
        extra: the extra that installs it (one of :data:`EXTRAS`).
        feature: what needs it, as the user asked for it (``"DICOM input"``, ``"medinfer serve"``).

    Raises:
        MissingExtraError: the module (or one it imports) is not installed; names the extra and how to add it.
    """
    _declared(extra)
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(feature, extra, getattr(exc, "name", None) or module) from None


def missing_extra(extra: str, feature: str, module: str | None) -> MissingExtraError:
    """The error for ``feature`` finding ``module`` of ``extra`` missing (for a failure found late, deep inside a
    command; a declared extra only)."""
    _declared(extra)
    return MissingExtraError(feature, extra, module)


def require_extra(extra: str, feature: str, modules: tuple[str, ...]) -> None:
    """Check that every module in ``modules`` can be imported, without importing any (a command's check up front).

    Raises:
        MissingExtraError: naming the first missing module, the extra and how to add it.
    """
    _declared(extra)
    for module in modules:
        if importlib.util.find_spec(module) is None:
            raise MissingExtraError(feature, extra, module)
