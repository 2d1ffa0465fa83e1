"""A CGM/pump export in, the glucose model's 10 features out (numpy only): the ONE feature computation.

:func:`step_features` computes the 10 per-step features of ``glucose_lstm`` from 5-minute series; training
(:func:`medinfer.train.datasets.glucose.features`) calls it on the simulator's runs, so what a device computes from a
CGM export is, by construction, what the model was trained and its parity gated on.

:func:`read_cgm` reads a CGM export CSV: one row per CGM reading or event, columns (case-insensitive; Dexcom
Clarity's names are recognised too):

- ``timestamp`` (ISO 8601, e.g. ``2026-03-01T07:35:00``; ``Timestamp (YYYY-MM-DDThh:mm:ss)``),
- the glucose reading, in mg/dL (``glucose_mg_dl``, ``Glucose Value (mg/dL)``) or mmol/L (``glucose_mmol_l``,
  ``Glucose Value (mmol/L)``; converted with 18.0182 mg/dL per mmol/L); ``Low`` is the sensor's floor (39 mg/dL),
  ``High`` (above the sensor's range, value unknown) is refused,
- ``basal_u_h`` (basal rate, U/h; carried forward until it changes; required at or before the first reading),
- ``bolus_u`` (``Insulin Value (u)``) and ``carbs_g`` (``Carb Value (grams)``): events, summed per 5-minute step.

Readings are placed on a 5-minute grid from the first reading (each at its nearest step); readings at most
:data:`MAX_GAP_MINUTES` apart have the steps between them filled by linear interpolation, a longer gap is refused with
its times (the model never saw a sensor gap: an imputed hour would be a guess). The bundle says it takes this input
in its input facts (``raw_input``), and the window it is answered on is the last ``raw_input.window_steps`` steps.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..model import Model
from ..timestamps import parse_wall_clock, wall_clock_text

STEP_MINUTES = 5
IOB_MINUTES, COB_MINUTES = 240, 180  # linear decay: insulin action 4 h, carbohydrate absorption 3 h
MGDL_PER_MMOLL = 18.0182
MAX_GAP_MINUTES = 15
LOW_MGDL = 39.0  # the sensor's floor: what a "Low" reading is
FEATURE_NAMES = ("cgm", "cgm_rate", "cgm_delta_30min", "basal_insulin", "bolus_insulin", "carbohydrates",
                 "insulin_on_board", "carbs_on_board", "time_of_day_sin", "time_of_day_cos")
FACT = "raw_input"


def on_board(amount: np.ndarray, duration_min: int) -> np.ndarray:
    """What is still active of each step's ``amount``, decaying linearly over ``duration_min``."""
    steps = duration_min // STEP_MINUTES
    kernel = np.clip(1.0 - np.arange(steps) / steps, 0.0, None)
    return np.convolve(amount, kernel)[: len(amount)]


def step_features(cgm: np.ndarray, basal_u_h: np.ndarray, bolus_u: np.ndarray, carbs_g: np.ndarray,
                  minutes: np.ndarray) -> np.ndarray:
    """The (steps, 10) float32 features of 5-minute series, in :data:`FEATURE_NAMES` order.

    Args:
        cgm: CGM reading per step (mg/dL).
        basal_u_h: basal rate per step (U/h).
        bolus_u: bolus insulin per step (U).
        carbs_g: carbohydrates per step (g).
        minutes: minutes since midnight (or any multiple of 1440 plus them) of each step.
    """
    cgm = np.asarray(cgm, dtype=np.float64)
    n = len(cgm)
    rate = np.zeros(n)
    rate[1:] = np.diff(cgm) / STEP_MINUTES
    delta = np.zeros(n)
    k = 30 // STEP_MINUTES
    delta[k:] = cgm[k:] - cgm[:-k]
    bolus = np.asarray(bolus_u, dtype=np.float64)
    carbs = np.asarray(carbs_g, dtype=np.float64)
    angle = 2 * np.pi * (np.asarray(minutes) % 1440) / 1440.0
    cols = [cgm, rate, delta, np.asarray(basal_u_h, dtype=np.float64), bolus, carbs, on_board(bolus, IOB_MINUTES),
            on_board(carbs, COB_MINUTES), np.sin(angle), np.cos(angle)]
    return np.stack(cols, axis=1).astype(np.float32)


