"""The exception hierarchy of medinfer, and the one table of what each error becomes outside.

Every error raised on purpose by medinfer derives from :class:`MedinferError` and ALSO from the builtin that
matches its meaning, so callers can catch either ``medinfer.InputError`` or plain ``ValueError``.
Each error carries a short machine-readable ``code``: the NO_RESULT reason and the key of :data:`OUTWARD`, the one
table of its process exit status (every ``medinfer`` command), HTTP status (``medinfer serve``) and Triton error
code (the Python backend). Interfaces look an error up by its code (:func:`exit_code`, :func:`http_status`,
:func:`triton_code`), never by its class.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass


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


def check_choice(kind: str, value: object, choices: Iterable[str], hint: str = "") -> None:
    """Refuse ``value`` unless it is one of ``choices`` (an option's declared values).

    Raises:
        UnknownNameError: a :class:`UsageError` (exit 2) naming the choices and the closest one.
    """
    known = tuple(choices)
    if not isinstance(value, str) or value not in known:
        raise UnknownNameError(kind, value, known, hint)


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


class ProviderRequestError(UsageError, ProviderError):
    """A provider request that cannot name a provider (not a string, a malformed ``(name, options)`` pair): the
    caller's mistake (exit 2), also a :class:`ProviderError`."""

    code = "usage"


class UnknownProvider(UnknownNameError, ProviderError):
    """A provider name that no onnxruntime build knows (a typo): exit 2 with the known names, also a
    :class:`ProviderError`."""

    code = "unknown_name"


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


class OutputError(MedinferError, OSError):
    """An output file cannot be written where it was asked for: a missing or read-only folder, a target that is not
    a regular file (a folder, FIFO, device, symbolic link), or a write the system refused
    (:mod:`medinfer.writing`). Nothing partial is left behind."""

    code = "output"


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


class ChangeRejected(MedinferError, RuntimeError):
    """A candidate bundle is outside the acceptance criteria its parent declared (``medinfer diff``, the PCCP), or
    changes what no plan covers (its contract, its domain guard)."""

    code = "change_rejected"


class UpdateRefused(IntegrityError):
    """An update or install is refused: the bundle is older than the installed one (anti-rollback), or the update
    repository's metadata does not verify (expired, replayed, tampered, wrong keys)."""

    code = "update_refused"


class UnknownModel(UnknownNameError):
    """No served model (or version) has that name (HTTP 404)."""

    code = "unknown_model"


class NotReady(MedinferError, RuntimeError):
    """The model is still loading, failed its checks, or the server is saturated (HTTP 503)."""

    code = "not_ready"


class Busy(NotReady):
    """Every worker of the server is busy and its queue is full (HTTP 503, reason ``busy``)."""

    code = "busy"


class RequestError(InputError):
    """The request body does not follow the Open Inference Protocol (HTTP 400)."""

    code = "input"


class AuthError(MedinferError, PermissionError):
    """A request was refused for its credentials (the base of 401 and 403)."""

    code = "unauthenticated"


class Unauthenticated(AuthError):
    """No credential, an unknown or expired token, or a token in the URL (HTTP 401, gRPC UNAUTHENTICATED)."""

    code = "unauthenticated"


class Forbidden(AuthError):
    """A valid credential that lacks the endpoint's scope or certificate (HTTP 403, gRPC PERMISSION_DENIED)."""

    code = "forbidden"


class BodyTooLarge(InputError):
    """The request body exceeds the server's bound (HTTP 413)."""

    code = "too_large"


@dataclass(frozen=True)
class Outward:
    """What an error code becomes outside medinfer: the process exit status, the HTTP status, the Triton code and
    the gRPC status (serve's KServe v2 gRPC endpoint)."""

    exit: int
    http: int = 500
    triton: str = "INTERNAL"  # a TritonError code: INVALID_ARG, UNAVAILABLE, INTERNAL
    grpc: str = "INTERNAL"  # a grpc.StatusCode name


_INPUT = Outward(5, 400, "INVALID_ARG", "INVALID_ARGUMENT")
_UNAVAILABLE = Outward(10, 503, "INTERNAL", "UNAVAILABLE")

#: THE table: every error code, what it becomes outside. A code missing here is a bug (a test checks every class).
OUTWARD: dict[str, Outward] = {
    "error": Outward(1),
    "usage": Outward(2), "unknown_name": Outward(2), "unknown_model": Outward(2, 404, "INTERNAL", "NOT_FOUND"),
    "output": Outward(2),
    "integrity": Outward(3), "signature": Outward(3),
    "manifest": Outward(4), "bundle": Outward(4),
    "input": _INPUT, "input_type": _INPUT, "no_information": _INPUT,
    "too_large": Outward(5, 413, "INVALID_ARG", "RESOURCE_EXHAUSTED"),
    "out_of_domain": Outward(5, 422, "INTERNAL", "FAILED_PRECONDITION"),
    "provider": Outward(6),
    "self_test": Outward(7),
    "parity": Outward(8),
    "missing_extra": Outward(9),
    "runtime": Outward(10), "timeout": Outward(10, 504, "UNAVAILABLE", "DEADLINE_EXCEEDED"),
    "not_ready": _UNAVAILABLE, "busy": _UNAVAILABLE,
    "data_fetch": Outward(11), "dataset": Outward(11),
    "audit": Outward(12, 503, "INTERNAL", "UNAVAILABLE"),
    "runtime_too_old": Outward(13),
    "drift": Outward(14),
    "not_reproducible": Outward(15), "profile_loses": Outward(15),
    "change_rejected": Outward(16),
    "update_refused": Outward(17),
    "unauthenticated": Outward(2, 401, "INTERNAL", "UNAUTHENTICATED"),
    "forbidden": Outward(2, 403, "INTERNAL", "PERMISSION_DENIED"),
}
_UNEXPECTED = OUTWARD["error"]  # anything that is not a MedinferError: a bug

#: The exit status of every ``medinfer`` command, by error code (the ``exit`` column of :data:`OUTWARD`).
EXIT_CODES: dict[str, int] = {code: row.exit for code, row in OUTWARD.items() if code != "error"}

#: What each exit status means (``medinfer --help`` prints this table).
EXIT_MEANINGS: dict[int, str] = {
    0: "success",
    1: "unexpected error (a bug: please report it with the message)",
    2: "usage: a bad option, argument or name (an output path that cannot be written included)",
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
    16: "change rejected: the candidate bundle is outside the acceptance criteria its parent declared (medinfer diff)",
    17: "update refused: the bundle is older than the installed one (anti-rollback), or the update repository's "
        "metadata does not verify (expired, replayed, tampered)",
}


def outward(exc: BaseException) -> Outward:
    """The row of :data:`OUTWARD` for ``exc`` (exit 1 / HTTP 500 / INTERNAL for anything that is not a
    MedinferError)."""
    return OUTWARD.get(exc.code, _UNEXPECTED) if isinstance(exc, MedinferError) else _UNEXPECTED


def exit_code(exc: BaseException) -> int:
    """The exit status for ``exc`` (1 for anything that is not a MedinferError)."""
    return outward(exc).exit


def http_status(exc: BaseException) -> int:
    """The HTTP status for ``exc`` (``medinfer serve``; 500 for anything that is not a MedinferError)."""
    return outward(exc).http


def grpc_status(exc: BaseException) -> str:
    """The gRPC status name for ``exc`` (``grpc.StatusCode[...]``; ``INTERNAL`` for anything unexpected)."""
    return outward(exc).grpc


def triton_code(exc: BaseException) -> str:
    """The TritonError code for ``exc`` (the Python backend; ``INTERNAL`` for anything unexpected)."""
    return outward(exc).triton


__all__ = [
    "EXIT_CODES",
    "EXIT_MEANINGS",
    "AuthError",
    "Forbidden",
    "Unauthenticated",
    "grpc_status",
    "OUTWARD",
    "AuditError",
    "BodyTooLarge",
    "BundleError",
    "ChangeRejected",
    "Busy",
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
    "OutputError",
    "Outward",
    "ParityError",
    "ProfileLoses",
    "ProviderError",
    "ProviderRequestError",
    "RequestError",
    "RuntimeTooOld",
    "SelfTestError",
    "SignatureError",
    "UnknownModel",
    "UnknownNameError",
    "UpdateRefused",
    "UnknownProvider",
    "UsageError",
    "check_choice",
    "exit_code",
    "http_status",
    "outward",
    "triton_code",
]
