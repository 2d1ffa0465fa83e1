"""What ``medinfer serve`` counts: per model and version, Triton's statistics extension and Prometheus metrics.

One :class:`ModelStats` per served model collects every request's outcome and durations under one lock (one
acquisition per request); the statistics endpoint (``GET /v2/models[/{name}[/versions/{v}]]/stats``) and the
Prometheus scrape (``GET /metrics``) both read it, so the two always agree.

What the durations mean (Triton's terms, measured by the server around the library call):

- ``queue``: from the whole request being received to the start of its processing (waiting for a worker slot);
- ``compute_input``: decoding the request (JSON or binary tensors into numpy arrays);
- ``compute_infer``: ``Model.predict`` — validation, the onnxruntime run, the decision rule and the audit record;
- ``compute_output``: encoding the response tensors;
- ``success`` / ``fail``: the whole request, from the first byte of its body being read to its response.

Prometheus names (the Triton metric each mirrors):
``medinfer_inference_request_success_total`` (``nv_inference_request_success``),
``medinfer_inference_request_failure_total{reason}`` (``nv_inference_request_failure``),
``medinfer_inference_count_total`` (``nv_inference_count``), ``medinfer_inference_exec_count_total``
(``nv_inference_exec_count``), ``medinfer_inference_request_duration_us_total`` and the ``queue`` /
``compute_input`` / ``compute_infer`` / ``compute_output`` ``_duration_us_total`` counters (``nv_inference_*_us``),
``medinfer_inference_request_duration_seconds`` (a histogram; Triton: ``nv_inference_request_summary_us``),
``medinfer_inference_pending_request_count`` (``nv_inference_pending_request_count``), and with no Triton twin
``medinfer_inference_inflight_request_count``, ``medinfer_model_ready``, ``medinfer_no_result_total{reason}``,
``medinfer_audit_write_failures_total``; ``process_resident_memory_bytes`` stands where Triton reports
``nv_cpu_memory_used_bytes`` (system-wide there). All carry ``model`` and ``version`` labels but the last.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

# Upper bounds (seconds) of the request-duration histogram: 50 µs to 10 s.
BUCKETS = (5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
PHASES = ("queue", "compute_input", "compute_infer", "compute_output")
# Failure reasons that mean "the model gave no result for a request it received" (NO_RESULT in the library's
# terms: refused input, no information, deadline, audit, runtime) rather than "the server did not take it".
_NOT_TAKEN = {"not_ready", "busy", "too_large", "unknown_model"}


class ModelStats:
    """Counters and durations of one served model (thread-safe; one lock acquisition per request)."""

    def __init__(self, name: str, version: str = "") -> None:
        self.name, self.version = name, version
        self._lock = threading.Lock()
        self.success = [0, 0]  # count, ns
        self.fail = [0, 0]
        self.phases = {p: [0, 0] for p in PHASES}
        self.inference_count = 0  # samples
        self.execution_count = 0  # runs of the model
        self.last_inference_ms = 0
        self.failures: dict[str, int] = {}
        self.by_batch: dict[int, list[int]] = {}  # batch size -> [count, input ns, infer ns, output ns]
        self.histogram = [0] * (len(BUCKETS) + 1)
        self.histogram_sum = 0.0
        self.inflight = 0
        self.queued = 0

    def enter(self, queued: bool) -> None:
        """A request starts waiting (``queued``) or running."""
        with self._lock:
            if queued:
                self.queued += 1
            else:
                self.inflight += 1

    def leave(self, queued: bool) -> None:
        with self._lock:
            if queued:
                self.queued -= 1
            else:
                self.inflight -= 1

    def record(self, total_ns: int, phases: tuple[int, int, int, int] | None = None, batch: int = 0,
               reason: str | None = None, executions: int = 1) -> None:
        """One finished request: its duration, phase durations (queue, input, infer, output) when it reached the
        model, its batch size, the failure reason (an error code) when it failed, and the model runs it counts for
        (0 when it rode in another request's dynamic batch)."""
        seconds = total_ns / 1e9
        slot = bisect.bisect_left(BUCKETS, seconds)
        with self._lock:
            outcome = self.success if reason is None else self.fail
            outcome[0] += 1
            outcome[1] += total_ns
            self.histogram[slot] += 1
            self.histogram_sum += seconds
            if reason is not None:
                self.failures[reason] = self.failures.get(reason, 0) + 1
            if phases is not None:
                for name, ns in zip(PHASES, phases):
                    acc = self.phases[name]
                    acc[0] += 1
                    acc[1] += ns
                if reason is None and batch > 0:
                    self.inference_count += batch
                    self.execution_count += executions
                    self.last_inference_ms = int(time.time() * 1e3)
                    row = self.by_batch.setdefault(batch, [0, 0, 0, 0])
                    row[0] += 1
                    row[1] += phases[1]
                    row[2] += phases[2]
                    row[3] += phases[3]

    def triton(self) -> dict[str, Any]:
        """This model's entry of Triton's statistics extension (``model_stats[i]``)."""
        def pair(acc: list[int]) -> dict[str, int]:
            return {"count": acc[0], "ns": acc[1]}

        with self._lock:
            stats = {"success": pair(self.success), "fail": pair(self.fail),
                     **{p: pair(self.phases[p]) for p in PHASES},
                     "cache_hit": {"count": 0, "ns": 0}, "cache_miss": {"count": 0, "ns": 0}}
            batches = [{"batch_size": size, "compute_input": {"count": row[0], "ns": row[1]},
                        "compute_infer": {"count": row[0], "ns": row[2]},
                        "compute_output": {"count": row[0], "ns": row[3]}}
                       for size, row in sorted(self.by_batch.items())]
            return {"name": self.name, "version": self.version, "last_inference": self.last_inference_ms,
                    "inference_count": self.inference_count, "execution_count": self.execution_count,
                    "inference_stats": stats, "batch_stats": batches, "memory_usage": []}

    def snapshot(self) -> dict[str, Any]:
        """Everything at once, for a Prometheus scrape."""
        with self._lock:
            return {"success": list(self.success), "fail": list(self.fail),
                    "phases": {p: list(v) for p, v in self.phases.items()},
                    "inference_count": self.inference_count, "execution_count": self.execution_count,
                    "failures": dict(self.failures), "histogram": list(self.histogram),
                    "histogram_sum": self.histogram_sum, "inflight": self.inflight, "queued": self.queued}


class Collector:
    """A prometheus_client collector that reads every model's :class:`ModelStats` at scrape time.

    Args:
        models: returns ``(stats, ready)`` per served model, at each scrape.
    """

    def __init__(self, models: Callable[[], Iterable[tuple[ModelStats, bool]]]) -> None:
        self.models = models

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        keys = ["model", "version"]
        fam: dict[str, Any] = {
            "success": CounterMetricFamily("medinfer_inference_request_success",
                                           "Successful inference requests (Triton: nv_inference_request_success)",
                                           labels=keys),
            "failure": CounterMetricFamily("medinfer_inference_request_failure", "Failed inference requests by "
                                           "reason, the error code (Triton: nv_inference_request_failure)",
                                           labels=[*keys, "reason"]),
            "no_result": CounterMetricFamily("medinfer_no_result", "Requests the model answered with no result, by "
                                             "reason (input, out of domain, no information, timeout, audit, ...)",
                                             labels=[*keys, "reason"]),
            "count": CounterMetricFamily("medinfer_inference_count", "Samples inferred (Triton: nv_inference_count)",
                                         labels=keys),
            "exec": CounterMetricFamily("medinfer_inference_exec_count", "Model executions (Triton: "
                                        "nv_inference_exec_count)", labels=keys),
            "duration": CounterMetricFamily("medinfer_inference_request_duration_us", "Cumulative request duration "
                                            "in µs (Triton: nv_inference_request_duration_us)", labels=keys),
            "audit": CounterMetricFamily("medinfer_audit_write_failures", "Requests refused because their audit "
                                         "record could not be written", labels=keys),
            "pending": GaugeMetricFamily("medinfer_inference_pending_request_count", "Requests waiting for a "
                                         "worker (Triton: nv_inference_pending_request_count)", labels=keys),
            "inflight": GaugeMetricFamily("medinfer_inference_inflight_request_count", "Requests running",
                                          labels=keys),
            "ready": GaugeMetricFamily("medinfer_model_ready", "1 when the model passed its integrity check and "
                                       "self-test and serves requests", labels=keys),
            "histogram": HistogramMetricFamily("medinfer_inference_request_duration_seconds", "Request duration",
                                               labels=keys),
        }
        phases = {p: CounterMetricFamily(f"medinfer_inference_{p}_duration_us", f"Cumulative {p} duration in µs "
                                         f"(Triton: nv_inference_{p}_duration_us)", labels=keys) for p in PHASES}
        for stats, ready in self.models():
            snap = stats.snapshot()
            at = [stats.name, stats.version]
            fam["success"].add_metric(at, snap["success"][0])
            fam["duration"].add_metric(at, (snap["success"][1] + snap["fail"][1]) / 1e3)
            fam["count"].add_metric(at, snap["inference_count"])
            fam["exec"].add_metric(at, snap["execution_count"])
            for reason, n in sorted(snap["failures"].items()):
                fam["failure"].add_metric([*at, reason], n)
                if reason not in _NOT_TAKEN:
                    fam["no_result"].add_metric([*at, reason], n)
            fam["audit"].add_metric(at, snap["failures"].get("audit", 0))
            fam["pending"].add_metric(at, snap["queued"])
            fam["inflight"].add_metric(at, snap["inflight"])
            fam["ready"].add_metric(at, 1.0 if ready else 0.0)
            for p in PHASES:
                phases[p].add_metric(at, snap["phases"][p][1] / 1e3)
            cumulative, buckets = 0, []
            for bound, n in zip((*map(str, BUCKETS), "+Inf"), snap["histogram"]):
                cumulative += n
                buckets.append((bound, cumulative))
            fam["histogram"].add_metric(at, buckets, snap["histogram_sum"])
        yield from fam.values()
        yield from phases.values()


class Metrics:
    """The Prometheus registry of one server: the model collector plus the process collector (RSS, CPU, fds)."""

    def __init__(self, models: Callable[[], Iterable[tuple[ModelStats, bool]]]) -> None:
        from prometheus_client import CollectorRegistry, ProcessCollector
        from prometheus_client.exposition import CONTENT_TYPE_LATEST

        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(Collector(models))
        ProcessCollector(registry=self.registry)
        self.content_type = CONTENT_TYPE_LATEST

    def render(self) -> bytes:
        """The text exposition format of every metric."""
        from prometheus_client import generate_latest

        return bytes(generate_latest(self.registry))
