"""Side-by-side serve benchmark: the same bundle, the same lean keep-alive client, interleaved rounds.

    python -m benchmarks serve --bundles bundles --clients 1 4 16 --seconds 3 --rounds 3

Servers (each a subprocess on a loopback port; one bundle at a time):

- ``medinfer-baseline``: ``medinfer serve`` as it was before issue 17 (uvicorn h11 + starlette, a thread-pool hand-off
  per request), from ``git archive <--baseline-ref>`` into ``build/serve-baseline`` (starlette installed there);
- ``medinfer``: today's ``medinfer serve`` (httptools + uvloop, small models inline);
- both with ``audit`` on (the README's configuration: ``--audit FILE --deadline-ms 200``) and off, both started
  through :mod:`benchmarks.serve_threads` (``medinfer.load`` with the run's intra-op threads);
- ``mlserver``: Seldon's MLServer 1.7.1 (``build/mlserver-venv``) with a ~30-line runtime hosting a BARE onnxruntime
  session (:mod:`benchmarks.mlserver_runtime`), ``parallel_workers`` 0 (inference on its event loop, its fastest
  setting for small models);
- ``tritonserver``: PyTriton's tritonserver (``build/triton-venv``, ``make test-triton`` builds it) with Triton's
  Python backend hosting a BARE onnxruntime session (:mod:`benchmarks.triton_bare`), not medinfer.

Every server runs the bundle's default graph with the session options medinfer's rule gives its batch-1 session, at
the same explicit intra-op thread count (``--threads``, default the usable cores), recorded per server and per row
with a ``label`` saying what really runs.

Loads: 1, 4 and 16 concurrent clients, JSON and binary tensors (Triton's extension; MLServer answers it with an
error, recorded as such). Every request's latency is kept in the percentiles; nothing is trimmed. The results file
(``benchmarks/results/serve.json``) holds the raw measurements and the command that made them; REPORT.md renders
its tables from them (:func:`markdown`).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import select
import shutil
import struct
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from medinfer.fleet.http import free_port

from . import provenance
from .contenders import default_threads
from .grpc_load import infer_request, run_grpc_load
from .loadgen import http_request, run_load
from .schema import captured, error_text

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
SERVERS = ("medinfer-baseline", "medinfer", "medinfer-workers", "mlserver", "tritonserver")
BASELINE_REF = "5e459c4"  # main before issue 17
README_AUDIT = ("--deadline-ms", "200")  # with --audit FILE: the README's audited configuration
_DATATYPES = {"float32": "FP32", "float64": "FP64", "int64": "INT64", "int32": "INT32", "string": "BYTES"}
HERE = Path(__file__).resolve().parent
# Issue 29: medinfer runs with a bearer token (auth on, as a hospital deploys it) and gRPC on a second port; every
# server's gRPC port by its HTTP port (servers without gRPC are absent: their gRPC cells are not measured).
GRPC_PORTS: dict[int, int] = {}
AUTH: dict[str, str] = {}  # {"file": token file, "token": the token} once run() made them


class DidNotStart(RuntimeError):
    """A server that exited, refused its bundle or never became ready (``exit_status``: None while it runs)."""

    def __init__(self, message: str, exit_status: int | None = None) -> None:
        super().__init__(message)
        self.exit_status = exit_status


def _wait_ready(port: int, path: str, proc: subprocess.Popen, timeout: float = 180,
                log: Path | None = None) -> None:
    """Until ``path`` answers 200. A medinfer server whose log says a bundle is unavailable (it refused to load it,
    e.g. an older medinfer refusing a newer manifest) will never be ready: that is raised at once, with its words."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise DidNotStart(f"exited with {proc.returncode}", proc.returncode)
        refused = _unavailable(log)
        if refused:
            raise DidNotStart(f"refused its bundle: {refused}")
        with contextlib.suppress(Exception), urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            if r.status == 200:
                return
        time.sleep(0.1)
    raise DidNotStart(f"not ready within {timeout} s")


