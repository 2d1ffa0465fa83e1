"""The options of ``medinfer.load``, checked before any file is read (scikit-learn's ``_validate_params`` habit).

:class:`LoadOptions` is a frozen dataclass: constructing it validates every argument against its declared choices,
so a typo (``cast="sane"``, ``session_profile="fast"``, ``out_of_domain="drop"``, a provider ``"cdua"``) raises a
:class:`~medinfer.errors.UsageError` (exit 2) naming the valid choices, and an unavailable provider a
:class:`~medinfer.errors.ProviderError` — before the manifest is read or a byte of the bundle is hashed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cpu_class import AUTO
from .errors import UsageError, check_choice
from .failsafe import ON_ERROR
from .providers import ProviderRequest, resolve
from .session import DEFAULT_PROFILE, check_overrides
from .validation import CAST_POLICIES

if TYPE_CHECKING:
    from .audit import AuditLog

#: What a sample outside the applicability domain gets (``load(out_of_domain=...)``, ``Model.configure``).
OUT_OF_DOMAIN = ("flag", "no_result", "raise")


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def check_deadline(deadline_ms: Any) -> None:
    """Refuse a per-call deadline that is not None or a number > 0 (milliseconds).

    Raises:
        UsageError: naming the value.
    """
    if deadline_ms is not None and (_is_bool(deadline_ms) or not isinstance(deadline_ms, (int, float))
                                    or not deadline_ms > 0):
        raise UsageError(f"deadline_ms must be > 0, got {deadline_ms!r}")


@dataclass(frozen=True)
class LoadOptions:
    """Every argument of :func:`medinfer.load` but the path, validated on construction (see the module docstring).

    Raises:
        UsageError / UnknownNameError: a value that is not one of the argument's choices or types.
        ProviderError: a provider list none of whose providers this onnxruntime build offers.
    """

    providers: Sequence[ProviderRequest] | ProviderRequest | None = None
    variant: str | None = None
    session_profile: Mapping[str, Any] | str | None = None
    cast: str = "safe"
    self_test: bool = True
    deterministic: bool = False
    require_signature: bool = False
    trusted_keys: Sequence[str | Path | bytes] = ()
    audit: AuditLog | str | Path | None = None
    on_error: str = "raise"
    deadline_ms: float | None = None
    out_of_domain: str = "flag"

    def __post_init__(self) -> None:
        check_choice("on_error policy", self.on_error, ON_ERROR)
        check_choice("out_of_domain policy", self.out_of_domain, OUT_OF_DOMAIN)
        check_choice("cast policy", self.cast, CAST_POLICIES)
        for name in ("self_test", "deterministic", "require_signature"):
            if not _is_bool(getattr(self, name)):
                raise UsageError(f"load({name}=...) takes True or False, got {getattr(self, name)!r}")
        if self.variant is not None and (not isinstance(self.variant, str) or not self.variant):
            raise UsageError(f"load(variant=...) takes a variant name such as 'int8', or {AUTO!r} (the variant the "
                             f"manifest prefers for this CPU), got {self.variant!r}")
        self._check_session_profile()
        check_deadline(self.deadline_ms)
        self._check_keys()
        if self.audit is not None and not isinstance(self.audit, (str, Path)) and not hasattr(self.audit, "bind"):
            raise UsageError(f"load(audit=...) takes an AuditLog or the path of its file, got "
                             f"{type(self.audit).__name__}")
        resolve(self.providers)  # names known and at least one available here: before anything is hashed

    def _check_session_profile(self) -> None:
        value = self.session_profile
        if value is None:
            return
        if isinstance(value, str):
            check_choice("session profile", value, (DEFAULT_PROFILE,),
                         "; or pass a mapping of settings, e.g. {'intra_op_num_threads': 1}")
        elif isinstance(value, Mapping):
            check_overrides(value)
        else:
            raise UsageError(f"load(session_profile=...) takes 'default' or a mapping of settings, got "
                             f"{type(value).__name__}")

    def _check_keys(self) -> None:
        keys = self.trusted_keys
        if isinstance(keys, (str, bytes, Path)):  # one key given alone
            object.__setattr__(self, "trusted_keys", (keys,))
            return
        try:
            items = tuple(keys)
        except TypeError:
            raise UsageError(f"trusted_keys takes a list of public keys (PEM paths or bytes), got "
                             f"{type(keys).__name__}") from None
        bad = [k for k in items if not isinstance(k, (str, bytes, Path))]
        if bad:
            raise UsageError(f"trusted_keys holds {type(bad[0]).__name__} {bad[0]!r}; each key is a PEM path or bytes")
        object.__setattr__(self, "trusted_keys", items)