@dataclass(frozen=True)
class Series:
    """5-minute series on one grid (what :func:`step_features` takes), and where they came from."""

    start: float  # the first reading's wall-clock time (medinfer.timestamps.parse_wall_clock)
    cgm: np.ndarray
    basal_u_h: np.ndarray
    bolus_u: np.ndarray
    carbs_g: np.ndarray
    minutes: np.ndarray
    imputed: int  # grid steps filled by interpolation
    units: str  # the glucose unit of the file

    def features(self) -> np.ndarray:
        return step_features(self.cgm, self.basal_u_h, self.bolus_u, self.carbs_g, self.minutes)


def _columns(header: list[str], path: Path) -> dict[str, int]:
    found: dict[str, int] = {}
    for i, raw in enumerate(header):
        h = raw.strip().lower()
        key = ("timestamp" if h.startswith(("timestamp", "time", "datetime")) else
               "mgdl" if "glucose" in h and ("mg/dl" in h or "mg_dl" in h) else
               "mmol" if "glucose" in h and "mmol" in h else
               "basal" if "basal" in h else
               "bolus" if "bolus" in h or h.startswith("insulin value") else
               "carbs" if "carb" in h else None)
        if key is not None and key not in found:
            found[key] = i
    if "timestamp" not in found or ("mgdl" not in found) == ("mmol" not in found):
        raise InputError(f"{path} is not a CGM export this reader knows: it needs a 'timestamp' column and ONE glucose "
                         "column ('glucose_mg_dl' or 'glucose_mmol_l'; Dexcom Clarity's names work too); header: "
                         f"{header[:8]}")
    return found


def _number(cell: str, where: str) -> float | None:
    text = cell.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{where}: {text[:30]!r} is not a number") from None
    if not np.isfinite(value) or value < 0:
        raise InputError(f"{where}: {text[:30]!r} is not a finite value >= 0")
    return value


