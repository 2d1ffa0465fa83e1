"""Explanations of the built bundles: cost at batch 1, fidelity on held-out samples, one example per model.

    python -m benchmarks explain [--bundles bundles] [--seconds 6] [--rounds 6]   # results/explain.json + plot
    python -m benchmarks explain --examples [--bundles bundles] [--write-readme]  # README markdown (printed;
                                                                                  # --write-readme: into README)

Per bundle (one process, interleaved rounds at batch 1 on the bundle's golden input): ``predict`` on a model that
never explained, ``predict`` on one whose explainer is loaded (the plain path must not get slower: the explanation is
a separate graph or a batch of the model's own graph, never computed on ``predict``), ``explain`` and
``predict(explain=True)``. Fidelity: the deletion/insertion curves (:mod:`medinfer.fidelity`) recomputed on the
device path from the bundle's parity sample (a seeded sample of the held-out set), beside the numbers its export
wrote into the manifest. Raw data go to ``results/explain.json`` (:mod:`benchmarks.results` rules), the curves to
``plots/explain_fidelity.png``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).parent
PLOT = HERE / "plots" / "explain_fidelity.png"
TOP = 5


def _stats(ns: np.ndarray) -> dict[str, float]:
    us = np.asarray(ns, np.float64) / 1e3
    return {"p50_us": round(float(np.percentile(us, 50)), 2), "p90_us": round(float(np.percentile(us, 90)), 2),
            "p99_us": round(float(np.percentile(us, 99)), 2), "n": int(len(us))}


def cost(bundle: Path, seconds: float, rounds: int) -> dict[str, Any]:
    """Batch-1 latency of predict (never explained / explainer loaded), explain and predict(explain=True)."""
    import medinfer
    from medinfer.tools.bench import batch_input, interleaved

    fresh = medinfer.load(bundle)
    model = medinfer.load(bundle)
    x = batch_input(model, 1)
    model.explain(x)  # builds the explainer (its graph's session, its golden check): not timed
    calls = {"predict": lambda: fresh.predict(x), "predict_explainer_loaded": lambda: model.predict(x),
             "explain": lambda: model.explain(x), "predict_explain": lambda: model.predict(x, explain=True)}
    times = interleaved(calls, seconds=seconds, rounds=rounds, warmup=5)
    out = {k: _stats(v) for k, v in times.items()}
    out["plain_predict_ratio"] = round(out["predict_explainer_loaded"]["p50_us"] / out["predict"]["p50_us"], 4)
    return out


def fidelity(bundle: Path) -> dict[str, Any] | None:
    """The fidelity curves recomputed through the runtime on the bundle's parity sample (None: no sample)."""
    import medinfer
    from medinfer.explain import Explainer
    from medinfer.fidelity import measure

    model = medinfer.load(bundle)
    sample = model.parity_sample()
    if sample is None:
        return None
    inputs, _ = sample
    feeds, _ = model.prepare(inputs)
    start = time.perf_counter()
    measured = measure(Explainer.for_model(model), feeds)
    measured.pop("rule", None)
    measured["seconds"] = round(time.perf_counter() - start, 2)
    return measured


def example(bundle: Path, k: int = TOP, *, indexed: bool = False) -> dict[str, Any]:
    """The explanation of the bundle's first golden input (the README's example). ``indexed``: each top feature by
    its index in the explanation's features (the results file holds data; a name such as ``t-15 min`` is words)."""
    import medinfer

    model = medinfer.load(bundle)
    inputs, _ = model.golden()
    x = {name: v[:1] for name, v in inputs.items()}
    pred = model.predict(x, explain=True)
    e = pred.explanation
    return {"label": None if pred.labels is None else str(pred.labels[0]), "score": np.asarray(pred.scores[0]).tolist(),
            "method": e.method, "explains": e.explains, "units": e.units, "exact": e.exact,
            "output": float(e.output[0]), "bias": None if e.bias is None else float(e.bias[0]),
            "class": None if e.classes is None else e.classes[0],
            "top": [[e.features.index(name) if indexed else name, round(value, 5)] for name, value in e.top(0, k)],
            "groups": {g: round(float(v[0]), 4) for g, v in e.groups.items()}}


