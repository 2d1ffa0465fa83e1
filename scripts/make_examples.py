"""Write examples/: one small sample input per model, in the formats ``medinfer predict`` reads, and the sample
bundle a newcomer gets a prediction from without training anything. Needs [train] (rdkit, anndata, simglucose).
Every input is made here from pinned data (sha256-checked) or written out in this file, with fixed seeds:

- ``drug_activity_rf.csv``: 216 RDKit descriptors (a ``molecule`` id column first), computed with the spec's own
  featurizer, of three held-out molecules of the training series (two active, one inactive; ChEMBL, CC BY-SA 3.0:
  this file is under that licence too) and of celecoxib, a marketed aryl sulfonamide outside the series (flagged
  out of domain); their SMILES in ``drug_activity_rf.smi``;
- ``gene_expression_svd.csv`` (+ ``.npy`` for Python): five held-out cells of 10x PBMC 68k (scanpy's copy, BSD-3),
  a ``cell`` id column (their barcodes) and the 765 genes in the manifest's order;
- ``clinical_notes_tfidf.json``: four short chest X-ray reports written for this file (no patient, no licence
  beyond the repository's);
- ``glucose_lstm.json``: two 2-hour windows (24 steps x 10 features: the night, and the one with most
  carbohydrates on board) of a simulated held-out virtual patient (simglucose, MIT), the format the CLI reads
  today;
- ``sample-bundle/gene_expression_svd``: the spec trained and exported exactly as the tests' ``built`` fixture does
  (``spec.test_sample``, ``spec.test_options``: all 700 cells), with its provenance in ``sample-bundle.json``.

The CT slice is not copied: pydicom's CT_small.dcm carries no licence statement of its own (pydicom's test-file
notes say the files are used "believing there is no restriction"), so ``examples/get_ct_slice.py`` writes it from
the installed pydicom instead.

    .venv/bin/python scripts/make_examples.py              # inputs and the sample bundle
    .venv/bin/python scripts/make_examples.py --inputs     # inputs only
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SAMPLE_MODEL = "gene_expression_svd"
# An aryl sulfonamide among marketed drugs, outside the training series (its structure as published).
DRUGS = {"celecoxib": "Cc1ccc(-c2cc(C(F)(F)F)nn2-c2ccc(S(N)(=O)=O)cc2)cc1"}
NOTES = [
    "The lungs are clear. No pleural effusion or pneumothorax. Heart size is normal. No acute cardiopulmonary "
    "abnormality.",
    "Right lower lobe consolidation, compatible with pneumonia. Small right pleural effusion. Follow-up "
    "radiograph recommended after treatment.",
    "Stable mild cardiomegaly. Mild pulmonary vascular congestion without overt edema. Degenerative changes of the "
    "thoracic spine.",
    "Normal chest. Clear lungs, normal mediastinal contour, no focal airspace disease.",
]
GLUCOSE_PATIENT = "adult#009"  # held out by every glucose_lstm build (#008-#010 of each cohort)


def _number(value: float) -> str:
    return format(float(np.float32(value)), ".9g")  # round-trips float32 exactly


def _csv(path: Path, id_name: str, ids: list[str], names: list[str], rows: np.ndarray) -> None:
    lines = [",".join([id_name, *names])]
    lines += [",".join([i, *(_number(v) for v in row)]) for i, row in zip(ids, rows)]
    path.write_text("\n".join(lines) + "\n")


def drugs() -> None:
    from medinfer.train.datasets import chembl
    from medinfer.train.specs.drug_activity_rf import EXCLUDED

    smiles, ids, pic50 = chembl.load_activity()
    _, test, _ = chembl.scaffold_split(smiles)  # the spec's split: held-out molecules of the series, two active ...
    active = [i for i in test if pic50[i] >= chembl.ACTIVE_PIC50][:2]
    inactive = [i for i in test if pic50[i] < chembl.ACTIVE_PIC50][:1]
    chosen = {ids[i]: smiles[i] for i in active + inactive} | DRUGS  # ... one inactive, and a drug outside it
    names = chembl.descriptor_names(EXCLUDED)
    x = chembl.featurize(list(chosen.values()), names)
    _csv(EXAMPLES / "drug_activity_rf.csv", "molecule", list(chosen), names, x)
    (EXAMPLES / "drug_activity_rf.smi").write_text("".join(f"{s} {n}\n" for n, s in chosen.items()))


def genes() -> None:
    from medinfer.train.datasets import genes as data

    expr = data.load()
    _, test, _ = data.split(expr.y, seed=0)  # the spec's split: these cells are held out of the sample bundle
    pick = test[:5]
    x = expr.X[pick].astype(np.float32)
    _csv(EXAMPLES / "gene_expression_svd.csv", "cell", [expr.cells[i] for i in pick], list(expr.genes), x)
    np.save(EXAMPLES / "gene_expression_svd.npy", x)


def notes() -> None:
    (EXAMPLES / "clinical_notes_tfidf.json").write_text(json.dumps(NOTES, indent=1) + "\n")


def glucose() -> None:
    from medinfer.train.datasets import glucose as data

    run, _ = data.stop_outside_model_range(data.simulate_many([GLUCOSE_PATIENT], 0.5, seed=0)[GLUCOSE_PATIENT])
    x, _, _, _ = data.windows(run, 24, 24)
    if not np.isfinite(x).all() or len(x) < 2:
        raise SystemExit("make_examples: the simulated glucose windows are incomplete")
    meal = int(np.argmax(x[:, :, data.FEATURE_NAMES.index("carbs_on_board")].max(axis=1)))
    pick = [0, meal] if meal else [0, 1]  # a quiet night and the window with the most carbohydrates on board
    windows = [[[float(format(float(v), ".6g")) for v in step] for step in x[i]] for i in pick]
    (EXAMPLES / "glucose_lstm.json").write_text(json.dumps(windows) + "\n")
    cgm_export(run, data)


CGM_START = "2026-03-01T00:00:00"  # the simulation's minute 0, as a pump/CGM export would date it
CGM_STEPS = 72  # six hours of readings: the on-board insulin and carbohydrates need history before the window


def cgm_export(run: dict[str, np.ndarray], data: Any) -> None:
    """The same simulated patient as a CGM/pump export CSV (the raw input medinfer.tools.cgm reads): six hours up to
    an hour after the first meal, one row per 5-minute reading, the basal rate where it is set, boluses and
    carbohydrates where they happened, one reading left out (a 10-minute gap, interpolated by the reader)."""
    from medinfer.timestamps import parse_wall_clock, utc_text

    start = parse_wall_clock(CGM_START)
    basal = float(np.median(run["insulin"]))
    bolus = np.clip(run["insulin"] - basal, 0.0, None) * data.STEP_MIN
    carbs = run["cho"] * data.STEP_MIN
    meals = np.flatnonzero(carbs > 0.05)
    hi = min(len(run["cgm"]), (int(meals[0]) + 13) if len(meals) else CGM_STEPS)  # an hour after the first meal
    lo = max(0, hi - CGM_STEPS)
    lines = ["timestamp,glucose_mg_dl,basal_u_h,bolus_u,carbs_g"]
    for i in range(lo, hi):
        if i == lo + CGM_STEPS // 2:
            continue  # a missed reading
        when = utc_text(start + 60 * float(run["minutes"][i]))[:-1]  # the export's wall-clock time, no zone
        cells = [when, f"{run['cgm'][i]:.1f}", f"{basal * 60:.3f}" if i == lo else "",
                 f"{bolus[i]:.2f}" if bolus[i] > 0.005 else "", f"{carbs[i]:.1f}" if carbs[i] > 0.05 else ""]
        lines.append(",".join(cells))
    (EXAMPLES / "glucose_lstm_cgm.csv").write_text("\n".join(lines) + "\n")


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()


def sample_bundle(commit: str, clean: bool) -> None:
    """The sample bundle, built with the tests' recipe, and its provenance (the commit and whether the tree was
    clean when the script started)."""
    from medinfer.export.bundle import export
    from medinfer.timestamps import utc_text
    from medinfer.train import artifact, registry

    spec = registry.get(SAMPLE_MODEL)
    out = EXAMPLES / "sample-bundle"
    shutil.rmtree(out / SAMPLE_MODEL, ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        art = artifact.train(SAMPLE_MODEL, Path(tmp) / "artifacts", sample=spec.test_sample, **spec.test_options)
        export(art, out)

    from medinfer.tools.fingerprint import cpu

    provenance = {
        "bundle": f"examples/sample-bundle/{SAMPLE_MODEL}",
        "made_by": "scripts/make_examples.py (the recipe of tests/conftest.py's built fixture: spec.test_sample, "
                   "spec.test_options)",
        "command": ".venv/bin/python scripts/make_examples.py",
        "commit": commit, "tree_clean": clean,
        "made": utc_text(),
        "python": platform.python_version(), "cpu": cpu().get("model"),
        "note": "Not a published model: a sample for the first screen of README.md. Rebuilt on another machine, "
                "its files differ in recorded floats and times; its predictions agree within the spec's tolerance "
                "(tests/docs/test_examples.py).",
    }
    (EXAMPLES / "sample-bundle.json").write_text(json.dumps(provenance, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--inputs", action="store_true", help="write the sample inputs only (no sample bundle)")
    args = parser.parse_args(argv)
    commit, clean = _git("rev-parse", "HEAD"), _git("status", "--porcelain") == ""
    EXAMPLES.mkdir(exist_ok=True)
    for step in (drugs, genes, notes, glucose):
        step()
        print(f"examples: {step.__name__} written", file=sys.stderr)
    if not args.inputs:
        sample_bundle(commit, clean)
        print(f"examples: sample-bundle/{SAMPLE_MODEL} built", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
