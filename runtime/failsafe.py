"""Fail-safe outcomes: NO_RESULT instead of an exception (caller's choice), and per-call deadlines.

A device loop that must never crash calls ``Model.try_predict`` (and loads with ``on_error="no_result"``):
every integrity, validation, timeout or runtime failure then comes back as a :class:`NoResult` carrying a
reason code — never a default class.
"""

from __future__ import annotations

import heapq
import itertools
import math
import threading
import time
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

    ok = False
    labels = None
    scores = None

    def to_dict(self) -> dict[str, Any]:
        return {"outcome": "NO_RESULT", "reason": self.reason, "error": self.error, "message": self.message,
                "model": self.model, "version": self.version, "request_id": self.request_id}


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


class Watchdog:
    """One daemon thread that sets ``RunOptions.terminate`` on runs whose deadline passed."""

    def __init__(self) -> None:
        self._heap: list[list[Any]] = []
        self._cv = threading.Condition()
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None
        self._wake_at = math.inf  # when the thread wakes next on its own (inf: only when notified)
        self.wakeups = 0

    def arm(self, run_options: Any, deadline: float) -> list[Any]:
        """Terminate ``run_options`` at ``deadline`` (perf_counter seconds) unless disarmed. Returns a handle."""
        entry = [deadline, next(self._ids), run_options]
        with self._cv:
            heapq.heappush(self._heap, entry)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="medinfer-watchdog", daemon=True)
                self._thread.start()
            # Wake the thread only when this deadline comes before its next wake-up: a thread woken on every call
            # costs a GIL hand-off and a context switch per prediction (it halved a server's throughput).
            if deadline < self._wake_at:
                self._cv.notify()
        return entry

    @staticmethod
    def disarm(entry: list[Any]) -> None:
        entry[2] = None  # lazily dropped by the loop

    def _loop(self) -> None:
        with self._cv:
            while True:
                while self._heap and self._heap[0][2] is None:
                    heapq.heappop(self._heap)
                self.wakeups += 1
                if not self._heap:
                    self._wake_at = math.inf
                    self._cv.wait()
                    continue
                wait = self._heap[0][0] - time.perf_counter()
                if wait > 0:
                    self._wake_at = self._heap[0][0]
                    self._cv.wait(wait)
                    continue
                _, _, options = heapq.heappop(self._heap)
                if options is not None:
                    options.terminate = True


WATCHDOG = Watchdog()
