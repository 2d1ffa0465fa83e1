"""Glucose forecast 30 minutes ahead — the seed's stacked LSTM (3 x 64) (seed section "治疗方案建议").

Data: simglucose virtual type-1 patients (UVA/Padova simulator), seeded random meals, basal-bolus therapy;
split by patient. Input: (N, T, 10) — any number of 5-minute steps T (the time axis stays dynamic in the ONNX
graph); the 10 features per step are documented with units in the manifest. Output: blood glucose in mg/dL
30 minutes after the last step. A forecast for decision support, never a dosing instruction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from medinfer.codings import RESULT_CODES, Coding, Codings, FhirResult
from medinfer.manifest import Card, SessionProfile, TensorSpec

from .. import clarke, domain, domain_rules
from ..corruptions import with_cgm
from ..datasets import glucose
from ..domain import DomainGuard, Part, Shift
from ..families import KerasSpec, deterministic_keras
from ..metrics import regression_metrics
from ..registry import register
from ..spec import Dataset, OperatingPoint, ParityTolerance, Progress, quiet

# The envelope of the per-feature physical ranges (glucose.FEATURE_RANGES, enforced per feature by the runtime).
FEATURE_RANGE = (min(lo for lo, _ in glucose.FEATURE_RANGES), max(hi for _, hi in glucose.FEATURE_RANGES))
LONG_STEPS = 288  # one simulated day: the longest parity sequence
# Plausibility rules of the domain guard (per window, refused whatever the threshold): a type-1 diabetes day is
# typically 0.5-1 U/kg of insulin and a large meal 100-200 g of carbohydrates; one maximal pump bolus (30 U) plus a
# correction within an hour, or more than 300 g of carbohydrates within an hour, or a basal rate above 10 U/h (240
# U/day) is beyond any therapy this forecaster describes (training windows: at most 24 U and 106 g per hour, basal
# 0.3-1.7 U/h).
BOLUS_PER_HOUR = 35.0
CARBS_PER_HOUR = 300.0
BASAL_MAX = 10.0


@register
class GlucoseLSTM(KerasSpec):
    name = "glucose_lstm"
    version = "1.0.0"
    task = "regression"
    description = (
        "Forecasts blood glucose (mg/dL) 30 minutes ahead from a sequence of 5-minute CGM, insulin and "
        "carbohydrate features, with the seed's stacked LSTM. Trained on simglucose virtual patients."
    )
    seed_section = ("治疗方案建议 (treatment support): the seed's LSTM(64) x 3 + Dense(1), input (None, 10); "
                    "the Dense output is the change from the last CGM value")
    parity = ParityTolerance(atol=1e-3, rtol=1e-5)
    profile = SessionProfile(intra_op_num_threads=1, inter_op_num_threads=1, allow_spinning=False)
    score_output = "glucose_30min"
    explain = {
        "method": "masking", "explains": "forecast",
        "groups": {"glucose": ["cgm", "cgm_rate", "cgm_delta_30min"],
                   "insulin": ["basal_insulin", "bolus_insulin", "insulin_on_board"],
                   "carbs": ["carbohydrates", "carbs_on_board"],
                   "time of day": ["time_of_day_sin", "time_of_day_cos"]},
        "events": ["bolus_insulin", "carbohydrates"],
        "can_tell": "which past 5-minute steps and which inputs (glucose, insulin, carbohydrates) the forecast "
                    "depends on: the change in mg/dL when one is masked",
        "cannot_tell": "what would happen if therapy changed (a masked input is not a counterfactual dose), effects "
                       "that need two inputs masked together, or physiology the simulator lacks",
    }
    label_output = None
    # A FORECAST, coded locally: no LOINC code describes a predicted glucose value (2339-0 and its siblings are
    # measurements).
    codings = Codings(fhir=FhirResult(
        "Observation", Coding(RESULT_CODES, "glucose-forecast", "Blood glucose FORECAST (model output, not a "
                              "measurement)"), value="forecast"))
    card = Card(
        summary=(
            "Stacked-LSTM forecast of blood glucose 30 minutes ahead for people with type-1 diabetes on "
            "basal-bolus therapy. The output is a FORECAST FOR DECISION SUPPORT, NOT A DOSING INSTRUCTION."
        ),
        intended_use=(
            "Decision support: showing a clinician or a person with diabetes where glucose is heading in the next "
            "30 minutes, next to the CGM trace, e.g. to anticipate a low. A human decides what, if anything, to do."
        ),
        out_of_scope=(
            "Dosing: the forecast must never set or change an insulin dose, bolus or basal rate automatically.",
            "Closed-loop control or alarms without independent validation on real patient data.",
            "Type-2 diabetes, pregnancy, intensive care, or CGM sensors sampling at other than 5-minute steps.",
        ),
        limitations=(
            "Trained and evaluated on SIMULATED patients (simglucose UVA/Padova model, basal-bolus controller, "
            "random meal scenarios): real physiology, exercise, illness, sensor faults and missed boluses are absent.",
            "Held-out patients are virtual patients #008-#010 of each cohort; metrics on real people will be worse.",
            "A simulated run stops at its first step with blood glucose outside 10-600 mg/dL, where simglucose's own "
            "environment ends an episode (below 10 mg/dL a virtual patient falls to about 0 and stays, with no "
            "rescue in the model); the runs stopped are named under Training data. Severe lows of 10-39 mg/dL that "
            "the virtual patient recovers from are kept as targets and in the Clarke grid, while the CGM input "
            "reads its floor of 39 mg/dL there (the runtime refuses CGM below 39, as the sensor cannot report it).",
            "Bootstrap CIs resample overlapping windows of few patients and are therefore optimistic.",
            "The domain guard flags a window more than half of whose CGM readings sit at the sensor's floor (39) or "
            "ceiling (600): a dead sensor looks like that, and so does a long severe low the sensor cannot measure "
            "(such windows get a flag, not a confident forecast).",
            "Features must be computed exactly as documented in the manifest (units, 5-minute steps, decays).",
        ),
        ethical_considerations=(
            "No personal data: virtual patients only (simglucose, MIT).",
            "A wrong forecast could mislead treatment: always display it as a forecast next to measured values.",
        ),
    )
    test_sample: ClassVar[int | None] = 3  # virtual patients (one per cohort)
    test_options: ClassVar[dict[str, Any]] = {"days": 0.25, "epochs": 1, "seq_len": 12}

    # -- options (``--set key=value``) ----------------------------------------------------------------------
    options: ClassVar[tuple[str, ...]] = KerasSpec.options + ("days", "seq_len", "test_stride", "workers",
                                                              "learning_rate")
    epochs = 10
    batch_size = 32
    days = 2.0  # simulated days per virtual patient
    seq_len = 24  # training window: 2 hours of 5-minute steps
    test_stride = 3  # held-out windows every 15 minutes
    workers = 0  # simulation processes (0: up to 2)
    learning_rate = 1e-3

    def load_data(self, *, sample: int | None = None, seed: int = 0, progress: Progress = quiet) -> Dataset:
        patients = list(glucose.PATIENTS[: sample or len(glucose.PATIENTS)])
        train_p, test_p = glucose.split_patients(patients)
        runs = glucose.simulate_many(patients, float(self.days), seed,
                                     int(self.workers) or glucose.default_workers(), progress)
        stopped: dict[str, float] = {}  # patient -> hour at which the run was stopped (glucose.SIM_BG_RANGE)
        for p in patients:
            runs[p], dropped = glucose.stop_outside_model_range(runs[p])
            if dropped:
                stopped[p] = round(len(runs[p]["bg"]) * glucose.STEP_MIN / 60.0, 2)
                progress(f"{p}: blood glucose leaves {glucose.SIM_BG_RANGE[0]:g}..{glucose.SIM_BG_RANGE[1]:g} mg/dL "
                         f"after {stopped[p]:g} h; the run stops there ({dropped} steps dropped)")
        lo, hi = glucose.SIM_BG_RANGE
        stop_note = (f"runs stopped where simulated blood glucose left {lo:g}-{hi:g} mg/dL (simglucose's own end of an "
                     "episode; the virtual patient then falls to about 0 mg/dL): "
                     + (", ".join(f"{p} after {h:g} h" for p, h in stopped.items()) if stopped else "none") + ". ")
        seq = int(self.seq_len)
        parts: dict[str, list[Any]] = {"X": [], "y": [], "persist": []}  # persist: the patient of each window
        for p in train_p:
            X, y, persist, _ = glucose.windows(runs[p], seq, 1)
            parts["X"].append(X)
            parts["y"].append(y)
            parts["persist"].append(np.full(len(y), p))
        test = [glucose.windows(runs[p], seq, int(self.test_stride)) for p in test_p]
        X_train, y_train = np.concatenate(parts["X"]), np.concatenate(parts["y"])
        X_test, y_test = np.concatenate([t[0] for t in test]), np.concatenate([t[1] for t in test])
        long_run = glucose.features(runs[test_p[0]])
        return Dataset(
            X_train=X_train, y_train=y_train, X_test=X_test, y_test=y_test,
            sources=(glucose.params_source().provenance(),),
            split={"method": "by virtual patient (no patient in both train and test)", "group": "virtual patients",
                   "train_patients": train_p,
                   "test_patients": test_p, "n_train_windows": int(len(y_train)), "n_test_windows": int(len(y_test)),
                   "n_test_windows_first_patient": int(len(test[0][1])),
                   "days_per_patient": float(self.days), "seq_len": seq, "test_stride_steps": int(self.test_stride),
                   "stopped_runs_hours": stopped, "simulated_bg_range_mg_dl": list(glucose.SIM_BG_RANGE),
                   "sample": sample, "seed": seed},
            synthetic=True,
            description=(
                f"SIMULATED type-1 diabetes data: {len(patients)} simglucose virtual patients x {self.days:g} days, "
                "seeded random meals, Guardian RT CGM, Insulet pump, basal-bolus controller"
            ),
            preprocessing=(
                stop_note
                + f"5-minute steps; windows of {seq} steps (train stride 1, test stride {self.test_stride}); target "
                "= simulated blood glucose 30 min after the last step; features: "
                + ", ".join(f"{n} [{u}]" for n, u, _ in glucose.FEATURES)
                + "; in the graph: standardisation (training mean/std), then the LSTM predicts the 30-min change "
                "from the last CGM value, which is added back"
            ),
            feature_names=glucose.FEATURE_NAMES,
            facts={"trace_patient": test_p[0]},
            edge=_edge_inputs(long_run, X_train),
            groups={"train": np.concatenate(parts["persist"]),
                    "test": np.concatenate([np.full(len(t[1]), p) for p, t in zip(test_p, test)])},
        )

    def build(self, dataset: Dataset) -> Any:
        import keras
        from keras import layers

        deterministic_keras(int(self.train_seed))
        X, y = np.asarray(dataset.X_train, dtype=np.float64), np.asarray(dataset.y_train, dtype=np.float64)
        flat = X.reshape(-1, X.shape[-1])
        inp = keras.Input((None, len(glucose.FEATURES)), name="x")
        # Standardisation as a fixed diagonal Dense (not keras' Normalization: its constants are eager tensors
        # that tf2onnx turns into extra graph inputs).
        x = layers.Dense(len(glucose.FEATURES), trainable=False, name="standardise")(inp)
        # The seed's network, unchanged.
        x = layers.LSTM(64, return_sequences=True)(x)
        x = layers.LSTM(64, return_sequences=True)(x)
        x = layers.LSTM(64)(x)
        x = layers.Dense(1)(x)
        # The head predicts the change from the last CGM reading (scaled back to mg/dL), which is added back:
        # the output stays absolute glucose, and the forecast starts from persistence instead of the mean.
        change = y - X[:, -1, 0]
        x = layers.Rescaling(scale=float(change.std()), offset=float(change.mean()), name="change_mg_dl")(x)
        out = layers.Add(name="glucose_30min")([x, inp[:, -1, 0:1]])
        model = keras.Model(inp, out, name=self.name)
        std = np.sqrt(np.maximum(flat.var(0), 1e-6))
        model.get_layer("standardise").set_weights([np.diag(1.0 / std).astype(np.float32),
                                                    (-flat.mean(0) / std).astype(np.float32)])
        model.compile(optimizer=keras.optimizers.Adam(float(self.learning_rate)), loss="mse")
        return model

    def inputs(self, dataset: Dataset) -> tuple[TensorSpec, ...]:
        return (
            TensorSpec(
                "x", "float32", ("N", "T", len(glucose.FEATURES)),
                description=(
                    "a sequence of T >= 1 five-minute steps (oldest first, the last step is 'now') with 10 features "
                    f"per step; trained on T = {self.seq_len} (2 hours), any T runs"
                ),
                units="per feature (see facts.features)", range=FEATURE_RANGE, names=glucose.FEATURE_NAMES,
                feature_ranges=glucose.FEATURE_RANGES,
                facts={"features": [{"name": n, "unit": u, "description": d, "range": list(r)}
                                    for (n, u, d), r in zip(glucose.FEATURES, glucose.FEATURE_RANGES)],
                       "feature_ranges_source": "simglucose's Guardian RT sensor model (39..600 mg/dL) and insulin "
                                                "pump limits (30 U/h basal, 30 U bolus); see train/datasets/glucose.py",
                       "step_minutes": glucose.STEP_MIN, "trained_seq_len": int(self.seq_len),
                       "raw_input": raw_input(int(self.seq_len)),
                       "time_axis": "dynamic (T)", "horizon_minutes": glucose.HORIZON_STEPS * glucose.STEP_MIN},
            ),
        )

    def outputs(self) -> tuple[TensorSpec, ...]:
        return (TensorSpec("glucose_30min", "float32", ("N", 1), units="mg/dL",
                           description="forecast blood glucose 30 minutes after the last step (decision support "
                                       "only, not a dosing instruction)"),)

    def evaluate(self, scores: np.ndarray, y: np.ndarray, X: Any, threshold: float | None) -> dict[str, Any]:
        persistence = np.asarray(X)[:, -1, 0]  # the baseline forecast: the last CGM reading of each window
        metrics = regression_metrics(np.asarray(y, np.float64), np.asarray(scores, np.float64),
                                     persistence.astype(np.float64), "persistence (last CGM value)")
        grid = clarke.summary(y, scores, persistence)
        for zone in ("A", "B", "C", "D", "E"):
            metrics["heldout"][f"clarke_{zone}_pct"] = {"value": grid["model"][zone], "ci95": None}
            metrics["baseline"]["heldout"][f"clarke_{zone}_pct"] = {"value": grid["baseline"][zone], "ci95": None}
        return metrics

    # -- applicability domain ---------------------------------------------------------------------------------
    domain_method = ("the largest of: rules (at most 35 U of bolus insulin and 300 g of carbohydrates within any "
                     "hour, basal at most 10 U/h), the Mahalanobis distance of the last LSTM's final hidden state (64 "
                     "units, what the head reads) to the training windows, the share of 5-minute steps where the CGM "
                     "does not change (a stuck sensor) or sits at the sensor's floor or ceiling (a dead sensor), the "
                     "largest CGM step (dropouts, spikes) and how far any feature lies beyond its training range; "
                     "each relative to in-domain data's 99th percentile")

    def domain_features(self, model: Any) -> Any:
        import keras

        head = next(layer for layer in reversed(model.layers) if isinstance(layer, keras.layers.Dense))
        state = keras.Model(model.inputs[0], head.input)

        def features(X: Any) -> dict[str, np.ndarray]:
            X = np.asarray(X, np.float32)
            # Called eagerly in chunks: predict() would retrace for every new batch size and sequence length.
            parts = [np.asarray(state(X[i:i + 512], training=False)) for i in range(0, len(X), 512)]
            return {"input": X, "hidden": np.concatenate(parts) if parts else np.zeros((0, 64), np.float32)}

        return features

    def domain_sources(self, onx: Any) -> dict[str, str]:
        return {"input": onx.graph.input[0].name, "hidden": domain.matmul_input(onx, "glucose_30min")}

    def domain_parts(self, model: Any, dataset: Dataset) -> list[Part]:
        X = np.asarray(dataset.X_train, np.float32)
        return _glucose_parts(self.domain_features(model)(X)["hidden"], X)

    def domain_shifts(self, model: Any, dataset: Dataset, guard: DomainGuard) -> dict[str, Shift]:
        rng = np.random.default_rng(0)
        X = np.asarray(dataset.X_test, np.float32)
        X = X[np.sort(rng.choice(len(X), min(len(X), 400), replace=False))]
        n, steps = X.shape[0], X.shape[1]
        half = steps // 2
        cgm = X[:, :, 0].copy()
        stuck = cgm.copy()
        stuck[:, half:] = cgm[:, half - 1:half]  # the sensor repeats one reading for the last half of the window
        dropout = cgm.copy()
        start = rng.integers(half, steps - 2, n)
        for i, s in enumerate(start):  # 2-4 readings of 0 mg/dL (a lost signal written as zero)
            dropout[i, s:s + int(rng.integers(2, 5))] = 0.0
        spikes = cgm.copy()
        at = rng.integers(1, steps, n)
        spikes[np.arange(n), at] += rng.choice([-1.0, 1.0], n) * rng.uniform(80, 200, n)  # one-reading artefact
        spikes = np.clip(spikes, glucose.SENSOR_MIN, glucose.SENSOR_MAX)
        noisy = np.clip(cgm + rng.normal(0.0, 20.0, cgm.shape), glucose.SENSOR_MIN, glucose.SENSOR_MAX)

        def edit(column: int, value: Any) -> np.ndarray:
            out = X.copy()
            out[:, :, column] = value
            return out

        def shift(kind: str, x: np.ndarray, description: str, role: str, family: str, note: str = "") -> Shift:
            return Shift(kind, guard.score(x), description, role=role, family=family, note=note)

        scaled = X.copy()
        scaled[:, :, [3, 4, 6]] *= 10.0  # insulin in 0.1 U
        scaled[:, :, [3, 4, 6]] = np.minimum(scaled[:, :, [3, 4, 6]], 30.0)  # what the input contract still takes
        shifts = {
            "stuck_sensor": shift("gross", with_cgm(X, stuck), f"held-out windows whose CGM repeats one reading for "
                                  f"the last {steps - half} steps", "design", "sensor faults"),
            "dropout_to_zero": shift("gross", with_cgm(X, dropout), "held-out windows with 2-4 CGM readings of 0 "
                                     "mg/dL (a lost signal; the input contract refuses it first)", "design",
                                     "sensor faults"),
            "spike": shift("gross", with_cgm(X, spikes), "held-out windows with one CGM reading off by 80-200 mg/dL "
                           "(a sensor artefact)", "design", "sensor faults",
                           note="a spike clipped at the sensor's floor or ceiling, or on a fast change, steps no "
                           "further than real readings do"),
            "dead_sensor_39": shift("nonsense", with_cgm(X, np.full_like(cgm, glucose.SENSOR_MIN)),
                                    "held-out windows whose CGM reads its floor (39 mg/dL) at every step", "design",
                                    "dead sensor"),
            "dead_sensor_600": shift("nonsense", with_cgm(X, np.full_like(cgm, glucose.SENSOR_MAX)),
                                     "held-out windows whose CGM reads its ceiling (600 mg/dL) at every step",
                                     "design", "dead sensor"),
            "bolus_30U_every_step": shift("nonsense", edit(4, 30.0), "held-out windows with a 30 U bolus every 5 "
                                          "minutes", "design", "impossible therapy"),
            "carbs_500g_every_step": shift("nonsense", edit(5, 500.0), "held-out windows with 500 g of "
                                           "carbohydrates every 5 minutes", "design", "impossible therapy"),
            "basal_30U_h": shift("nonsense", edit(3, 30.0), "held-out windows with a basal rate of 30 U/h", "design",
                                 "impossible therapy"),
            # evaluation families: held out while choosing the parts
            "noisy_sensor": shift("gross", with_cgm(X, noisy), "held-out windows with N(0, 20 mg/dL) noise on every "
                                  "CGM reading", "evaluation", "sensor noise",
                                  note="noise of 20 mg/dL moves some windows' steps no further than real changes"),
            "insulin_in_tenths": shift("gross", scaled, "held-out windows with insulin (basal, bolus, on board) in "
                                       "0.1 U (x10, capped at the contract's 30)", "evaluation", "units"),
            "time_of_day_garbled": shift("nonsense", edit(8, rng.uniform(-1, 1, (n, steps)).astype(np.float32)),
                                         "held-out windows whose time-of-day sine is random", "evaluation",
                                         "time encoding", note="the guard checks no identity between the sine and "
                                         "cosine of the time of day, and the LSTM state barely depends on them"),
        }
        cohort = self._cohort_shift(model, dataset)
        if cohort is not None:
            shifts["children_adolescents_vs_adults"] = cohort
        return shifts

    def _cohort_shift(self, model: Any, dataset: Dataset) -> Shift | None:
        """A guard refitted on the adults' training windows only: adults' held-out windows are in domain, the
        children's and adolescents' held-out windows the shift. The LSTM itself was trained on all cohorts."""
        train_g, test_g = dataset.groups.get("train"), dataset.groups.get("test")
        if train_g is None or test_g is None:
            return None
        adult_train = np.char.startswith(train_g.astype(str), "adult")
        adult_test = np.char.startswith(test_g.astype(str), "adult")
        if not adult_train.any() or not adult_test.any() or adult_test.all():
            return None
        features = self.domain_features(model)
        X_adults = np.asarray(dataset.X_train, np.float32)[adult_train]
        X_test = np.asarray(dataset.X_test, np.float32)
        refit = DomainGuard(_glucose_parts(features(X_adults)["hidden"], X_adults), self.domain_method,
                            features).calibrate(X_test[adult_test])
        return Shift("subtle", refit.score(X_test[~adult_test]),
                     "held-out children and adolescents against held-out adults, the guard refitted on adults' "
                     "training windows only (the forecaster itself saw every cohort)",
                     inside=refit.score(X_test[adult_test]), role="evaluation", family="age group", synthetic=False,
                     note="children's and adolescents' traces share the shape of adults' (meals, boluses, the same "
                     "controller); only part of them moves the LSTM state beyond adults' spread")

    def parity_sets(self, dataset: Dataset) -> dict[str, np.ndarray]:
        """Edge sets for the parity gate: the longest sequences (a simulated day) and the shortest (T = 1, 2)."""
        edge = np.asarray(dataset.edge, dtype=np.float32)
        return {"edge_longest": edge, "edge_shortest": np.ascontiguousarray(edge[:, -1:, :]),
                "edge_two_steps": np.ascontiguousarray(edge[:, -2:, :])}

    def plots(self, model: Any, dataset: Dataset, folder: Path, point: OperatingPoint) -> dict[str, str]:
        from .. import plots

        pred = self.scores(self.native_outputs(model, dataset.X_test))
        y = np.asarray(dataset.y_test)
        lo, hi = glucose.SIM_BG_RANGE
        out = {f"Clarke error grid (held-out patients; simulated runs stop where blood glucose leaves {lo:g}-{hi:g} "
               "mg/dL, see Limitations)": plots.clarke_grid(
                   y, pred, folder / "clarke.png", title=f"Clarke error grid, {len(y)} held-out forecasts")}
        n = int(dataset.split.get("n_test_windows_first_patient", 0))
        if n:
            stride, seq = int(dataset.split["test_stride_steps"]), int(dataset.split["seq_len"])
            minutes = (seq - 1 + stride * np.arange(n) + glucose.HORIZON_STEPS) * glucose.STEP_MIN
            patient = dataset.split["test_patients"][0]
            out[f"Forecast vs truth, held-out patient {patient}"] = plots.forecast_trace(
                minutes, y[:n], pred[:n], np.asarray(dataset.X_test)[:n, -1, 0], folder / "trace.png",
                title=f"held-out virtual patient {patient}: blood glucose 30 min ahead")
        return out


def _edge_inputs(day: np.ndarray, X_train: np.ndarray) -> np.ndarray:
    """Longest parity sequences: a held-out patient's first simulated day, and the training minima / maxima and the
    physical lower / upper bounds held for a whole day (shorter sequences are cut from these by ``parity_sets``)."""
    steps = min(LONG_STEPS, len(day))
    flat = X_train.reshape(-1, X_train.shape[-1])
    lows = np.array([lo for lo, _ in glucose.FEATURE_RANGES])
    highs = np.array([hi for _, hi in glucose.FEATURE_RANGES])
    rows = [day[:steps], np.tile(flat.min(0), (steps, 1)), np.tile(flat.max(0), (steps, 1)),
            np.tile(lows, (steps, 1)), np.tile(highs, (steps, 1))]
    return np.asarray(rows, dtype=np.float32)


def _glucose_parts(hidden: np.ndarray, X: np.ndarray) -> list[Part]:
    flat = np.asarray(X, np.float64).reshape(-1, X.shape[-1])
    lo, hi = flat.min(axis=0), flat.max(axis=0)
    basal_max = np.full(flat.shape[1], np.inf)
    basal_max[3] = BASAL_MAX
    return [
        # Rules: what no person on insulin therapy takes (pump limits allow more within an hour than physiology):
        domain_rules.window_sum("input", (4, 5), 60 // glucose.STEP_MIN, (BOLUS_PER_HOUR, CARBS_PER_HOUR),
                                f"bolus insulin above {BOLUS_PER_HOUR:g} U or carbohydrates above {CARBS_PER_HOUR:g} "
                                "g within an hour"),
        domain_rules.bound("input", None, basal_max, np.where(np.isfinite(basal_max), basal_max, 1.0),
                           f"basal insulin above {BASAL_MAX:g} U/h", rule=True),
        domain.mahalanobis("hidden", hidden, label="Mahalanobis distance of the LSTM's final hidden state"),
        domain.series_flat("input", 0, "share of steps where the CGM does not change (stuck sensor)",
                           bounds=(glucose.SENSOR_MIN, glucose.SENSOR_MAX)),
        # A sensor pinned at its floor or ceiling for most of a window: a dead sensor, or a low it cannot measure.
        domain_rules.at_bounds("input", 0, glucose.SENSOR_MIN + 0.5, glucose.SENSOR_MAX - 0.5,
                               "share of steps at the sensor's floor or ceiling (dead sensor)", min_scale=0.5),
        # Blood glucose rarely changes faster than 3-4 mg/dL/min; a CGM step larger than any of the training windows
        # (about 7-8 mg/dL/min here) counts as far as the furthest in-domain data at least.
        domain.series_step("input", 0, "largest CGM step (dropout, spike)",
                           min_scale=max(float(np.abs(np.diff(np.asarray(X)[:, :, 0], axis=1)).max(initial=0.0)),
                                         35.0)),
        # Half the training range beyond it: held-out patients exceed the training range by up to ~0.4 of it.
        domain_rules.bound("input", lo, hi, np.maximum(hi - lo, 1e-3), "a feature beyond its training range "
                           "(relative to the range)", min_scale=0.5),
    ]


def raw_input(window_steps: int) -> dict[str, Any]:
    """The manifest's description of the raw input a device may give instead of features: a CGM export, read and
    featurised by :mod:`medinfer.tools.cgm` (the function training computes the features with)."""
    from medinfer.tools import cgm

    return {"format": "cgm_csv", "reader": "medinfer.tools.cgm", "window_steps": window_steps,
            "step_minutes": cgm.STEP_MINUTES, "max_gap_minutes": cgm.MAX_GAP_MINUTES, "gap_policy":
            f"linear interpolation of gaps up to {cgm.MAX_GAP_MINUTES} minutes; longer gaps are refused",
            "glucose_units": ["mg/dL", f"mmol/L (x {cgm.MGDL_PER_MMOLL} mg/dL per mmol/L)"],
            "low_reading_mg_dl": cgm.LOW_MGDL, "high_reading": "refused (above the sensor's range)",
            "columns": "timestamp, glucose_mg_dl | glucose_mmol_l, basal_u_h, bolus_u, carbs_g (Dexcom Clarity's "
                       "names too); see docs/bring-your-own-model.md#raw-inputs"}
