"""The exception hierarchy of medinfer, and the one table of CLI exit codes.

Every error raised on purpose by medinfer derives from :class:`MedinferError` and ALSO from the builtin that
matches its meaning, so callers can catch either ``medinfer.InputError`` or plain ``ValueError``.
Each error carries a short machine-readable ``code``: the NO_RESULT reason, the key of :data:`EXIT_CODES`
(the exit status of every ``medinfer`` command) and, for the server, of its HTTP status.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class MedinferError(Exception):
    """Base class of every error medinfer raises on purpose."""

    code = "error"


class UsageError(MedinferError, ValueError):
    """A command, option or argument was used wrongly (a bad value, a missing file, a folder that exists)."""

    code = "usage"


class UnknownNameError(UsageError, LookupError):
    """A name (spec, variant, data source, engine, model...) is not known; the message suggests the closest."""

    code = "unknown_name"

    def __init__(self, kind: str, name: object, known: Iterable[str], hint: str = "", *, of: str = "") -> None:
        choices = sorted(str(k) for k in known)
        close = difflib.get_close_matches(str(name), choices, n=3)
        suggestion = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        listed = f" ({len(choices)} known: {', '.join(choices)})" if choices else " (none are known)"
        owner = f" of {of}" if of else ""
        super().__init__(f"unknown {kind} {name!r}{owner}{suggestion}{listed}{hint}")
        self.name = name
        self.known = tuple(choices)
        self.suggestions = tuple(close)


class ManifestError(MedinferError, ValueError):
    """The bundle's manifest.json is missing, not JSON, or does not follow the schema."""

    code = "manifest"


class BundleError(MedinferError, ValueError):
    """The bundle's files verify but cannot be used: a graph onnxruntime cannot load, an unreadable golden file."""

    code = "bundle"


class IntegrityError(MedinferError, ValueError):
    """A bundle file is missing, altered, unexpected, or its signature does not verify."""

    code = "integrity"


class SignatureError(IntegrityError):
    """A signature is missing, made by an untrusted key, or does not match manifest.json."""

    code = "signature"


class InputError(MedinferError, ValueError):
    """The input does not match the model's input contract (shape, dtype, range, names)."""

    code = "input"


class NoInformationError(InputError):
    """The input carries no information the model can use (e.g. a text with no word the model knows): it gets
    no answer rather than a confident label."""

    code = "no_information"


class OutOfDomainError(MedinferError, ValueError):
    """A sample lies outside the bundle's applicability domain and the model was loaded to refuse such samples
    (``load(..., out_of_domain="no_result" | "raise")``)."""

    code = "out_of_domain"


class InputTypeError(InputError, TypeError):
    """The input has the wrong type or dtype (a subclass of both InputError and TypeError)."""

    code = "input_type"


class LossyCastError(InputTypeError):
    """A dtype that converts to the model's only with a possible loss of precision (float64 for a float32 model),
    refused under the default ``cast="safe"``. ``head`` says what was received and expected; each interface adds
    its own remedy (Python: ``x.astype`` or ``load(..., cast="same_kind")``; the CLI: ``--cast same_kind``)."""

    code = "input_type"

    def __init__(self, head: str, remedy: str) -> None:
        super().__init__(f"{head}. {remedy}")
        self.head = head


class ProviderError(MedinferError, RuntimeError):
    """An execution provider was asked for that this onnxruntime build or machine cannot offer."""

    code = "provider"


class RuntimeTooOld(MedinferError, RuntimeError):
    """The installed onnxruntime is older than the release the bundle's manifest requires (``requires``)."""

    code = "runtime_too_old"

    def __init__(self, message: str, *, installed: str = "", required: str = "") -> None:
        super().__init__(message)
        self.installed = installed
        self.required = required


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


class OnnxruntimeMissing(MissingExtraError):
    """No onnxruntime build is installed, or the installed one cannot be imported: the message gives the one
    command that leaves exactly one build (``[cpu]``, ``[gpu]`` or ``[openvino]``)."""

    def __init__(self, message: str, extra: str = "cpu") -> None:
        ImportError.__init__(self, message)
        self.extra = extra


class DataFetchError(MedinferError, RuntimeError):
    """Training data could not be fetched, or its bytes do not match the pinned sha256."""

    code = "data_fetch"


class DatasetError(MedinferError, ValueError):
    """Training data was fetched but cannot be used as it is (a bad label, a missing split, an unreadable file)."""

    code = "dataset"