def _unavailable(log: Path | None) -> str:
    """The first 'unavailable:' line of a medinfer server's log ('' for none)."""
    if log is None or not log.is_file():
        return ""
    for line in log.read_text(errors="replace").splitlines():
        if " unavailable: " in line:
            return line.split(" unavailable: ", 1)[1][:300]
    return ""


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- request bodies -----------------------------------------------------------------------------------------
def requests_for(bundle: Path) -> dict[str, tuple[bytes, dict[str, str]]]:
    """The JSON and binary request bodies (and extra headers) for one sample of the bundle's golden input."""
    import medinfer

    model = medinfer.load(bundle)
    inputs, _ = model.golden()
    json_inputs, bin_inputs, blobs = [], [], []
    for spec in model.manifest.inputs:
        arr = np.asarray(inputs[spec.name])
        sample = arr[:1] if spec.shape and isinstance(spec.shape[0], str) else arr
        datatype = _DATATYPES[spec.dtype]
        head = {"name": spec.name, "shape": list(sample.shape), "datatype": datatype}
        if datatype == "BYTES":
            items = [str(v) for v in sample.reshape(-1)]
            json_inputs.append({**head, "data": items})
            blob = b"".join(struct.pack("<I", len(b)) + b for b in (s.encode() for s in items))
        else:
            json_inputs.append({**head, "data": sample.reshape(-1).tolist()})
            blob = np.ascontiguousarray(sample).astype(sample.dtype.newbyteorder("<")).tobytes()
        bin_inputs.append({**head, "parameters": {"binary_data_size": len(blob)}})
        blobs.append(blob)
    plain = json.dumps({"inputs": json_inputs}).encode()
    head = json.dumps({"inputs": bin_inputs, "parameters": {"binary_data_output": True}}).encode()
    auth = {"Authorization": f"Bearer {AUTH['token']}"} if AUTH else {}  # other servers ignore the header
    grpc_inputs = [(spec.name, np.asarray(inputs[spec.name])[:1] if spec.shape and isinstance(spec.shape[0], str)
                    else np.asarray(inputs[spec.name]), _DATATYPES[spec.dtype]) for spec in model.manifest.inputs]
    return {"json": (plain, auth),
            "binary": (head + b"".join(blobs), {"Inference-Header-Content-Length": str(len(head)),
                                                "Content-Type": "application/octet-stream", **auth}),
            "grpc": (infer_request(model.name, grpc_inputs), {k.lower(): v for k, v in auth.items()})}


# -- servers --------------------------------------------------------------------------------------------------
def baseline_tree(ref: str) -> Path:
    """``build/serve-baseline/<ref>``: the runtime at ``ref`` importable as ``medinfer``, with starlette beside it."""
    folder = BUILD / "serve-baseline" / ref
    if (folder / ".ready").exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "runtime"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    (folder / "runtime").rename(folder / "medinfer")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(folder / "site"),
                    "starlette>=0.37", "anyio>=4", "sniffio"], check=True)
    (folder / ".ready").touch()
    return folder


