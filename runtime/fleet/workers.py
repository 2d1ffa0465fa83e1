"""``medinfer serve --workers N``: N worker processes behind one port, sharing one copy of each graph's weights.

    medinfer serve bundles/*/ --workers 2 --port 8000 --grpc-port 8001

The parent process binds the HTTP port (and ``--metrics-port``), prepares each bundle's shared weights
(:mod:`.shared_weights`), then starts N workers (``python -m medinfer.fleet.workers``) that inherit the listening
sockets: the kernel hands each new connection to one of them. For gRPC every worker binds ``--grpc-port`` itself
with SO_REUSEPORT (the parent first checks that no other program holds it, and picks a free port for 0). Each worker
is a whole ``medinfer serve``: it verifies and self-tests every bundle itself, appends to the same audit trail (the
chain is process-safe), batches its own requests, and answers health, metadata, statistics and ``/metrics`` for
itself (so a scrape through the shared port sees one worker's counters: scrape with ``--workers 1`` or per worker
where exact totals matter). A worker loads its bundles before it takes a connection, so a worker that starts or
restarts never answers "loading" for the others; until the first is ready, connections wait in the port's backlog.
Repository load and unload are refused (they would reach one worker).

Supervision: SIGTERM/SIGINT are passed on to the workers, which finish their running requests (bounded by
``--shutdown-timeout``); a worker still running after that is killed. A worker that exits at start-up (within
:data:`STARTUP_S`) stops the server with its status (its own log says why); one that dies later is restarted, at most
:data:`MAX_RESTARTS` times per minute, after which the server stops. Workers die with the parent (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import MedinferError, UsageError

log = logging.getLogger(__name__)

ENV = "MEDINFER_SERVE_WORKER"
STARTUP_S = 10.0  # a worker that exits sooner failed to start: the server stops instead of restarting it
MAX_RESTARTS = 5  # per minute, after which the server stops


class WorkerFailed(MedinferError, RuntimeError):
    """A worker process of ``medinfer serve --workers`` failed to start, or kept dying (exit 10, like a runtime
    failure)."""

    code = "runtime"


def _grpc_port(host: str, port: int) -> int:
    """The gRPC port the workers bind with SO_REUSEPORT: ``port``, checked free of other programs, or a free one for 0.

    Raises:
        UsageError: another program listens on it.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise UsageError(f"cannot listen on {host}:{port} for gRPC: {exc.strerror or exc}") from None
        return int(probe.getsockname()[1])


def _spec(config: Any, fds: list[int], shared: dict[str, Any], index: int) -> str:
    doc = {"config": dataclasses.asdict(config), "fds": fds, "shared": shared, "index": index}
    return json.dumps(doc)


def _start(spec: str, fds: list[int]) -> subprocess.Popen[bytes]:
    env = dict(os.environ, **{ENV: spec})
    return subprocess.Popen([sys.executable, "-m", "medinfer.fleet.workers"], pass_fds=fds, env=env)


def serve_workers(config: Any, on_listening: Callable[..., None] | None = None) -> int:
    """Run ``config.workers`` worker processes until SIGTERM/SIGINT; returns the signal number that stopped them.

    Raises:
        UsageError: a port cannot be bound.
        AuditError: the audit trail cannot be written (before any worker starts).
        WorkerFailed: a worker exited at start-up, or kept dying.
    """
    from .http import bind
    from .repository import expand_bundles
    from .shared_weights import prepare, remove, shared_folder

    _check_audit(config)
    sockets = [bind(config.host, config.port)]
    if config.metrics_port is not None:
        sockets.append(bind(config.host, config.metrics_port))
    grpc_port = _grpc_port(config.host, config.grpc_port) if config.grpc_port is not None else None
    worker_config = dataclasses.replace(config, grpc_port=grpc_port)
    fds = [s.fileno() for s in sockets]
    folder = shared_folder() if config.share_weights else None
    procs: dict[int, tuple[subprocess.Popen[bytes], float]] = {}
    stopped: list[int] = []
    main = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, lambda sig, _f: stopped.append(sig)) for s in (signal.SIGINT, signal.SIGTERM)} \
        if main else {}
    try:
        shared: dict[str, Any] = {}
        if folder is not None:
            for path in expand_bundles(config.bundles)[0]:
                try:
                    graph = prepare(path, config.variant, folder)
                except (MedinferError, OSError, ValueError) as exc:  # the worker's own load reports the bundle
                    log.warning("%s: no shared weights (%s: %s)", path, type(exc).__name__, exc)
                    continue
                if graph is not None:
                    shared[str(path)] = graph.to_json()
                    log.info("%s [%s]: %d weight tensor(s), %.1f MiB, in one copy for %d workers", graph.name,
                             graph.variant, graph.tensors, graph.weights_bytes / 2**20, config.workers)
        for i in range(config.workers):
            procs[i] = (_start(_spec(worker_config, fds, shared, i), fds), time.monotonic())
        host, port = sockets[0].getsockname()[:2]
        log.info("medinfer serve: %d worker processes (pids %s) on port %d", config.workers,
                 ", ".join(str(p.pid) for p, _ in procs.values()), port)
        if on_listening is not None:
            on_listening(host, port, grpc_port) if grpc_port is not None else on_listening(host, port)
        _supervise(procs, stopped, lambda i: _start(_spec(worker_config, fds, shared, i), fds))
    finally:
        _stop_all(procs, config.shutdown_timeout)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sock in sockets:
            sock.close()
        if folder is not None:
            remove(folder)
    log.info("medinfer serve stopped (%s)", signal.Signals(stopped[0]).name if stopped else "no signal")
    return stopped[0] if stopped else 0


