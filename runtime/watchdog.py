"""Per-call deadlines: one daemon thread that cancels the onnxruntime runs whose deadline passed."""

from __future__ import annotations

import heapq
import itertools
import math
import threading
import time
from typing import Any


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