@contextlib.contextmanager
def medinfer_server(bundle: Path, work: Path, audit: bool, baseline: Path | None, threads: int,
                    workers: int = 1) -> Iterator[int]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if baseline is not None:
        env["PYTHONPATH"] = f"{baseline}{os.pathsep}{baseline / 'site'}"
    if workers > 1:  # worker processes are new interpreters: the thread count reaches them through sitecustomize
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE / "serve_site"), env.get("PYTHONPATH")]))
        env["MEDINFER_BENCH_THREADS"] = str(threads)
    from .serve_candidates import medinfer_command

    extra: list[str] = []
    if baseline is None:  # today's medinfer: auth on and gRPC besides HTTP (the baseline has neither)
        extra += ["--grpc-port", "0", *(["--token-file", AUTH["file"]] if AUTH else [])]
        extra += ["--workers", str(workers)] if workers > 1 else []
        # e.g. MEDINFER_BENCH_SERVE_ARGS="--dynamic-batching off" to compare without dynamic batching
        extra += os.environ.get("MEDINFER_BENCH_SERVE_ARGS", "").split()
    cmd = medinfer_command(bundle, work, audit, threads, extra)
    log_path = work / f"medinfer-{time.monotonic_ns()}.log"
    log = open(log_path, "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, env=env)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 120)
        line = proc.stdout.readline().decode() if ready and proc.stdout else ""
        if "listening on http://" not in line:
            raise DidNotStart(f"no listening line: {line!r}", proc.poll())
        port = int(line.split("http://", 1)[1].split()[0].rsplit(":", 1)[1])
        if "gRPC on " in line:
            GRPC_PORTS[port] = int(line.split("gRPC on ", 1)[1].split(")")[0].rsplit(":", 1)[1])
        _wait_ready(port, "/v2/health/ready", proc, log=log_path)
        yield port
    finally:
        _stop(proc)
        log.close()


def mlserver_settings(bundle: Path, threads: int) -> dict[str, Any]:
    """MLServer's model-settings.json: the bare runtime, the bundle, medinfer's session options at ``threads``."""
    import medinfer

    from .triton_bare import bare_options

    manifest = medinfer.load_manifest(bundle)
    return {"name": manifest.name, "implementation": "mlserver_runtime.OnnxBundle",
            "parameters": {"uri": str(bundle.resolve()),
                           "extra": {"session_options": bare_options(manifest, threads)}}}


@contextlib.contextmanager
def mlserver_server(bundle: Path, work: Path, venv: Path, threads: int) -> Iterator[int]:
    settings = mlserver_settings(bundle, threads)
    name = settings["name"]
    folder = work / "mlserver"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / name).mkdir(parents=True)
    for module in ("mlserver_runtime.py", "bare_session.py"):
        shutil.copy(HERE / module, folder / name / module)
    port, grpc_port = free_port(), free_port()
    GRPC_PORTS[port] = grpc_port
    (folder / "settings.json").write_text(json.dumps({
        "http_port": port, "grpc_port": grpc_port, "metrics_port": free_port(), "parallel_workers": 0,
        "host": "127.0.0.1", "debug": False}))
    (folder / name / "model-settings.json").write_text(json.dumps(settings))
    env = {**os.environ, "PYTHONPATH": str(folder / name)}
    log = open(work / "mlserver.log", "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([str(venv / "bin" / "mlserver"), "start", str(folder)], stdout=log, stderr=log, env=env,
                            cwd=folder)
    try:
        _wait_ready(port, f"/v2/models/{name}/ready", proc)
        yield port
    finally:
        _stop(proc)
        log.close()


def triton_env(venv: Path) -> tuple[Path, Path, dict[str, str]]:
    """tritonserver binary, backends folder and environment from PyTriton's wheel in ``venv``."""
    code = ("import json, sys, sysconfig, pytriton; print(json.dumps({'root': pytriton.__path__[0], "
            "'libdir': sysconfig.get_config_var('LIBDIR'), 'version': '%d.%d' % sys.version_info[:2]}))")
    probe = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, check=True)
    info = json.loads(probe.stdout)
    server = Path(info["root"]) / "tritonserver"
    stub = server / "backends" / "python" / "triton_python_backend_stub"
    if not stub.exists():
        shutil.copy(server / "python_backend_stubs" / info["version"] / "triton_python_backend_stub", stub)
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ.get('PATH', '')}",
           "LD_LIBRARY_PATH": ":".join(filter(None, [info["libdir"], os.environ.get("LD_LIBRARY_PATH")]))}
    return server / "bin" / "tritonserver", server / "backends", env