def _check_audit(config: Any) -> None:
    """An unwritable audit trail stops the start before any worker runs, as it does without ``--workers``: the
    parent writes the supervisor's start record (the workers then chain their own onto it).

    Raises:
        AuditError: the trail cannot be written (exit 12).
    """
    if not config.audit:
        return
    from .._version import __version__
    from ..audit import AuditLog

    audit = AuditLog(config.audit, key=config.audit_key, head=config.audit_head, rotate_mb=config.audit_rotate_mb,
                     retain_days=config.audit_retain_days)
    try:
        audit.event("serve_workers_started", bundles=[str(b) for b in config.bundles], pid=os.getpid(),
                    workers=config.workers, medinfer=__version__)
    finally:
        audit.close()


def _supervise(procs: dict[int, tuple[subprocess.Popen[bytes], float]], stopped: list[int],
               restart: Callable[[int], subprocess.Popen[bytes]]) -> None:
    """Wait until a signal arrives; restart a worker that died after start-up (bounded).

    Raises:
        WorkerFailed: a worker exited at start-up, or more than MAX_RESTARTS restarts in a minute.
    """
    restarts: list[float] = []
    while not stopped:
        time.sleep(0.1)
        for i, (proc, began) in list(procs.items()):
            status = proc.poll()
            if status is None or stopped:
                continue
            now = time.monotonic()
            if now - began < STARTUP_S:
                raise WorkerFailed(f"worker {i} (pid {proc.pid}) exited with status {status} while starting (its log "
                                   "above says why): the server stops")
            restarts = [t for t in restarts if now - t < 60.0] + [now]
            if len(restarts) > MAX_RESTARTS:
                raise WorkerFailed(f"worker {i} (pid {proc.pid}) exited with status {status}; {MAX_RESTARTS} "
                                   "restarts within a minute already: the server stops")
            log.error("worker %d (pid %d) exited with status %s: starting it again", i, proc.pid, status)
            procs[i] = (restart(i), now)


def _stop_all(procs: dict[int, tuple[subprocess.Popen[bytes], float]], timeout: float) -> None:
    """SIGTERM to every worker still running; SIGKILL to those still running ``timeout`` + 5 s later."""
    for proc, _ in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout + 5.0
    for proc, _ in procs.values():
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.error("worker pid %d did not stop within %.0f s: killed", proc.pid, timeout + 5.0)
            proc.kill()
            proc.wait()


def _die_with_parent() -> None:
    """Linux: this worker gets SIGTERM when the parent dies (no orphan keeps serving the port)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _config(doc: dict[str, Any]) -> Any:
    from .serve import ServeConfig

    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in doc.items()}
    return ServeConfig(**fields)


def main() -> int:
    """A worker process: serve with the inherited sockets and shared graphs until SIGTERM/SIGINT."""
    from .http import configure_logging
    from .serve import Inherited, serve
    from .shared_weights import SharedGraph

    spec = json.loads(os.environ.pop(ENV))
    config = _config(spec["config"])
    configure_logging(config.log_format, config.access_log)
    _die_with_parent()
    if os.getppid() == 1:  # the parent died before the line above
        return 1
    sockets = [socket.socket(fileno=fd) for fd in spec["fds"]]
    shared = {k: SharedGraph.from_json(v) for k, v in spec["shared"].items()}
    try:
        serve(config, None, inherited=Inherited(sockets, shared))
    except MedinferError as exc:
        log.error("worker %s: %s: %s", spec["index"], type(exc).__name__, exc)
        return 2
    return 0


if __name__ == "__main__":
    if ENV not in os.environ:
        print(f"{Path(__file__).name} is started by 'medinfer serve --workers N', not by hand", file=sys.stderr)
        sys.exit(2)
    sys.exit(main())