def read_cgm(data: bytes, path: Path) -> Series:
    """The 5-minute series of a CGM export CSV (the module docstring).

    Raises:
        InputError: not UTF-8, no known columns, a cell that is not a timestamp or a number (its line named), a
            ``High`` reading, no basal rate at the start, readings out of time order, or a gap longer than
            :data:`MAX_GAP_MINUTES` (its times named).
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is not UTF-8 text: {exc}") from None
    rows = list(csv.reader(io.StringIO(text)))
    if len(rows) < 2:
        raise InputError(f"{path} holds no CGM rows")
    col = _columns(rows[0], path)
    glucose_col, scale = (col["mgdl"], 1.0) if "mgdl" in col else (col["mmol"], MGDL_PER_MMOLL)
    readings: list[tuple[float, float]] = []
    events: list[tuple[float, str, float]] = []
    for line, row in enumerate(rows[1:], start=2):
        if not row or not any(c.strip() for c in row):
            continue
        where = f"{path}, line {line}"
        cells = row + [""] * (len(rows[0]) - len(row))
        try:
            when = parse_wall_clock(cells[col["timestamp"]])
        except ValueError:
            raise InputError(f"{where}: {cells[col['timestamp']][:30]!r} is not an ISO 8601 timestamp") from None
        g = cells[glucose_col].strip()
        if g.lower() == "low":
            readings.append((when, LOW_MGDL))
        elif g.lower() == "high":
            raise InputError(f"{where}: the sensor read 'High' (above its range; the value is unknown), so no forecast "
                             "can be made from this window")
        elif g:
            value = _number(g, where)
            readings.append((when, float(value) * scale))  # type: ignore[arg-type]
        for key in ("basal", "bolus", "carbs"):
            if key in col:
                value = _number(cells[col[key]], f"{where}, column {rows[0][col[key]]!r}")
                if value is not None:
                    events.append((when, key, value))
    return _grid(readings, events, path, "mg/dL" if "mgdl" in col else "mmol/L")


def _grid(readings: list[tuple[float, float]], events: list[tuple[float, str, float]], path: Path,
          units: str) -> Series:
    if len(readings) < 2:
        raise InputError(f"{path} holds {len(readings)} glucose reading(s); a forecast needs a series")
    times = [t for t, _ in readings]
    if any(b < a for a, b in zip(times, times[1:])):
        raise InputError(f"{path}: the glucose readings are not in time order")
    start = times[0]

    def step_of(t: float) -> int:
        return int(round((t - start) / 60.0 / STEP_MINUTES))

    n = step_of(times[-1]) + 1
    cgm = np.full(n, np.nan)
    for t, v in readings:
        cgm[step_of(t)] = v
    missing = np.flatnonzero(np.isnan(cgm))
    limit = MAX_GAP_MINUTES // STEP_MINUTES - 1  # missing steps between two readings at most MAX_GAP_MINUTES apart
    if len(missing):
        runs = np.split(missing, np.flatnonzero(np.diff(missing) > 1) + 1)
        longest = max(runs, key=len)
        if len(longest) > limit:
            a, b = int(longest[0]) - 1, int(longest[-1]) + 1
            raise InputError(f"{path}: no glucose reading for {(b - a) * STEP_MINUTES} minutes "
                             f"(after {_at(start, a)}, until {_at(start, b)}); readings at most {MAX_GAP_MINUTES} "
                             "minutes apart are interpolated, longer gaps are refused")
        known = np.flatnonzero(~np.isnan(cgm))
        cgm[missing] = np.interp(missing, known, cgm[known])
    basal = np.full(n, np.nan)
    bolus, carbs = np.zeros(n), np.zeros(n)
    for t, key, value in sorted(events, key=lambda e: e[0]):
        k = step_of(t)
        if key == "basal":
            basal[max(k, 0):] = value  # carried forward until it changes
        elif 0 <= k < n:
            (bolus if key == "bolus" else carbs)[k] += value
    if np.isnan(basal[0]):
        raise InputError(f"{path}: no basal rate (column 'basal_u_h', U/h) at or before the first reading "
                         f"({_at(start, 0)}); the model needs the pump's basal rate")
    minutes = (start % 86400) / 60.0 + STEP_MINUTES * np.arange(n)
    return Series(start, cgm, basal, bolus, carbs, minutes, int(len(missing)), units)


def _at(start: float, step: int) -> str:
    return wall_clock_text(start + 60.0 * STEP_MINUTES * step)


def accepts_cgm(model: Model) -> dict[str, Any] | None:
    """The bundle's ``raw_input`` facts when its input takes these features from a CGM export, else None."""
    spec = model.input_checks[0].spec
    raw = (spec.facts or {}).get(FACT)
    if not isinstance(raw, dict) or raw.get("format") != "cgm_csv" or tuple(spec.names or ()) != FEATURE_NAMES:
        return None
    return raw


def looks_like_cgm(data: bytes) -> bool:
    """Whether a CSV's header names a timestamp and a glucose column (a CGM export, not feature rows)."""
    first = data[:4096].decode("utf-8-sig", errors="replace").splitlines()[:1]
    header = first[0].lower() if first else ""
    return "glucose" in header and "time" in header


def window_for(model: Model, data: bytes, path: Path) -> tuple[list[str], np.ndarray]:
    """``([time of the last reading], (1, T, 10) features)``: the window ``model`` answers on, from a CGM export.

    Raises:
        InputError: the bundle takes no CGM export, too few readings for its window, or as :func:`read_cgm`.
    """
    raw = accepts_cgm(model)
    if raw is None:
        raise InputError(f"{model.name} does not take a CGM export (its input facts declare no raw_input of format "
                         "cgm_csv); give its feature rows instead")
    series = read_cgm(data, path)
    steps = int(raw.get("window_steps", 1))
    feats = series.features()
    if len(feats) < steps:
        raise InputError(f"{path} covers {len(feats)} five-minute steps; {model.name} answers on the last {steps} "
                         f"({steps * STEP_MINUTES} minutes of readings)")
    return [_at(series.start, len(feats) - 1)], feats[-steps:][None]