@contextlib.contextmanager
def triton_server(bundle: Path, work: Path, venv: Path, threads: int) -> Iterator[int]:
    from .triton_bare import repository

    repo = work / "triton-repo"
    shutil.rmtree(repo, ignore_errors=True)
    repository(bundle, repo, threads)
    binary, backends, env = triton_env(venv)
    port, grpc_port = free_port(), free_port()
    GRPC_PORTS[port] = grpc_port
    cmd = [str(binary), f"--model-repository={repo}", f"--backend-directory={backends}", "--http-address=127.0.0.1",
           f"--http-port={port}", "--grpc-address=127.0.0.1", f"--grpc-port={grpc_port}", "--allow-metrics=false",
           "--exit-timeout-secs=5"]
    log = open(work / "tritonserver.log", "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_ready(port, "/v2/health/ready", proc)
        yield port
    finally:
        _stop(proc)
        log.close()


def _executions(port: int, name: str) -> tuple[int, int, int, int] | None:
    """(inference_count, execution_count, success count, success ns) from Triton's statistics extension, when the
    server has it: success ns is the server's own time for its successful requests, from arrival to answer."""
    try:
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v2/models/{name}/stats",
                                     headers={"Authorization": f"Bearer {AUTH['token']}"} if AUTH else {})
        with urllib.request.urlopen(req, timeout=5) as r:
            stats = json.loads(r.read())["model_stats"][0]
        success = stats.get("inference_stats", {}).get("success", {})
        return (int(stats["inference_count"]), int(stats["execution_count"]), int(success.get("count", 0)),
                int(success.get("ns", 0)))
    except Exception:  # noqa: BLE001 - servers without the extension (MLServer, medinfer before issue 17)
        return None


def run(bundles: list[Path], servers: list[str], clients: list[int], encodings: list[str], seconds: float,
        rounds: int, baseline_ref: str = BASELINE_REF, progress: Callable[[str], None] = print,
        threads: int | None = None, started: dict[str, Any] | None = None) -> dict[str, Any]:
    """Measure every candidate on every bundle; returns the raw record (see module docstring). ``started``: the
    run's provenance (captured here, before anything runs, when not given); ``threads``: every server's."""
    from medinfer.tools.fingerprint import environment

    from .serve_candidates import candidates, server_version

    started = started or provenance.capture()
    env = environment()
    threads = threads or default_threads()
    work = BUILD / "serve-bench"
    work.mkdir(parents=True, exist_ok=True)
    from medinfer.fleet.tokens import add_token

    tokens = work / f"tokens-{time.monotonic_ns()}.json"
    AUTH.update(file=str(tokens), token=add_token(tokens, "bench", ["infer", "metadata", "metrics"]))
    factories, info = candidates(servers, baseline_ref, work, threads, ROOT)
    runs: list[dict[str, Any]] = []
    for bundle in bundles:
        import medinfer

        name = medinfer.load_manifest(bundle).name
        bodies = requests_for(bundle)
        with contextlib.ExitStack() as stack:
            ports = {}
            for label, factory in factories.items():
                try:
                    ports[label] = stack.enter_context(factory(bundle))
                except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
                    progress(f"{name}: {label} did not start: {exc}")
                    runs.append({"model": name, "server": label, "threads": threads,
                                 "error": captured(f"did not start: {exc}", exit_status=getattr(exc, "exit_status",
                                                                                             None))})
            if "tritonserver" in ports and "tritonserver (" in info["tritonserver"]["label"]:
                version = server_version(ports["tritonserver"])  # the server's own word (GET /v2), into its label
                info["tritonserver"]["label"] = info["tritonserver"]["label"].replace(
                    "tritonserver (", f"tritonserver {version} (" if version else "tritonserver (")
            for rnd in range(rounds):
                order = list(ports)
                random.Random(rnd).shuffle(order)
                for label in order:
                    for encoding in encodings:
                        body, headers = bodies[encoding]
                        grpc_port = GRPC_PORTS.get(ports[label])
                        if encoding == "grpc" and grpc_port is None:
                            continue  # this server speaks no gRPC
                        request = http_request("127.0.0.1", ports[label], f"/v2/models/{name}/infer", body, headers)
                        for n in clients:
                            # several workers answer statistics each for itself: no count across the port
                            before = None if "workers" in label else _executions(ports[label], name)
                            load = run_grpc_load("127.0.0.1", grpc_port, body, n, seconds, headers) \
                                if encoding == "grpc" and grpc_port is not None else \
                                run_load("127.0.0.1", ports[label], request, n, seconds)
                            after = _executions(ports[label], name)
                            row = {"model": name, "server": label, "encoding": encoding, "round": rnd,
                                   "threads": threads, **load.summary()}
                            if before is not None and after is not None and after[1] > before[1]:
                                row["mean_batch"] = (after[0] - before[0]) / (after[1] - before[1])
                            if before is not None and after is not None and after[2] > before[2]:
                                row["server_us"] = (after[3] - before[3]) / (after[2] - before[2]) / 1e3
                            runs.append(row)
                            progress(f"{name} {label:24s} {encoding:6s} {n:3d} clients: {row['req_per_s']:8.0f} req/s "
                                     f"p50 {row['p50_us'] or 0:8.0f} µs p99 {row['p99_us'] or 0:8.0f} µs "
                                     f"errors {row['errors']}")
    return {"kind": "serve", "time": started["started"], "provenance": started,
            "bundles": provenance.bundles_of(bundles), "env": env,
            "settings": {"clients": clients, "encodings": encodings, "seconds": seconds, "rounds": rounds,
                         "threads": threads, "audit_args": ["--audit", "FILE", *README_AUDIT],
                         "baseline_ref": baseline_ref},
            "servers": info, "runs": runs}


