"""Run every bundle on each requested execution provider, compare it with the CPU provider on the held-out parity
sample (the bundle's, else one regenerated deterministically from its golden inputs), and benchmark.

Needs only numpy + an onnxruntime build + the medinfer runtime (no TensorFlow, no scikit-learn), so it runs in
the throw-away GPU environment ``scripts/accelerator_check.sh`` creates. Writes one JSON document of raw data and
the command (``benchmarks/report.py`` renders it into REPORT.md with :func:`markdown`).

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

PARITY_N = 256
PARITY_SEED = 14


def _tile(x: Any, n: int) -> Any:
    if isinstance(x, dict):
        return {k: _tile(v, n) for k, v in x.items()}
    reps = -(-n // len(x))
    return np.concatenate([x] * reps)[:n] if reps > 1 else x[:n]


def parity_sample(model: Any, n: int = PARITY_N, seed: int = PARITY_SEED) -> tuple[Any, dict[str, Any]]:
    """The inputs every accelerator is compared with the CPU on, and where they come from.

    The held-out parity sample shipped in the bundle when it has one (``Model.parity_sample``, the export gate's
    held-out inputs); otherwise ``n`` samples regenerated deterministically (``seed``) from the golden inputs:
    rows drawn with replacement, numeric features scaled by a seeded factor in [0.8, 1.2] and clipped to the
    manifest's range, texts rebuilt from a seeded shuffle of the golden texts' words.
    """
    shipped = model.parity_sample()  # (inputs, the export's CPU outputs) or None (a bundle written before it)
    if shipped is not None:
        held = {spec.name: shipped[0][spec.name] for spec in model.manifest.inputs}
        n = int(len(next(iter(held.values()))))
        return model.as_input(held), {"source": "bundle held-out parity sample", "n": n}
    golden, _ = model.golden()
    rng = np.random.default_rng(seed)
    first = next(iter(golden.values()))
    rows = rng.integers(0, len(first), n)
    out = {}
    for spec in model.manifest.inputs:
        x = np.asarray(golden[spec.name])[rows]
        if x.dtype.kind in "OUS":
            words = " ".join(str(t) for t in np.asarray(golden[spec.name]).reshape(-1)).split()
            x = np.array([" ".join(rng.permutation(words)[: max(1, len(words) // 2)]) for _ in range(n)], dtype=object)
        elif x.dtype.kind == "f":
            x = x * rng.uniform(0.8, 1.2, size=x.shape).astype(x.dtype)
            lo, hi = spec.range or (-np.inf, np.inf)
            x = np.clip(x, lo, hi).astype(first.dtype if spec.name == model.manifest.inputs[0].name else x.dtype)
        out[spec.name] = x
    # how: the docstring
    return model.as_input(out), {"source": "regenerated from the golden inputs", "n": n, "seed": seed}


def _compare(ref: Any, got: Any, atol: float, rtol: float) -> dict[str, Any]:
    a = np.asarray(ref.scores, dtype=np.float64)
    b = np.asarray(got.scores, dtype=np.float64)
    diff = float(np.max(np.abs(a - b), initial=0.0))
    ok = bool(np.allclose(b, a, atol=atol, rtol=rtol))
    out = {"max_abs_diff": diff, "within_tolerance": ok, "atol": atol, "rtol": rtol, "n": int(len(a))}
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

    from benchmarks.schema import from_exception

    cpu = medinfer.load(path)
    tol = cpu.manifest.golden
    result: dict[str, Any] = {"bundle": cpu.name, "version": cpu.version, "providers": {}}
    sample, source = parity_sample(cpu)
    result["parity_sample"] = source
    ref = cpu.predict(sample)
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
            if prov != "cpu":  # the CPU is the reference: never compared with itself
                entry["parity_vs_cpu"] = _compare(ref, model.predict(sample), tol.atol, tol.rtol)
            entry["self_test"] = model.self_test().status  # the golden output within the manifest tolerance
            entry["bench"] = {}
            for n in batches:
                rec = bench_bundle(path, providers=request, batch=n, min_queries=100, min_seconds=seconds,
                                   warmup_queries=20, cold=False)  # golden inputs tiled: speed, not parity
                entry["bench"][str(n)] = {k: rec[k] for k in ("latency_us", "throughput_samples_per_s")}
            entry["status"] = "ok"
        except Exception as exc:  # noqa: BLE001 - every failure is recorded with its reason, never hidden
            entry["status"] = "failed"
            entry["error"] = from_exception(exc)
            entry["load_s"] = time.perf_counter() - start
        result["providers"][prov] = entry
    return result


def _parity(e: dict[str, Any]) -> dict[str, Any]:
    """One parity record per accelerator (files before issue 14 kept one per batch size of tiled golden inputs)."""
    par = e.get("parity_vs_cpu") or {}
    if "max_abs_diff" in par:
        return par
    values = list(par.values())
    return {"max_abs_diff": max((p["max_abs_diff"] for p in values), default=0.0),
            "label_flips": sum(p.get("label_flips", 0) for p in values)}


def _why(d: dict[str, Any]) -> str:
    """Why a provider is not usable: its captured diagnosis (a file before issue 24 kept the words as ``why``)."""
    from benchmarks.schema import error_text

    return str(d["why"]) if d.get("why") else error_text(d.get("error")) or "ready"


def diagnosis(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """medinfer.providers.diagnose's rows as data: the missing part as a code, its words as a captured error."""
    from benchmarks.schema import captured

    out = []
    for row in rows:
        item = {k: v for k, v in row.items() if k != "why"}
        if not row.get("usable") and row.get("why"):
            item["error"] = captured(row["why"], exception="ProviderError")
        out.append(item)
    return out