def _data(section: dict[str, Any], prose: tuple[str, ...]) -> dict[str, Any]:
    """A manifest section as raw data: its descriptive sentences (kept in the manifest and card) left out."""
    return {k: v for k, v in section.items() if k not in prose}


def collect(bundles: list[Path], seconds: float, rounds: int, command: str,
            progress: Any = print) -> dict[str, Any]:
    import medinfer
    from medinfer.tools.fingerprint import environment

    models: dict[str, Any] = {}
    for bundle in bundles:
        manifest = medinfer.load_manifest(bundle)
        if manifest.explanation is None:
            progress(f"{bundle.name}: no explanation (exported before them): skipped")
            continue
        progress(f"{bundle.name}: cost at batch 1 ({seconds:g} s x {rounds} rounds), fidelity, example")
        models[manifest.name] = {
            "model_sha256": manifest.files["model.onnx"].sha256, "method": manifest.explanation.method,
            "exact": manifest.explanation.exact, "cost": cost(bundle, seconds, rounds),
            "fidelity": fidelity(bundle), "fidelity_at_export": _data(manifest.explanation.fidelity, ("rule", "rows")),
            "gate": _data(manifest.explanation.parity, ("reference",)), "example": example(bundle, indexed=True)}
    return {"command": command, "env": environment(), "batch": 1, "seconds": seconds, "rounds": rounds,
            "models": models}


def plot(doc: dict[str, Any], path: Path = PLOT) -> Path:
    from medinfer.export.explain.plot import fidelity_figure

    return fidelity_figure({name: m["fidelity"] or m["fidelity_at_export"] for name, m in doc["models"].items()}, path)


def markdown(doc: dict[str, Any]) -> list[str]:
    """The README/REPORT table: method, exactness, cost, fidelity per model."""
    lines = ["| model | method | exact | predict p50 (µs) | explain p50 (µs) | area between curves (95 % CI) | "
             "beats random on |", "|---|---|---|---|---|---|---|"]
    for name, m in doc["models"].items():
        c, f = m["cost"], m["fidelity"] or m["fidelity_at_export"]
        ci = f.get("gain_ci95") or [float("nan"), float("nan")]
        lines.append(f"| {name} | {m['method']} | {'yes' if m['exact'] else 'no'} | {c['predict']['p50_us']:.0f} | "
                     f"{c['explain']['p50_us']:.0f} | {f['gain']:.3g} {f['units']} ({ci[0]:.3g} to {ci[1]:.3g}) | "
                     f"{f['share_better']:.0%} of {f['n']} |")
    return lines


def examples_markdown(bundles: list[Path], k: int = TOP) -> list[str]:
    """One explanation per model, from the built bundles (the README's examples)."""
    import medinfer

    out = []
    for bundle in bundles:
        manifest = medinfer.load_manifest(bundle)
        if manifest.explanation is None:
            continue
        ex = example(bundle, k)
        answer = f"'{ex['label']}'" if ex["label"] is not None else f"{float(np.ravel(ex['score'])[0]):.1f}"
        target = f" for '{ex['class']}'" if ex["class"] else ""
        parts = ", ".join(f"`{n}` {v:+.3g}" for n, v in ex["top"])
        base = f" = {ex['bias']:+.3g} (bias) + contributions" if ex["bias"] is not None else ""
        out.append(f"- **{manifest.name}** ({ex['method']}) answers {answer}; {ex['explains']}{target} "
                   f"{ex['output']:.3g} {ex['units']}{base}: {parts}"
                   + ("; masking each group: " + ", ".join(f"{g} {v:+.3g}" for g, v in ex["groups"].items())
                      if ex["groups"] else ""))
    return out


BEGIN = "<!-- explain-examples:start (python -m benchmarks explain --examples) -->"
END = "<!-- explain-examples:end -->"


def rewrite_readme(readme: Path, lines: list[str]) -> bool:
    """Put ``lines`` between the README's explain-examples markers; True when the README changed."""
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{readme} has no {BEGIN} ... {END} block to fill")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = head + BEGIN + "\n" + "\n".join(lines) + "\n" + END + tail
    readme.write_text(new)
    return new != text