class AuditError(MedinferError, OSError):
    """The audit trail cannot be written or read: a result that cannot be audited is not returned."""

    code = "audit"


class DriftAlert(MedinferError, RuntimeError):
    """The out-of-domain share crossed the alert threshold (``medinfer audit drift --max-share``)."""

    code = "drift"


class NotReproducible(MedinferError, RuntimeError):
    """Two builds of the same model in fresh processes gave different files (``medinfer build NAME
    --check-reproducible``)."""

    code = "not_reproducible"


class ProfileLoses(MedinferError, RuntimeError):
    """The bundle's session profile is slower than onnxruntime's default options on this machine by more than the
    noise (``medinfer bench --check-profile``)."""

    code = "profile_loses"


class UnknownModel(UnknownNameError):
    """No served model (or version) has that name (HTTP 404)."""

    code = "unknown_model"


class NotReady(MedinferError, RuntimeError):
    """The model is still loading, failed its checks, or the server is saturated (HTTP 503)."""

    code = "not_ready"


class RequestError(InputError):
    """The request body does not follow the Open Inference Protocol (HTTP 400)."""

    code = "input"


class BodyTooLarge(InputError):
    """The request body exceeds the server's bound (HTTP 413)."""

    code = "too_large"


#: The exit status of every ``medinfer`` command, by error code. 0 is success, 1 an unexpected error.
EXIT_CODES: dict[str, int] = {
    "usage": 2, "unknown_name": 2, "unknown_model": 2,
    "integrity": 3, "signature": 3,
    "manifest": 4, "bundle": 4,
    "input": 5, "input_type": 5, "too_large": 5, "no_information": 5, "out_of_domain": 5,
    "provider": 6,
    "self_test": 7,
    "parity": 8,
    "missing_extra": 9,
    "runtime": 10, "timeout": 10, "not_ready": 10,
    "data_fetch": 11, "dataset": 11,
    "audit": 12,
    "runtime_too_old": 13,
    "drift": 14,
    "not_reproducible": 15, "profile_loses": 15,
}

#: What each exit status means (``medinfer --help`` prints this table).
EXIT_MEANINGS: dict[int, str] = {
    0: "success",
    1: "unexpected error (a bug: please report it with the message)",
    2: "usage: a bad option, argument or name",
    3: "integrity: a bundle file or signature does not verify",
    4: "not a bundle, or a bad one: manifest.json is missing (a file or a folder that is no bundle) or invalid, "
       "or the bundle's files cannot be used",
    5: "input: the input does not match the model's contract",
    6: "provider: the execution provider is not available",
    7: "self-test: the golden input did not reproduce the golden output",
    8: "parity: the exported graph does not reproduce the native model",
    9: "missing extra: an optional dependency group is not installed",
    10: "inference: the run failed, timed out or the model was not ready",
    11: "data: training data could not be fetched or used",
    12: "audit: the audit trail could not be written or does not verify",
    13: "runtime too old: the installed onnxruntime is older than the bundle requires",
    14: "drift: the out-of-domain share crossed its threshold (medinfer audit drift)",
    15: "check failed: two builds differ (medinfer build --check-reproducible), or the bundle's session profile "
        "loses to onnxruntime's defaults here (medinfer bench --check-profile)",
}


def exit_code(exc: BaseException) -> int:
    """The exit status for ``exc`` (1 for anything that is not a MedinferError)."""
    return EXIT_CODES.get(getattr(exc, "code", ""), 1) if isinstance(exc, MedinferError) else 1


__all__ = [
    "EXIT_CODES",
    "EXIT_MEANINGS",
    "AuditError",
    "BodyTooLarge",
    "BundleError",
    "DataFetchError",
    "DatasetError",
    "DeadlineExceeded",
    "DriftAlert",
    "InferenceError",
    "InputError",
    "InputTypeError",
    "IntegrityError",
    "LossyCastError",
    "ManifestError",
    "MedinferError",
    "MissingExtraError",
    "NoInformationError",
    "NotReady",
    "NotReproducible",
    "OnnxruntimeMissing",
    "OutOfDomainError",
    "ParityError",
    "ProfileLoses",
    "ProviderError",
    "RequestError",
    "RuntimeTooOld",
    "SelfTestError",
    "SignatureError",
    "UnknownModel",
    "UnknownNameError",
    "UsageError",
    "exit_code",
]