def medians(record: dict[str, Any]) -> dict[tuple[str, str, str, int], dict[str, float]]:
    """(model, server, encoding, clients) -> median over rounds of req/s, p50, p99, and errors summed."""
    groups: dict[tuple[str, str, str, int], list[dict[str, Any]]] = {}
    for r in record["runs"]:
        if "error" not in r:
            groups.setdefault((r["model"], r["server"], r["encoding"], r["clients"]), []).append(r)
    out = {}
    for key, rows in groups.items():
        ok = [r for r in rows if r["requests"]]
        out[key] = {"req_per_s": float(np.median([r["req_per_s"] for r in rows])),
                    "p50_us": float(np.median([r["p50_us"] for r in ok])) if ok else float("nan"),
                    "p99_us": float(np.median([r["p99_us"] for r in ok])) if ok else float("nan"),
                    "errors": float(sum(r["errors"] for r in rows)),
                    "requests": float(sum(r["requests"] for r in rows)),
                    "mean_batch": float(np.median([r["mean_batch"] for r in rows if "mean_batch" in r]))
                    if any("mean_batch" in r for r in rows) and "workers" not in key[1] else float("nan"),
                    "server_us": float(np.median([r["server_us"] for r in rows if "server_us" in r]))
                    if any("server_us" in r for r in rows) else float("nan")}
    return out


def _audited_medinfer(label: str) -> bool:
    """Today's medinfer with its audit trail on (one process or several workers), not the baseline."""
    return label.startswith("medinfer ") and label.endswith("+audit")


def _ratio(rate: dict[str, float | None], a: str, b: str) -> str:
    x, y = rate.get(a), rate.get(b)
    return f"{x / y:.2f}" if x and y else "–"


def gap_lines(table: dict[tuple[str, str, str, int], dict[str, float]],
              gaps: list[tuple[str, str, int, str, str]]) -> list[str]:
    """Each cell where medinfer stays behind, with where the time goes: each server's own time per request (Triton's
    statistics extension: success ns ÷ count, from the request's arrival at the model to its answer, queueing there
    included) beside the wall time per request (1 ÷ req/s) and the requests per model execution."""
    if not gaps:
        return []

    def side(key: tuple[str, str, str, int]) -> str:
        m = table[key]
        own = f"{m['server_us']:.0f}" if m["server_us"] == m["server_us"] else "–"
        batch = f"{m['mean_batch']:.1f}" if m["mean_batch"] == m["mean_batch"] else "–"
        return f"{own} | {1e6 / m['req_per_s']:.0f} | {batch}"

    lines = ["", "Where each gap's time goes: a server's own time per request (Triton's statistics extension, from "
             "the request's arrival at the model to its answer, queueing there included; – where the server has no "
             "statistics or several workers answer) beside the wall time per request (1 ÷ req/s) and the requests "
             "per model execution. What a server's own time leaves of the wall time is its protocol stack (uvicorn "
             "or grpcio, the loopback) and the client, all on the same cores.", "",
             "| model | encoding | clients | medinfer row | its own µs | its wall µs | its requests/execution | "
             "contender | its own µs | its wall µs | its requests/execution |", "|---" * 11 + "|"]
    for model, encoding, clients, best, peer in gaps:
        lines.append(f"| {model} | {encoding} | {clients} | {best} | {side((model, best, encoding, clients))} | "
                     f"{peer} | {side((model, peer, encoding, clients))} |")
    return lines


