"""Run every bundle on each requested execution provider, compare with the CPU provider, and benchmark.

Needs only numpy + an onnxruntime build + the medinfer runtime (no TensorFlow, no scikit-learn), so it runs in
the throw-away GPU environment ``scripts/accelerator_check.sh`` creates. Writes one JSON document (and a
markdown summary in the format ``benchmarks/report.py`` renders into REPORT.md).

    python benchmarks/accelerator.py --bundles bundles --providers cuda tensorrt --out results/accelerator.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def _batch(model: Any, n: int) -> Any:
    from medinfer.tools.bench import batch_input

    return batch_input(model, n)


def _compare(ref: Any, got: Any, atol: float, rtol: float) -> dict[str, Any]:
    a = np.asarray(ref.scores, dtype=np.float64)
    b = np.asarray(got.scores, dtype=np.float64)
    diff = float(np.max(np.abs(a - b), initial=0.0))
    ok = bool(np.allclose(b, a, atol=atol, rtol=rtol))
    out = {"max_abs_diff": diff, "within_tolerance": ok, "atol": atol, "rtol": rtol}
    if ref.labels is not None:
        out["label_flips"] = int(np.sum(np.asarray(ref.labels) != np.asarray(got.labels)))
        out["within_tolerance"] = ok and out["label_flips"] == 0
    return out


def provider_entry(name: str, cache: Path) -> Any:
    if name == "tensorrt":
        cache.mkdir(parents=True, exist_ok=True)
        return ("tensorrt", {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache),
                             "trt_fp16_enable": False})
    return name


def check_bundle(path: Path, providers: list[str], batches: list[int], seconds: float, cache: Path) -> dict[str, Any]:
    import medinfer
    from medinfer.tools.bench import bench_bundle

    cpu = medinfer.load(path)
    tol = cpu.manifest.golden
    result: dict[str, Any] = {"bundle": cpu.name, "version": cpu.version, "providers": {}}
    inputs = {n: _batch(cpu, n) for n in batches}
    refs = {n: cpu.predict(x) for n, x in inputs.items()}
    for prov in ["cpu", *providers]:
        entry: dict[str, Any] = {}
        start = time.perf_counter()
        # The accelerator first, the CPU for what it cannot take (shape/string/tree ops): the usual deployment.
        request = [provider_entry(prov, cache / cpu.name)] + ([] if prov == "cpu" else ["cpu"])
        try:
            model = medinfer.load(path, request, self_test=False)
            entry["load_s"] = time.perf_counter() - start
            entry["session_providers"] = list(model.providers)
            if prov != "cpu" and model.providers[0] == "CPUExecutionProvider":
                raise medinfer.ProviderError(f"{prov} did not initialise; onnxruntime left only the CPU")
            entry["placement"] = model.placement()
            entry["parity_vs_cpu"] = {str(n): _compare(refs[n], model.predict(x), tol.atol, tol.rtol)
                                      for n, x in inputs.items()}
            entry["self_test"] = model.self_test().status  # the golden output within the manifest tolerance
            entry["bench"] = {}
            for n in batches:
                rec = bench_bundle(path, providers=request, batch=n, min_queries=100, min_seconds=seconds,
                                   warmup_queries=20, cold=False)
                entry["bench"][str(n)] = {k: rec[k] for k in ("latency_us", "throughput_samples_per_s")}
            entry["status"] = "ok"
        except Exception as exc:  # noqa: BLE001 - every failure is recorded with its reason, never hidden
            entry["status"] = "failed"
            entry["error"] = f"{type(exc).__name__}: {str(exc)[:600]}"
            entry["load_s"] = time.perf_counter() - start
        result["providers"][prov] = entry
    return result


def markdown(doc: dict[str, Any]) -> list[str]:
    env = doc.get("env", {})
    lines = [f"Device: {doc.get('gpu', 'unknown GPU')}; onnxruntime {env.get('onnxruntime')} "
             f"({env.get('onnxruntime_build')}); CPU {env.get('cpu', {}).get('model')}; "
             f"{doc.get('seconds'):g} s per measurement; run {doc.get('time')}.", "",
             "| model | provider | status | nodes (accelerator / CPU) | p50 µs b=1 | p99 µs b=1 | samples/s b=1 "
             "| p50 µs b=large | samples/s b=large | max diff vs CPU | label flips |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in doc.get("results", []):
        for prov, e in r.get("providers", {}).items():
            if e.get("status") != "ok":
                why = e.get("error", "")[:140].replace("|", "/")
                lines.append(f"| {r['bundle']} | {prov} | FAILED: {why} | | | | | | | | |")
                continue
            b = e["bench"]
            keys = sorted(b, key=int)
            small, large = b[keys[0]], b[keys[-1]]
            par = list(e["parity_vs_cpu"].values())
            nodes = e.get("placement", {}).get("nodes", {})
            cpu_n = nodes.get("CPUExecutionProvider", 0)
            split = f"{sum(nodes.values()) - cpu_n} / {cpu_n}" if prov != "cpu" else f"0 / {cpu_n}"
            lines.append(
                f"| {r['bundle']} | {prov} | ok | {split} | {small['latency_us']['p50']:.1f} | "
                f"{small['latency_us']['p99']:.1f} | "
                f"{small['throughput_samples_per_s']:.0f} | {large['latency_us']['p50']:.1f} (b={keys[-1]}) | "
                f"{large['throughput_samples_per_s']:.0f} | {max(p['max_abs_diff'] for p in par):.2e} | "
                f"{sum(p.get('label_flips', 0) for p in par)} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundles", default="bundles")
    parser.add_argument("--providers", nargs="+", default=["cuda", "tensorrt"])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 256])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--cache", default="/tmp/medinfer-trt-cache")
    parser.add_argument("--out", required=True)
    parser.add_argument("--gpu", default="")
    args = parser.parse_args(argv)

    from medinfer.providers import diagnose
    from medinfer.tools.fingerprint import environment

    root = Path(args.bundles)
    bundles = sorted(p for p in root.iterdir() if (p / "manifest.json").is_file())
    doc: dict[str, Any] = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "gpu": args.gpu,
                           "env": environment(), "diagnosis": diagnose(args.providers + ["cpu"]),
                           "seconds": args.seconds, "batches": args.batch, "results": []}
    for path in bundles:
        print(f"== {path.name}", file=sys.stderr, flush=True)
        doc["results"].append(check_bundle(path, args.providers, args.batch, args.seconds, Path(args.cache)))
        Path(args.out).write_text(json.dumps(doc, indent=1))  # partial results survive a timeout
    doc["title"] = "Accelerators: CUDA and TensorRT execution providers"
    doc["markdown"] = markdown(doc)
    Path(args.out).write_text(json.dumps(doc, indent=1))
    print("\n".join(doc["markdown"]))
    bad = [(r["bundle"], p) for r in doc["results"] for p, e in r["providers"].items()
           if e.get("status") == "ok" and not all(v["within_tolerance"] for v in e["parity_vs_cpu"].values())]
    if bad:
        print(f"PARITY FAILURES vs CPU: {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