def markdown(doc: dict[str, Any]) -> list[str]:
    """REPORT.md lines from ``results/accelerator.json``: each accelerator against the CPU, never the CPU against
    itself; the sample the parity was measured on; what failed and why."""
    from benchmarks.schema import error_text

    env = doc.get("env", {})
    lines = [f"Device: {doc.get('gpu') or 'none named'}; onnxruntime {env.get('onnxruntime')} "
             f"({env.get('onnxruntime_build')}); CPU {env.get('cpu', {}).get('model')}; {doc.get('seconds'):g} s "
             f"per measurement; run {doc.get('time')}.", ""]
    ran = [(r, p, e) for r in doc.get("results", []) for p, e in r.get("providers", {}).items()
           if p != "cpu" and e.get("status") == "ok"]
    if not ran:
        why = "; ".join(f"{d['provider']}: {_why(d)}" for d in doc.get("diagnosis", [])
                        if d.get("provider") != "CPUExecutionProvider")
        return lines + [f"No accelerator ran on this machine ({why or 'none requested'}): nothing to compare with "
                        "the CPU."]
    lines += ["| model | provider | nodes (accelerator / CPU) | p50 µs b=1 | p99 µs b=1 | × CPU b=1 | p50 µs b=large "
              "| samples/s b=large | × CPU b=large | max diff vs CPU | label flips | parity sample |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in doc.get("results", []):
        cpu = r["providers"].get("cpu", {})
        sample = r.get("parity_sample") or {"source": "golden inputs tiled to each batch size (before issue 14)"}
        for prov, e in r.get("providers", {}).items():
            if prov == "cpu":
                continue
            if e.get("status") != "ok":
                failed = error_text(e.get("error"))[:120].replace("|", "/")
                lines.append(f"| {r['bundle']} | {prov} | failed: {failed} "
                             "| | | | | | | | | |")
                continue
            keys = sorted(e["bench"], key=int)
            small, large = e["bench"][keys[0]], e["bench"][keys[-1]]
            c_small = (cpu.get("bench") or {}).get(keys[0], {}).get("latency_us", {}).get("p50")
            c_large = (cpu.get("bench") or {}).get(keys[-1], {}).get("latency_us", {}).get("p50")
            nodes = e.get("placement", {}).get("nodes", {})
            on_cpu = nodes.get("CPUExecutionProvider", 0)
            par = _parity(e)
            lines.append(
                f"| {r['bundle']} | {prov} | {sum(nodes.values()) - on_cpu} / {on_cpu} | "
                f"{small['latency_us']['p50']:.1f} | {small['latency_us']['p99']:.1f} | "
                f"{small['latency_us']['p50'] / c_small if c_small else float('nan'):.2f} | "
                f"{large['latency_us']['p50']:.1f} (b={keys[-1]}) | {large['throughput_samples_per_s']:.0f} | "
                f"{large['latency_us']['p50'] / c_large if c_large else float('nan'):.2f} | "
                f"{par['max_abs_diff']:.2e} | {par.get('label_flips', 0)} | {sample['source']}"
                f"{', n=' + str(sample['n']) if 'n' in sample else ''} |")
    stays = sorted({r["bundle"] for r, p, e in ran
                    if sum(e.get("placement", {}).get("nodes", {}).values())
                    == e.get("placement", {}).get("nodes", {}).get("CPUExecutionProvider", 0)})
    if stays:
        lines += ["", f"Wholly on the CPU although an accelerator was asked first (no kernel for their ops): "
                      f"{', '.join(stays)}."]
    for name, fails in sorted((doc.get("first_run_with_tf32") or {}).items()):
        for prov, err in (fails or {}).items():
            if err:
                first = error_text(err["error"])[:220]
                lines += ["", f"First run with {prov}'s defaults (TF32 on) on {name}: {first}"]
    for d in doc.get("diagnosis", []):
        if not d.get("usable") and d.get("provider") != "CPUExecutionProvider":
            lines += ["", f"{d['provider']}: not usable here ({_why(d)})."]
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

    from benchmarks import provenance, results

    out = Path(args.out)
    publish = out.parent.resolve() == results.FOLDER.resolve()
    started = provenance.require_clean(what="accelerator.py") if publish else provenance.capture()
    root = Path(args.bundles)
    bundles = sorted(p for p in root.iterdir() if (p / "manifest.json").is_file())
    doc: dict[str, Any] = {"command": "python benchmarks/accelerator.py " + " ".join(sys.argv[1:] if argv is None
                                                                           else argv),
                           "time": started["started"], "provenance": started,
                           "bundles": provenance.bundles_of(bundles), "gpu": args.gpu or None,
                           "env": environment(), "diagnosis": diagnosis(diagnose(args.providers + ["cpu"])),
                           "seconds": args.seconds, "batches": args.batch, "results": []}
    partial = provenance.ROOT / "build" / f"{out.stem}.partial.json"  # never in the results folder
    partial.parent.mkdir(parents=True, exist_ok=True)
    for path in bundles:
        print(f"== {path.name}", file=sys.stderr, flush=True)
        doc["results"].append(check_bundle(path, args.providers, args.batch, args.seconds, Path(args.cache)))
        partial.write_text(json.dumps(doc, indent=1))  # partial results survive a timeout
    if publish:
        provenance.still_publishable(started, what="accelerator.py")
    results.write(out.stem, doc, out.parent)
    partial.unlink(missing_ok=True)
    print("\n".join(markdown(doc)))
    bad = [(r["bundle"], p) for r in doc["results"] for p, e in r["providers"].items()
           if p != "cpu" and e.get("status") == "ok" and not e["parity_vs_cpu"]["within_tolerance"]]
    if bad:
        print(f"PARITY FAILURES vs CPU: {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
