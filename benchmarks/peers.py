"""The edge peers as contenders of the same interleaved run: LiteRT (the two Keras models: fp32, dynamic-range
int8, full-integer int8) and onnxruntime's OpenVINO provider (every bundle, each of its graphs).

Each peer lives in its own venv under ``build/`` (``make peer-venvs``; onnxruntime-openvino must never share an
environment with plain onnxruntime) and runs :mod:`benchmarks.peer_worker` there; the suite asks it to time one
block at a time, in the same randomised rounds as everything else, with the run's explicit thread count (the
same as every other contender's: ``info["threads"]``) and the very inputs medinfer's session is fed. A peer that is
missing or fails is recorded with a reason code (and, when a tool failed, its captured error with the worker's exit
status) instead of disappearing.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from .contenders import Contender, Heldout, tile
from .schema import captured

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("peer_worker.py")
VENVS = {"litert": ROOT / "build" / "litert-venv", "openvino": ROOT / "build" / "openvino-venv"}
KNOWN = tuple(VENVS)
TIMEOUT_S = 600.0


class PeerError(RuntimeError):
    """A peer process that failed or answered with an error (``reason``: a code; ``exit_status``: the worker's,
    None while it still runs)."""

    def __init__(self, message: str, reason: str = "peer_failed", exit_status: int | None = None) -> None:
        super().__init__(message)
        self.reason, self.exit_status = reason, exit_status

    def record(self) -> dict[str, Any]:
        """What the results file keeps: the reason code and the worker's words with its exit status."""
        out: dict[str, Any] = {"reason": self.reason}
        if self.reason != "venv_missing":
            out["error"] = captured(str(self), exit_status=self.exit_status)
        return out


class Worker:
    """One peer venv's :mod:`benchmarks.peer_worker` process (JSON lines over its stdin/stdout)."""

    def __init__(self, kind: str) -> None:
        python = VENVS[kind] / "bin" / "python"
        if not python.exists():
            raise PeerError(f"no {VENVS[kind].relative_to(ROOT)} (make peer-venvs)", reason="venv_missing")
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "TF_CPP_MIN_LOG_LEVEL": "3"}
        self.proc = subprocess.Popen([str(python), str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, env=env)

    def ask(self, **request: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], TIMEOUT_S)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            raise PeerError(f"peer worker gave no answer to {request['op']}", reason="no_answer",
                            exit_status=self.proc.poll())
        answer = json.loads(line)
        if not answer.get("ok"):
            raise PeerError(answer.get("error", "failed"), exit_status=self.proc.poll())
        return answer

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(PeerError, OSError, ValueError):
                self.ask(op="quit")
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _save(path: Path, feeds: dict[str, np.ndarray]) -> str:
    np.savez(path, **{k: (np.asarray(v).astype(str) if np.asarray(v).dtype == object else np.asarray(v))
                      for k, v in feeds.items()})
    return str(path)


