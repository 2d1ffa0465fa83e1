"""The exception hierarchy of medinfer.

Every error raised on purpose by medinfer derives from :class:`MedinferError` and ALSO from the builtin that
matches its meaning, so callers can catch either ``medinfer.InputError`` or plain ``ValueError``.
Each error carries a short machine-readable ``code`` (used for NO_RESULT reason codes and CLI exit codes).
"""

from __future__ import annotations


class MedinferError(Exception):
    """Base class of every error medinfer raises on purpose."""

    code = "error"


class ManifestError(MedinferError, ValueError):
    """The bundle's manifest.json is missing, not JSON, or does not follow the schema."""

    code = "manifest"


class IntegrityError(MedinferError, ValueError):
    """A bundle file is missing, altered, unexpected, or its signature does not verify."""

    code = "integrity"


class SignatureError(IntegrityError):
    """A signature is missing, made by an untrusted key, or does not match manifest.json."""

    code = "signature"


class InputError(MedinferError, ValueError):
    """The input does not match the model's input contract (shape, dtype, range, names)."""

    code = "input"


class InputTypeError(InputError, TypeError):
    """The input has the wrong type or dtype (a subclass of both InputError and TypeError)."""

    code = "input_type"


class ProviderError(MedinferError, RuntimeError):
    """An execution provider was asked for that this onnxruntime build or machine cannot offer."""

    code = "provider"


class SelfTestError(MedinferError, RuntimeError):
    """The golden input did not reproduce the golden output: the bundle is not ready on this machine."""

    code = "self_test"


class InferenceError(MedinferError, RuntimeError):
    """onnxruntime failed while running a validated input."""

    code = "runtime"


class DeadlineExceeded(MedinferError, TimeoutError):
    """A call did not finish within its deadline."""

    code = "timeout"


class ParityError(MedinferError, RuntimeError):
    """The exported graph does not reproduce the native model within the spec's tolerances."""

    code = "parity"


class MissingExtraError(MedinferError, ImportError):
    """A feature needs an optional dependency group that is not installed."""

    code = "missing_extra"

    def __init__(self, feature: str, extra: str, missing: str | None = None) -> None:
        detail = f" ({missing} is not importable)" if missing else ""
        super().__init__(
            f"{feature} needs the [{extra}] extra{detail}: pip install 'medinfer[{extra}]'"
        )
        self.extra = extra


__all__ = [
    "DeadlineExceeded",
    "InferenceError",
    "InputError",
    "InputTypeError",
    "IntegrityError",
    "ManifestError",
    "MedinferError",
    "MissingExtraError",
    "ParityError",
    "ProviderError",
    "SelfTestError",
    "SignatureError",
]