def markdown(record: dict[str, Any]) -> list[str]:
    """REPORT.md's section, rendered from the raw record."""
    from .serve_candidates import server_lines

    s = record["settings"]
    lines = [f"`{record.get('command', 'python -m benchmarks serve')}` at {provenance.stated(record)}: medians over "
             f"{s['rounds']} interleaved rounds of {s['seconds']:g} s per cell; one lean keep-alive client process; "
             f"audit = `{' '.join(s['audit_args'])}`; baseline = `medinfer serve` at {s['baseline_ref']}.", ""]
    lines += server_lines(record)
    table = medians(record)
    servers = sorted({k[1] for k in table}, key=lambda x: (SERVERS.index(x.split(" ")[0]), x))
    lines += ["| model | encoding | clients | " + " | ".join(f"{x} req/s (p50/p99 µs)" for x in servers) +
              " | medinfer +audit ÷ baseline +audit | medinfer +audit (best) ÷ mlserver | medinfer +audit (best) ÷ "
              "tritonserver |",
              "|---|---|---|" + "---|" * (len(servers) + 3)]
    ahead: list[str] = []
    behind: list[str] = []
    gaps: list[tuple[str, str, int, str, str]] = []
    for model, encoding, clients in sorted({(k[0], k[2], k[3]) for k in table}):
        cells, rate = [], {}
        for x in servers:
            m = table.get((model, x, encoding, clients))
            if m is None:
                cells.append("–")
                continue
            if not m["requests"]:
                cells.append(f"errors: {m['errors']:.0f}")
                continue
            rate[x] = m["req_per_s"]
            flags = f" [{m['errors']:.0f} errors]" if m["errors"] else ""
            cells.append(f"{m['req_per_s']:.0f} ({m['p50_us']:.0f}/{m['p99_us']:.0f}){flags}")
        audited = {k: v for k, v in rate.items() if _audited_medinfer(k)}
        if audited:
            best = max(audited, key=lambda k: audited[k])
            rate["best"] = audited[best]
        ratios = [_ratio(rate, "medinfer +audit", "medinfer-baseline +audit"), _ratio(rate, "best", "mlserver"),
                  _ratio(rate, "best", "tritonserver")]
        for peer in ("mlserver", "tritonserver"):
            if rate.get("best") and rate.get(peer):
                (behind if rate["best"] < rate[peer] else ahead).append(f"{model} {encoding} {clients} vs {peer}")
                if rate["best"] < rate[peer]:
                    gaps.append((model, encoding, clients, best, peer))
        lines.append(f"| {model} | {encoding} | {clients} | " + " | ".join(cells + ratios) + " |")
    if ahead or behind:
        lines += ["", f"Goal (issue 29: medinfer with auth and audit on, the better of its rows, at least every "
                  f"contender in every cell): met in {len(ahead)} of {len(ahead) + len(behind)} cells"
                  + (f"; behind in: {', '.join(behind)}." if behind else ".")]
    batches = sorted((k, m["mean_batch"]) for k, m in table.items() if m["mean_batch"] == m["mean_batch"])
    if batches:
        lines += ["", "Requests per model execution (Triton's statistics extension, Δinference_count ÷ "
                  "Δexecution_count): " + "; ".join(f"{k[1]} {k[2]} {k[3]} clients {b:.2f}" for k, b in batches
                                                     if k[3] == max(record["settings"]["clients"])) + "."]
    lines += gap_lines(table, gaps)
    absent = {(r["server"], error_text(r["error"])): r["model"] for r in record["runs"] if r.get("error")}
    for (server, error), _ in sorted(absent.items()):
        models = sorted({r["model"] for r in record["runs"] if r.get("server") == server
                         and error_text(r.get("error")) == error})
        lines.append(f"- {server} ({', '.join(models)}): {error[:300]}")
    samples = {(r["server"], r["encoding"]): error_text(r["error_sample"]) for r in record["runs"]
               if r.get("error_sample")}
    for (server, encoding), sample in sorted(samples.items()):
        lines.append(f"- {server}, {encoding}: {sample[:200]}")
    return lines

