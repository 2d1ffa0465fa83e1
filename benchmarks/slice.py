"""A whole CT slice: one convolutional pass (the bundle's ``slice`` variants) vs batched patch-by-patch, at the
same stride, on the same realistic slice, interleaved; plus the decisions of both (they must be identical).

The slice is the one-pass variant's golden input (a mosaic of held-out patches, real HU content) mirrored out to
the benchmark size; both paths score the DICOM path's window grid (``medinfer.windows.window_centres``), air
beyond the borders, exactly as ``medinfer predict BUNDLE scan.dcm`` (``--patchwise`` for the second).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import medinfer
import numpy as np
from medinfer.tools import ct_slice
from medinfer.tools.bench import interleaved
from medinfer.windows import cut_patches, window_centres

SIZES = (256, 512)
STRIDE = 24
BATCH = 64  # patches per call on the patch path (what predict_file uses)
FULL = {"seconds": 20.0, "rounds": 3}  # what a published results/slice.json is timed with at least


def _slice(model: medinfer.Model, size: int) -> np.ndarray:
    inputs, _ = model.golden()
    grid = ct_slice.SliceGrid.of(model)
    image = np.asarray(inputs[grid.image])[0, :, :, 0]
    reps = -(-size // min(image.shape))
    return np.pad(image, ((0, reps * image.shape[0]), (0, reps * image.shape[1])), mode="symmetric")[:size, :size]


def _patchwise(model: medinfer.Model, hu: np.ndarray, centres: np.ndarray, patch: int,
               fill: float) -> tuple[np.ndarray, list[str]]:
    scores, labels = [], []
    for start in range(0, len(centres), BATCH):
        pred = model.predict(cut_patches(hu, centres[start:start + BATCH], patch, fill))
        scores.append(np.asarray(pred.scores, np.float64).reshape(-1))
        labels += [str(x) for x in pred.labels] if pred.labels is not None else [""] * len(pred)
    return np.concatenate(scores), labels


def slice_speed(bundle: Path, *, sizes: tuple[int, ...] = SIZES, stride: int = STRIDE, seconds: float = 20.0,
                rounds: int = 3) -> list[dict[str, Any]]:
    """One row per (precision, size): raw per-slice latencies of both paths (ms), windows, and how their answers
    compare. Empty when the bundle ships no whole-slice variant."""
    manifest = medinfer.load_manifest(bundle)
    rows = []
    for key, entry in manifest.variants.items():
        if entry.windows_of is None or entry.inputs is None:
            continue
        patches, one_pass = medinfer.load(bundle, variant=entry.windows_of), medinfer.load(bundle, variant=key)
        grid = ct_slice.SliceGrid.of(one_pass)
        fill = float((one_pass.manifest.inputs[0].range or (-1024.0, 0.0))[0])
        for size in sizes:
            hu = _slice(one_pass, size)
            centres = window_centres(hu.shape, stride)
            a_scores, a_labels = _patchwise(patches, hu, centres, grid.patch, fill)
            b_scores, b_labels = ct_slice.score_slice(one_pass, hu, centres, stride, fill)
            fns = {"patch-by-patch": lambda m=patches, h=hu, c=centres, p=grid.patch, f=fill: _patchwise(m, h, c, p, f),
                   "one pass": lambda m=one_pass, h=hu, c=centres, f=fill: ct_slice.score_slice(m, h, c, stride, f)}
            samples = interleaved(fns, seconds=seconds, rounds=rounds, warmup=1)
            rows.append({
                "model": manifest.name, "size": size, "stride": stride, "precision": entry.precision,
                "patch_variant": entry.windows_of, "one_pass_variant": key, "windows": int(len(centres)),
                "batch": BATCH, "samples_ms": {k: (v / 1e6).round(3).tolist() for k, v in samples.items()},
                "max_abs_diff": float(np.max(np.abs(a_scores - b_scores))),
                "decision_flips": int(sum(x != y for x, y in zip(a_labels, b_labels))),
            })
    return rows


def summary(row: dict[str, Any]) -> dict[str, float]:
    """p50 of each path (ms) and the speed-up (patch-by-patch p50 / one-pass p50), from the raw samples."""
    p50 = {k: float(np.percentile(v, 50)) for k, v in row["samples_ms"].items()}
    return {"patch_p50_ms": p50["patch-by-patch"], "one_pass_p50_ms": p50["one pass"],
            "speedup": p50["patch-by-patch"] / p50["one pass"]}


def markdown(doc: dict[str, Any]) -> list[str]:
    """The report's section, rendered from a ``results/slice.json`` document."""
    from .provenance import stated

    lines = [f"Measured {stated(doc)}: per slice, interleaved ({doc['method']['rounds']} rounds), the "
             "DICOM path's window grid, air beyond the borders; speed-up = p50 patch-by-patch / p50 one pass.", "",
             "| model | slice | stride | precision | windows | patch-by-patch p50 ms | one pass p50 ms | speed-up | "
             "max abs diff | decision flips |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in doc["rows"]:
        s = summary(row)
        lines.append(f"| {row['model']} | {row['size']}x{row['size']} | {row['stride']} px | {row['precision']} | "
                     f"{row['windows']} | {s['patch_p50_ms']:.1f} | {s['one_pass_p50_ms']:.1f} | "
                     f"{s['speedup']:.2f}x | {row['max_abs_diff']:.2g} | {row['decision_flips']} |")
    return lines


def document(rows: list[dict[str, Any]], command: str, seconds: float, rounds: int,
             started: dict[str, Any] | None = None, bundles: dict[str, Any] | None = None) -> dict[str, Any]:
    """The results document of one-pass-vs-patches rows: ``started`` is the provenance the run captured before it
    measured (captured now when not given), ``bundles`` the sha256 of the bundles it timed."""
    from medinfer.tools.fingerprint import environment

    from . import provenance

    started = started or provenance.capture()
    return {"kind": "medinfer.slice", "command": command, "time": started["started"], "provenance": started,
            "bundles": bundles or {}, "env": environment(),
            "method": {"seconds_per_size": seconds, "rounds": rounds, "timer": "perf_counter_ns", "trimming": "none",
                       "batch_patchwise": BATCH}, "rows": rows}
