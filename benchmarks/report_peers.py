"""The peers' tables of REPORT.md: one per model (contender, variant, p50/p99 at batch 1 and 64, × medinfer,
accuracy delta vs the native model on the held-out split), and the goal line: medinfer's best shipped variant
ahead of every peer at batch 1 within the accuracy budget."""

from __future__ import annotations

from typing import Any

from .schema import error_text

BUDGET = {"roc_auc": 0.005, "accuracy": 0.005, "rmse": 0.5}  # loss vs the native model that still counts as equal
GOAL_MODELS = ("lung_nodule_cnn", "glucose_lstm")
SHOWN = ("medinfer", "peer", "native")
# The words for the reason codes a run records when a peer is not in it (benchmarks/peers.py).
REASONS = {"venv_missing": "its venv is not built (make peer-venvs)",
           "no_artifact": "no training artifact (the Keras model) for this bundle",
           "conversion_failed": "the conversion failed", "peer_failed": "the peer failed",
           "no_answer": "the peer worker gave no answer"}


def unavailable(why: Any) -> str:
    """Why a peer is not in the run, in words: its reason code's sentence and the tool's captured error (a string
    from a run made before reason codes is shown as it is)."""
    if not isinstance(why, dict):
        return str(why)[:240]
    text = REASONS.get(str(why.get("reason")), str(why.get("reason")))
    return f"{text}: {error_text(why['error'])[:240]}" if why.get("error") else text


