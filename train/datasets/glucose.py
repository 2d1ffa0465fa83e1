"""Virtual type-1 diabetes patients from simglucose (UVA/Padova simulator): simulated days → LSTM windows.

Each of the 30 virtual patients (adolescent/adult/child #001-#010) lives ``days`` simulated days with a seeded
random meal scenario, a Guardian RT CGM sensor (5-min samples, seeded noise), an Insulet pump and simglucose's
basal-bolus controller. Runs are deterministic given the seeds and cached as .npz (``$MEDINFER_DATA/simglucose``).

Per 5-minute step the model sees FEATURES (name, unit) below; the target is the simulated blood glucose
30 minutes (6 steps) after the last step of a window.
"""

from __future__ import annotations

import json
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from medinfer.errors import DataFetchError
from medinfer.integrity import sha256_bytes
from medinfer.tools.cgm import COB_MINUTES, IOB_MINUTES
from medinfer.tools.cgm import STEP_MINUTES as STEP_MIN

from ..spec import Progress, quiet
from .sources import Source, cache_dir, fetch, register_source

PARAMS = register_source(Source(
    name="simglucose_vpatients", package="simglucose", version="0.2.11",
    member="simglucose/params/vpatient_params.csv",
    sha256="662f3b684d160fdf485edd1d7196dd1cd85c14b53650b030fdb86aaa05bb2e50",
    licence="MIT",
    citation="Man C. D. et al., The UVA/PADOVA Type 1 Diabetes Simulator, J Diabetes Sci Technol 8:26 (2014); "
             "Xie J., simglucose v0.2.1 (2018), https://github.com/jxx123/simglucose",
    description="parameters of the 30 virtual patients; runs simulated here with seeded scenarios and sensors",
))


def params_source() -> Source:
    """The simulator's patient parameters, verified against the pinned sha256, and the installed simglucose
    checked to BE the pinned version (the runs come from the installed simulator).

    Raises:
        DataFetchError: the file does not verify, or another simglucose version is installed.
    """
    fetch(PARAMS.name)
    try:
        installed = metadata.version("simglucose")
    except metadata.PackageNotFoundError:
        installed = None
    if installed != PARAMS.version:
        raise DataFetchError(
            f"glucose_lstm simulates with the installed simglucose, which is {installed or 'not installed'}, but "
            f"the pinned source is simglucose=={PARAMS.version}: pip install 'simglucose=={PARAMS.version}'"
        )
    return PARAMS

# STEP_MIN (Guardian RT samples every 5 minutes) and the on-board decays IOB_MINUTES, COB_MINUTES are the device
# CGM reader's (medinfer.tools.cgm, imported above): one home for the feature computation.

HORIZON_STEPS = 6  # 30 minutes ahead
COHORTS = ("adolescent", "adult", "child")
PATIENTS = tuple(f"{c}#{i:03d}" for i in range(1, 11) for c in COHORTS)  # interleaved: a sample spans cohorts
TEST_IDS = (8, 9, 10)  # patients #008-#010 of each cohort are held out (never trained on)
FEATURES: tuple[tuple[str, str, str], ...] = (
    ("cgm", "mg/dL", "CGM reading (Guardian RT model, 5-min)"),
    ("cgm_rate", "mg/dL/min", "CGM change over the last step, per minute"),
    ("cgm_delta_30min", "mg/dL", "CGM now minus CGM 30 minutes earlier (0 while unknown)"),
    ("basal_insulin", "U/h", "basal insulin rate delivered by the pump"),
    ("bolus_insulin", "U", "bolus insulin delivered during the step"),
    ("carbohydrates", "g", "carbohydrates eaten during the step"),
    ("insulin_on_board", "U", f"bolus insulin still active (linear decay over {IOB_MINUTES} min)"),
    ("carbs_on_board", "g", f"carbohydrates not yet absorbed (linear decay over {COB_MINUTES} min)"),
    ("time_of_day_sin", "1", "sin(2 pi minutes-since-midnight / 1440)"),
    ("time_of_day_cos", "1", "cos(2 pi minutes-since-midnight / 1440)"),
)
FEATURE_NAMES = tuple(f[0] for f in FEATURES)
# What each feature can physically be (enforced per feature by the runtime, the offending feature named):
# the Guardian RT sensor model of simglucose reads 39..600 mg/dL (simglucose/params/sensor_params.csv), so a 5-min
# step moves it by at most (600 - 39) / 5 mg/dL/min and 30 minutes by at most 561 mg/dL; insulin pumps deliver at
# most 30 U/h basal and 30 U per bolus (Insulet Omnipod limits); carbohydrates and on-board amounts are bounded
# generously above any meal; time of day is a sine/cosine.
SENSOR_MIN, SENSOR_MAX = 39.0, 600.0
FEATURE_RANGES: tuple[tuple[float, float], ...] = (
    (SENSOR_MIN, SENSOR_MAX),
    (-(SENSOR_MAX - SENSOR_MIN) / STEP_MIN, (SENSOR_MAX - SENSOR_MIN) / STEP_MIN),
    (-(SENSOR_MAX - SENSOR_MIN), SENSOR_MAX - SENSOR_MIN),
    (0.0, 30.0),
    (0.0, 30.0),
    (0.0, 500.0),
    (0.0, 300.0),
    (0.0, 1000.0),
    (-1.0, 1.0),
    (-1.0, 1.0),
)

