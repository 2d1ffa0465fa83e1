"""Fail-safe outcomes: NO_RESULT instead of an exception (caller's choice); per-call deadlines: :mod:`.watchdog`.

A device loop that must never crash calls ``Model.try_predict`` (and loads with ``on_error="no_result"``):
every integrity, validation, timeout or runtime failure then comes back as a :class:`NoResult` carrying a
reason code — never a default class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ON_ERROR = ("raise", "no_result")


@dataclass(frozen=True)
class NoResult:
    """The typed NO_RESULT outcome. ``reason`` is the failing error's code (input, timeout, runtime, ...)."""

    reason: str
    message: str
    model: str
    version: str | None = None
    request_id: str | None = None
    error: str = ""
    index: int | None = None  # the item's position in its call (``predict(x, on_error="item")``), else None

    ok = False
    labels = None
    scores = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"outcome": "NO_RESULT", "reason": self.reason, "error": self.error,
                               "message": self.message, "model": self.model, "version": self.version,
                               "request_id": self.request_id}
        if self.index is not None:
            out["index"] = self.index
        return out


class UnavailableModel:
    """What ``load(..., on_error="no_result")`` returns when the bundle cannot be loaded: answers NO_RESULT."""

    ok = False

    def __init__(self, path: str, error: Exception) -> None:
        self.path = path
        self.name = path.rstrip("/").rsplit("/", 1)[-1]
        self.version = None
        self.error = error
        self.reason = getattr(error, "code", "error")

    def try_predict(self, x: Any, **_: Any) -> NoResult:
        return NoResult(self.reason, f"model unavailable: {self.error}", self.name, None, None,
                        type(self.error).__name__)

    def predict(self, x: Any, **_: Any) -> Any:
        raise self.error

    def __repr__(self) -> str:
        return f"UnavailableModel({self.path!r}, reason={self.reason!r})"