def _f(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def loss(acc: dict[str, Any] | None) -> float | None:
    """Accuracy lost against the native model (positive: worse), in the metric's units."""
    if not acc or "delta" not in acc:
        return None
    return acc["delta"] if acc["metric"] == "rmse" else -acc["delta"]


def _acc(acc: dict[str, Any] | None) -> str:
    if acc is None:
        return "–"
    if "error" in acc:
        return f"failed: {error_text(acc['error'])[:80]}"
    sign = "+" if acc["delta"] >= 0 else "−"
    return f"{acc['metric']} {acc['value']:.4f} ({sign}{abs(acc['delta']):.4f})"


def table(model: dict[str, Any]) -> list[str]:
    batches = [b["batch"] for b in model["batches"]]
    by = {b["batch"]: {r["candidate"]: r for r in b["rows"]} for b in model["batches"]}
    names: list[str] = []
    for b in model["batches"]:
        names += [r["candidate"] for r in b["rows"] if r["kind"] in SHOWN and r["candidate"] not in names]
    head = "| contender | variant | what runs | threads | " + " | ".join(f"p50 µs b={n} | p99 b={n} | × medinfer b={n}"
                                                                    for n in batches)
    lines = [head + " | accuracy vs native (b=1) |", "|---|---|---|---|" + "---|---|---|" * len(batches) + "---|"]
    acc = model.get("accuracy") or {}
    for name in names:
        cells = []
        row = next(by[n][name] for n in batches if name in by[n])
        for n in batches:
            r = by[n].get(name)
            s = r["latency_us"] if r else None
            cells.append(f"{_f(s and s['p50'])} | {_f(s and s['p99'])} | {_f(r and r.get('ratio_p50_vs_medinfer'), 3)}")
        first = batches[0]
        lines.append(f"| {name.split(' [')[0]} | {row.get('variant') or '–'} | {label_of(row)} | {threads_of(row)} | "
                     f"{' | '.join(cells)} | {_acc(acc.get(f'{first}|{name}'))} |")
    return lines


def goal(model: dict[str, Any]) -> str:
    """Is medinfer's best shipped variant ahead of every peer at batch 1, within the accuracy budget?"""
    b1 = next((b for b in model["batches"] if b["batch"] == 1), None)
    if b1 is None:
        return f"- {model['model']}: no batch-1 measurement."
    acc = model.get("accuracy") or {}

    def ok(name: str) -> bool:
        a = acc.get(f"1|{name}")
        lost = loss(a)
        return lost is not None and a is not None and lost <= BUDGET.get(a["metric"], 0.0)

    mine = [r for r in b1["rows"] if r["kind"] == "medinfer" and ok(r["candidate"])]
    peers = [r for r in b1["rows"] if r["kind"] == "peer"]
    if not mine:
        return f"- {model['model']}: no medinfer variant with a measured accuracy within budget in this run."
    if not peers:
        return f"- {model['model']}: no peer ran in this run (see 'not in this run' below)."
    best = min(mine, key=lambda r: r["latency_us"]["p50"])
    equal = [r for r in peers if ok(r["candidate"])]
    lost = [r for r in peers if not ok(r["candidate"])]
    faster = [r for r in equal if r["latency_us"]["p50"] < best["latency_us"]["p50"]]
    p = best["latency_us"]["p50"]
    head = f"- {model['model']}: medinfer's best within budget is {best['candidate']} at {p:.1f} µs (p50, b=1); "
    skipped = (f" Not counted (accuracy outside the budget or not measured): "
               f"{', '.join(r['candidate'] for r in lost)}.") if lost else ""
    if not faster:
        return head + f"**met**: ahead of every peer within the budget ({len(equal)} of {len(peers)})." + skipped
    wins = "; ".join(f"{r['candidate']} {r['latency_us']['p50']:.1f} µs ({r['latency_us']['p50'] / p:.2f}×)"
                     for r in sorted(faster, key=lambda r: r["latency_us"]["p50"]))
    return head + f"**not met**: faster at equal accuracy: {wins}." + skipped + _fp32_gap(b1["rows"], faster)


def _fp32_gap(rows: list[dict[str, Any]], faster: list[dict[str, Any]]) -> str:
    """Where a peer's win comes from, measured in the same run: its engine's fp32 graph against medinfer's fp32.
    A peer already that much faster at fp32 wins on its kernels, not on its quantisation scheme."""
    fp32 = next((r for r in rows if r["kind"] == "medinfer" and r.get("variant") == "default"), None)
    if fp32 is None:
        return ""
    parts = []
    for engine in dict.fromkeys(r["candidate"].split(" [")[0] for r in faster):
        own = next((r for r in rows if r["kind"] == "peer" and r["candidate"].startswith(f"{engine} [")
                    and r.get("variant") == "fp32"), None)
        if own is not None:
            parts.append(f"{engine} {own['latency_us']['p50'] / fp32['latency_us']['p50']:.2f}×")
    if not parts:
        return ""
    return (f" fp32 against fp32 in the same run (each engine's fp32 / medinfer fp32, p50, b=1): {'; '.join(parts)}"
            " — a ratio near the int8 one puts the gap in that engine's kernels, not in the quantisation.")


def _threads(rec: dict[str, Any]) -> str:
    if rec.get("threads"):
        return f"every contender with the run's {rec['threads']} intra-op threads (each row's own in the table)"
    return ("threads as each row's settings say (a run made before issue 24: the peers ran the profile's thread "
            "count or every usable core, medinfer its profile's)")


def threads_of(row: dict[str, Any]) -> str:
    """The intra-op threads a row ran with: recorded per row since issue 24; before, read from its settings."""
    if row.get("threads") is not None:
        return str(row["threads"])
    s = row.get("settings") or {}
    value = s.get("intra_op_num_threads", s.get("threads"))
    return "–" if value is None else f"{value} (settings)"


def label_of(row: dict[str, Any]) -> str:
    """What really ran in a row (recorded since issue 24; '–' before)."""
    return str(row.get("label") or "–").replace("|", "/")


def section(rec: dict[str, Any]) -> list[str]:
    models = [m for m in rec["models"] if any(r["kind"] == "peer" for b in m["batches"] for r in b["rows"])
              or m.get("peers_unavailable")]
    if not models:
        return ["No peer ran in this run (`make peer-venvs`, then `python -m benchmarks run --peers litert "
                "openvino`)."]
    budget = ", ".join(f"{k} {v:g}" for k, v in BUDGET.items())
    lines = ["LiteRT (`ai-edge-litert`: fp32, dynamic-range int8, full-integer int8 calibrated on the training "
             "patches medinfer's int8 variant was calibrated on; recurrent layers unrolled over the window) for the "
             "Keras models; onnxruntime's OpenVINO provider on each bundle graph. Each peer runs in its own venv and "
             f"process, timed in the same interleaved rounds; {_threads(rec)}. Accuracy: the "
             "same held-out split as the native model, run at the timed batch size; the delta in brackets is against "
             "the native model (RMSE: positive is worse).", "",
             f"Goal: medinfer's best shipped variant ahead of every peer at batch 1 within {budget} of the native "
             "model's accuracy:", ""]
    lines += [goal(m) for m in models if m["model"] in GOAL_MODELS] or ["- (neither goal model in this run)"]
    for m in models:
        lines += ["", f"### {m['model']}", ""] + table(m)
        for name, why in sorted((m.get("peers_unavailable") or {}).items()):
            lines.append(f"\nNot in this run: {name}: {unavailable(why)}")
    return lines