class Pool:
    """The peer workers of one bundle's run (started on first use, stopped on exit)."""

    def __init__(self, kinds: list[str], progress: Callable[[str], None] = print) -> None:
        unknown = sorted(set(kinds) - set(KNOWN))
        if unknown:
            raise ValueError(f"unknown peer {unknown[0]!r}; known: {', '.join(KNOWN)}")
        self.kinds, self.progress = kinds, progress
        self.workers: dict[str, Worker | PeerError] = {}
        self.tmp = tempfile.TemporaryDirectory(prefix="medinfer-peers-")
        self.n = 0

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        for w in self.workers.values():
            if isinstance(w, Worker):
                w.close()
        self.tmp.cleanup()

    def _worker(self, kind: str) -> Worker:
        if kind not in self.workers:
            try:
                self.workers[kind] = Worker(kind)
            except PeerError as exc:
                self.workers[kind] = exc
        w = self.workers[kind]
        if isinstance(w, PeerError):
            raise w
        return w

    def _path(self, stem: str) -> Path:
        self.n += 1
        return Path(self.tmp.name) / f"{self.n}-{stem}.npz"

    def _contender(self, kind: str, name: str, variant: str, model: str, threads: int,
                   feeds: dict[str, np.ndarray], fetch: list[str], score_key: str,
                   prepare: Callable[[Any], dict[str, np.ndarray]], heldout: Heldout | None) -> Contender:
        worker = self._worker(kind)
        batch = len(next(iter(feeds.values())))
        key = f"{name}|{variant}|{batch}"
        request = {"op": "load", "key": key, "runtime": kind, "model": model, "threads": threads, "fetch": fetch,
                   "inputs": _save(self._path("feeds"), feeds)}
        info = worker.ask(**request)["info"]

        def block(seconds: float) -> np.ndarray:
            return np.asarray(worker.ask(op="time", key=key, seconds=seconds)["ns"], dtype=np.int64)

        def scores(X: Any) -> np.ndarray:
            out = self._path("out")
            worker.ask(op="predict", key=key, inputs=_save(self._path("in"), prepare(X)), out=str(out), batch=batch)
            with np.load(out) as npz:
                raw = np.asarray(npz[score_key])
            assert heldout is not None and heldout.spec is not None
            return np.asarray(heldout.spec.scores({heldout.spec.score_output: raw}))

        what = {"litert": "Interpreter", "openvino": "InferenceSession, OpenVINO execution provider (CPU)"}[kind]
        return Contender(name, "peer", block=block, variant=variant, settings=info, threads=threads, inputs=feeds,
                         engine=request, label=f"{info.get('runtime', kind)} {info.get('version', '?')} {what}",
                         scores=scores if heldout is not None and heldout.spec is not None else None)

    def contenders(self, bundle: Path, batch: int, heldout: Heldout | None,
                   info: dict[str, Any]) -> tuple[list[Contender], dict[str, dict[str, Any]]]:
        """The peers for one bundle at one batch size (``info``: the in-process run's facts: its fetch list and
        thread count), and why any asked for is not there ({peer: {"reason": code, "error"?: captured}})."""
        import medinfer

        out: list[Contender] = []
        why: dict[str, dict[str, Any]] = {}
        if not self.kinds:
            return out, why
        manifest = medinfer.load_manifest(bundle)
        threads = int(info["threads"])
        if "litert" in self.kinds:
            if heldout is None or heldout.spec is None or heldout.spec.family != "keras":
                if heldout is None:
                    why["LiteRT"] = {"reason": "no_artifact"}
            else:
                out += self._litert(manifest.name, heldout, batch, threads, why)
        if "openvino" in self.kinds:
            model = medinfer.load(bundle, self_test=False)
            x = tile(heldout.X if heldout is not None else next(iter(model.golden()[0].values())), batch)
            feeds = model.prepare(x)[0]
            for key, variant in manifest.variants.items():
                if variant.inputs is not None:
                    continue  # a whole-slice graph takes other inputs (benchmarks/slice.py)
                label = f"OpenVINO EP [{key}]"
                try:
                    out.append(self._contender("openvino", label, variant.precision, str(bundle / variant.file),
                                               threads, feeds, info["fetch"], manifest.decision.score_output,
                                               lambda X, m=model: m.prepare(np.asarray(X))[0], heldout))
                except PeerError as exc:
                    why[label] = exc.record()
        return out, why

    def _litert(self, name: str, heldout: Heldout, batch: int, threads: int,
                why: dict[str, dict[str, Any]]) -> list[Contender]:
        from . import litert

        X = np.asarray(heldout.X, dtype=np.float32)
        files = litert.convert(heldout.native_model, heldout.calibration, X.shape[1:], ROOT / "build" / "peers" / name)
        feeds = {"x": tile(X, batch)}
        out = []
        for variant, path in files.items():
            label = f"LiteRT [{variant}]"
            if isinstance(path, dict):
                why[label] = {"reason": "conversion_failed", "error": captured(
                    path["error"], exception=path["error"].split(":", 1)[0].strip() or "ConverterError")}
                continue
            try:
                out.append(self._contender("litert", label, variant, path, threads, feeds, [], "output",
                                           lambda X: {"x": np.asarray(X, dtype=np.float32)}, heldout))
            except PeerError as exc:
                why[label] = exc.record()
        return out

