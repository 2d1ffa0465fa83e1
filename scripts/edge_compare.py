"""Run bundles on one machine and write every output (``reference``), or compare with such a file (``compare``).

Needs only numpy + onnxruntime + medinfer, so it runs inside the environments it checks: the emulated aarch64
Python and the oldest-versions venv (``scripts/edge_check.py`` drives it). Each bundle is loaded with
``medinfer.load`` (every file's sha256 + the golden self-test), then each variant's graph runs EVERY output on the
golden input and on a seeded in-range sample; ``compare`` feeds the very inputs stored in the reference file and
holds each float output to the manifest's tolerance (the variant's own golden atol when it has one), integer and
string outputs to equality.

    python scripts/edge_compare.py reference --out REF.npz BUNDLE...
    python scripts/edge_compare.py compare --reference REF.npz [--json OUT.json] BUNDLE...
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path
from typing import Any

import medinfer
import numpy as np
from medinfer.session import cpu_session

SAMPLE_ROWS = 8


def _sample(model: medinfer.Model, golden: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray] | None:
    """Seeded inputs uniform in each input's declared range (None when an input has no numeric range)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in model.manifest.inputs:
        if spec.range is None or not spec.dtype.startswith("float") or spec.name not in golden:
            return None
        like = golden[spec.name]
        shape = [d if isinstance(d, int) else (SAMPLE_ROWS if i == 0 else like.shape[i]) for i, d in
                 enumerate(spec.shape)]
        low, high = spec.range
        feeds[spec.name] = rng.uniform(low, high, size=shape).astype(spec.dtype)
    return feeds


def _graph(model: medinfer.Model) -> Any:
    return cpu_session(model.graph_bytes(), model.manifest.profile)  # the pinned bytes, or IntegrityError


def _tolerance(model: medinfer.Model) -> tuple[float, float]:
    golden, variant = model.manifest.golden, model.manifest.variants[model.variant]
    return (golden.atol if variant.golden_atol is None else variant.golden_atol), golden.rtol


def _runs(bundles: list[Path]):
    """Yield (key, bundle, model, session) for every bundle and variant, loading each with the full checks."""
    for bundle in bundles:
        manifest = medinfer.load_manifest(bundle)
        for variant in manifest.variants:
            model = medinfer.load(bundle, variant=variant)  # integrity + this variant's golden self-test
            yield f"{manifest.name}|{variant}", bundle, model, _graph(model)


def reference(bundles: list[Path], out: Path) -> dict[str, Any]:
    """Run every output of every variant on the golden and the sampled inputs; write them all to ``out``."""
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {"machine": platform.machine(), "onnxruntime": _ort_version(),
                            "numpy": np.__version__, "runs": {}}
    for key, _, model, session in _runs(bundles):
        golden, _ = model.golden()
        sets = {"golden": golden}
        sampled = _sample(model, golden, seed=len(meta["runs"]))
        if sampled is not None:
            sets["sampled"] = sampled
        names = [o.name for o in session.get_outputs()]
        for set_name, feeds in sets.items():
            outs = session.run(names, feeds)
            arrays.update({f"{key}|{set_name}|in|{k}": v for k, v in feeds.items()})
            arrays.update({f"{key}|{set_name}|out|{k}": v for k, v in zip(names, outs)})
        meta["runs"][key] = {"sets": list(sets), "outputs": names, "tolerance": _tolerance(model)}
    plain = {k: (v.astype(str) if v.dtype == object else v) for k, v in arrays.items()}
    np.savez(out, __meta__=np.array(json.dumps(meta)), **plain)
    return meta


def compare(bundles: list[Path], ref_path: Path) -> list[dict[str, Any]]:
    """Compare this machine's outputs with the reference file's, one record per bundle variant."""
    with np.load(ref_path, allow_pickle=False) as ref:
        stored = {k: ref[k] for k in ref.files}
    meta = json.loads(str(stored.pop("__meta__")))
    results = []
    seen = set()
    for key, _, model, session in _runs(bundles):
        seen.add(key)
        if key not in meta["runs"]:
            results.append({"run": key, "ok": False, "message": "not in the reference file"})
            continue
        atol, rtol = _tolerance(model)
        worst, exact, problems, count = 0.0, True, [], 0
        for set_name in meta["runs"][key]["sets"]:
            prefix = f"{key}|{set_name}|"
            feeds = {k[len(prefix) + 3:]: v for k, v in stored.items() if k.startswith(prefix + "in|")}
            names = meta["runs"][key]["outputs"]
            for name, got in zip(names, session.run(names, feeds)):
                want = stored[f"{prefix}out|{name}"]
                got = np.asarray(got)
                count += 1
                if got.shape != want.shape:
                    problems.append(f"{set_name}/{name}: shape {got.shape}, reference {want.shape}")
                    continue
                if got.dtype.kind in "fc":
                    diff = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64)), initial=0.0))
                    worst = max(worst, diff)
                    exact = exact and np.array_equal(got, want)
                    if not np.allclose(got, want, atol=atol, rtol=rtol):
                        problems.append(f"{set_name}/{name}: max abs diff {diff:.3g} > atol {atol:g}, rtol {rtol:g}")
                elif not np.array_equal(got.astype(want.dtype) if got.dtype == object else got, want):
                    exact = False
                    problems.append(f"{set_name}/{name}: values differ from the reference")
        results.append({"run": key, "ok": not problems, "outputs_compared": count, "bit_exact": exact and not problems,
                        "max_abs_diff": worst, "atol": atol, "rtol": rtol, "problems": problems})
    for key in sorted(set(meta["runs"]) - seen):
        results.append({"run": key, "ok": False, "message": "in the reference file but not run here"})
    return results


def _ort_version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("reference")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("bundles", nargs="+", type=Path)
    p = sub.add_parser("compare")
    p.add_argument("--reference", type=Path, required=True)
    p.add_argument("--json", type=Path, default=None, help="also write the records here")
    p.add_argument("bundles", nargs="+", type=Path)
    args = parser.parse_args(argv)
    if args.command == "reference":
        meta = reference(args.bundles, args.out)
        print(f"reference: {len(meta['runs'])} bundle variants on {meta['machine']}, onnxruntime "
              f"{meta['onnxruntime']} -> {args.out}")
        return 0
    results = compare(args.bundles, args.reference)
    doc = {"machine": platform.machine(), "onnxruntime": _ort_version(), "numpy": np.__version__,
           "python": platform.python_version(), "results": results}
    if args.json:
        args.json.write_text(json.dumps(doc, indent=1) + "\n")
    for r in results:
        state = "OK  " if r["ok"] else "FAIL"
        detail = (f"{r['outputs_compared']} outputs, max abs diff vs reference {r['max_abs_diff']:.3g}"
                  f"{' (bit-exact)' if r['bit_exact'] else ''}" if "outputs_compared" in r else r["message"])
        print(f"{state} {r['run']}: {detail}" + "".join(f"\n     {p}" for p in r.get("problems", [])))
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