# Where the simulator stops describing a person: simglucose's own gym environment ends an episode when blood glucose
# leaves 10..600 mg/dL (simglucose.simulation.env.T1DSimEnv.step: ``done = BG < 10 or BG > 600``), but SimObj runs
# on, and a virtual patient below 10 mg/dL falls to about 0 and stays there (child#008 of the shipped runs, from
# hour 13): no living person's value, and no rescue (glucose, glucagon) in the model. Each run is therefore stopped
# at its first step outside this range, as simglucose's environment would; values inside it are kept, including
# severe lows of 10..39 mg/dL that the virtual patient recovers from (the CGM then reads its floor, 39).
SIM_BG_RANGE = (10.0, 600.0)


def stop_outside_model_range(run: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
    """``run`` up to (not including) its first step whose blood glucose leaves :data:`SIM_BG_RANGE`, and the
    number of steps dropped (0: the whole run stays)."""
    lo, hi = SIM_BG_RANGE
    outside = np.flatnonzero((run["bg"] < lo) | (run["bg"] > hi))
    if not len(outside):
        return run, 0
    end = int(outside[0])
    return {k: v[:end] for k, v in run.items()}, len(run["bg"]) - end


def _settings(days: float, seed: int) -> dict[str, Any]:
    return {"days": days, "seed": seed, "sensor": "GuardianRT", "pump": "Insulet", "controller": "BBController",
            "scenario": "RandomScenario", "start": "2024-01-01T00:00", "simglucose": metadata.version("simglucose")}


def patient_seed(patient: str, seed: int) -> int:
    return seed * 1000 + PATIENTS.index(patient)


def simulate(patient: str, days: float, seed: int) -> dict[str, np.ndarray]:
    """One virtual patient's run: minutes, CGM, BG (mg/dL), CHO (g/min), insulin (U/min) per 5-min step."""
    from datetime import datetime, timedelta

    logging.getLogger("simglucose").setLevel(logging.WARNING)
    from simglucose.actuator.pump import InsulinPump
    from simglucose.controller.basal_bolus_ctrller import BBController
    from simglucose.patient.t1dpatient import T1DPatient
    from simglucose.sensor.cgm import CGMSensor
    from simglucose.simulation.env import T1DSimEnv
    from simglucose.simulation.scenario_gen import RandomScenario
    from simglucose.simulation.sim_engine import SimObj

    s = patient_seed(patient, seed)
    start = datetime(2024, 1, 1, 0, 0, 0)
    env = T1DSimEnv(T1DPatient.withName(patient), CGMSensor.withName("GuardianRT", seed=s),
                    InsulinPump.withName("Insulet"), RandomScenario(start_time=start, seed=s))
    # simglucose's sim() helper crashes with path=None; SimObj + simulate() + results() works.
    run = SimObj(env, BBController(), timedelta(minutes=int(round(days * 1440))), animate=False, path=None)
    run.simulate()
    df = run.results()
    minutes = ((df.index - df.index[0]).total_seconds() / 60.0).to_numpy()
    return {"minutes": minutes.astype(np.float64), "cgm": df["CGM"].to_numpy(np.float64),
            "bg": df["BG"].to_numpy(np.float64), "cho": df["CHO"].to_numpy(np.float64),
            "insulin": df["insulin"].to_numpy(np.float64)}


def _cache_path(patient: str, days: float, seed: int) -> Path:
    key = sha256_bytes(json.dumps({**_settings(days, seed), "patient": patient}, sort_keys=True).encode())
    return cache_dir() / "simglucose" / f"{patient.replace('#', '_')}-{key[:16]}.npz"


def _finite_rows(run: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """simglucose's last row has no action yet (CHO and insulin are NaN): keep only complete steps."""
    ok = np.logical_and.reduce([np.isfinite(v) for v in run.values()])
    return {k: v[ok] for k, v in run.items()}


def _run_cached(args: tuple[str, float, int]) -> dict[str, np.ndarray]:
    patient, days, seed = args
    path = _cache_path(patient, days, seed)
    if path.is_file():
        with np.load(path, allow_pickle=False) as npz:
            return _finite_rows({k: npz[k] for k in npz.files})
    run = simulate(patient, days, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part.npz")
    np.savez_compressed(tmp, **run)
    tmp.replace(path)
    return _finite_rows(run)


def simulate_many(patients: list[str], days: float, seed: int, workers: int = 1,
                  progress: Progress = quiet) -> dict[str, dict[str, np.ndarray]]:
    """Runs of several patients (cached; missing ones simulated in ``workers`` processes, with a progress bar)."""
    from tqdm.auto import tqdm

    missing = [p for p in patients if not _cache_path(p, days, seed).is_file()]
    if missing:
        progress(f"simulating {len(missing)} virtual patients x {days:g} days with simglucose "
                 f"({workers} worker{'s' if workers > 1 else ''}; cached in {cache_dir() / 'simglucose'})")
    runs: dict[str, dict[str, np.ndarray]] = {}
    jobs = [(p, days, seed) for p in patients]
    with tqdm(total=len(jobs), desc="simglucose", unit="patient", leave=False, mininterval=0.5) as bar:
        if workers > 1 and len(missing) > 1:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for job, run in zip(jobs, pool.map(_run_cached, jobs)):
                    runs[job[0]] = run
                    bar.update(1)
        else:
            for job in jobs:
                runs[job[0]] = _run_cached(job)
                bar.update(1)
    return runs


def features(run: dict[str, np.ndarray]) -> np.ndarray:
    """The (steps, 10) feature matrix of one run, in FEATURES order (float32), computed by the device's own CGM
    reader (:func:`medinfer.tools.cgm.step_features`: one computation for training and devices)."""
    from medinfer.tools.cgm import step_features

    cgm, cho, insulin, minutes = run["cgm"], run["cho"], run["insulin"], run["minutes"]
    basal_rate = float(np.median(insulin))  # U/min; the controller's basal is constant per patient
    bolus = np.clip(insulin - basal_rate, 0.0, None) * STEP_MIN  # U per step
    carbs = cho * STEP_MIN  # g per step
    return step_features(cgm, np.full(len(cgm), basal_rate * 60.0), bolus, carbs, minutes)


def windows(run: dict[str, np.ndarray], seq_len: int, stride: int = 1
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sliding windows of one run: X (n, seq_len, 10), target BG 30 min after each window's last step,
    persistence forecast (last CGM) and the minute of each window's last step."""
    feats = features(run)
    last = np.arange(seq_len - 1, len(feats) - HORIZON_STEPS, stride)
    X = np.stack([feats[i - seq_len + 1:i + 1] for i in last]) if len(last) else np.empty((0, seq_len, 10))
    return (X.astype(np.float32), run["bg"][last + HORIZON_STEPS].astype(np.float32),
            run["cgm"][last].astype(np.float32), run["minutes"][last])


def split_patients(patients: list[str]) -> tuple[list[str], list[str]]:
    """Train / test patients: #008-#010 of each cohort are test; a small sample keeps >= 1 patient on each side."""
    test = [p for p in patients if int(p.split("#")[1]) in TEST_IDS]
    train = [p for p in patients if p not in test]
    if not test or not train:  # a sample of the first few patients: hold out the last one
        train, test = patients[:-1], patients[-1:]
    return train, test


def default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))
