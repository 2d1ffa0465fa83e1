"""ChEMBL aryl-sulfonamide activity set (RDKit wheel) → RDKit descriptors, Bemis–Murcko scaffold split."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from typing import Any

import numpy as np

from ..spec import Progress, quiet
from .sources import fetch

ACTIVE_PIC50 = 7.0  # pIC50 >= 7  <=>  IC50 <= 100 nM


def load_activity(sample: int | None = None, seed: int = 0) -> tuple[list[str], list[str], np.ndarray]:
    """SMILES, ChEMBL ids and pIC50 of the 1017 compounds (joined on id), optionally a seeded sample."""
    smi_text = fetch("chembl2321810_smiles").decode("utf-8")
    act_text = fetch("chembl2321810_activity").decode("utf-8")
    activity = {row["Name"]: float(row["Act"]) for row in csv.DictReader(io.StringIO(act_text))}
    smiles, ids, pic50 = [], [], []
    for line in smi_text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1] in activity:
            smiles.append(parts[0])
            ids.append(parts[1])
            pic50.append(activity[parts[1]])
    values = np.asarray(pic50, dtype=np.float64)
    if sample is not None and sample < len(smiles):
        keep = np.sort(np.random.default_rng(seed).choice(len(smiles), size=sample, replace=False))
        smiles = [smiles[i] for i in keep]
        ids = [ids[i] for i in keep]
        values = values[keep]
    return smiles, ids, values


def descriptor_names(exclude: tuple[str, ...] = ()) -> list[str]:
    from rdkit.Chem import Descriptors

    return [name for name, _ in Descriptors.descList if name not in exclude]


def featurize(smiles: list[str], names: list[str], progress: Progress = quiet) -> np.ndarray:
    """RDKit descriptors in the order of ``names`` (float64; NaN where RDKit cannot compute one).

    Raises:
        ValueError: a SMILES string RDKit cannot parse (named in the message).
    """
    from rdkit import Chem, RDLogger
    from rdkit.Chem import Descriptors
    from tqdm.auto import tqdm

    RDLogger.DisableLog("rdApp.*")
    fns = dict(Descriptors.descList)
    out = np.empty((len(smiles), len(names)), dtype=np.float64)
    progress(f"computing {len(names)} RDKit descriptors for {len(smiles)} molecules")
    for i, smi in enumerate(tqdm(smiles, desc="descriptors", unit="mol", leave=False, mininterval=0.5)):
        mol = Chem.MolFromSmiles(smi)
        if mol is None:
            raise ValueError(f"RDKit cannot parse SMILES #{i}: {smi!r}")
        for j, name in enumerate(names):
            try:
                out[i, j] = fns[name](mol)
            except (ValueError, ZeroDivisionError, OverflowError):
                out[i, j] = np.nan
    return out


def scaffold_split(smiles: list[str], test_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Deterministic Bemis–Murcko scaffold split: whole scaffold groups, largest first, fill the train set.

    The test set then holds scaffolds never seen in training (a harder, more honest estimate than a random
    split of close analogues).
    """
    from rdkit import Chem
    from rdkit.Chem.Scaffolds import MurckoScaffold

    groups: dict[str, list[int]] = defaultdict(list)
    for i, smi in enumerate(smiles):
        groups[MurckoScaffold.MurckoScaffoldSmiles(mol=Chem.MolFromSmiles(smi))].append(i)
    ordered = sorted(groups.values(), key=lambda g: (-len(g), g[0]))
    n_train_target = int(round((1.0 - test_fraction) * len(smiles)))
    train: list[int] = []
    test: list[int] = []
    for group in ordered:
        (train if len(train) + len(group) <= n_train_target else test).extend(group)
    train_scaffolds = sum(1 for g in ordered if g[0] in set(train))
    info = {
        "method": "Bemis-Murcko scaffold split (RDKit MurckoScaffoldSmiles), largest scaffold groups to train",
        "test_fraction": test_fraction,
        "n_scaffolds": len(groups),
        "n_train_scaffolds": train_scaffolds,
        "n_test_scaffolds": len(groups) - train_scaffolds,
        "scaffold_overlap": 0,
    }
    return np.array(sorted(train)), np.array(sorted(test)), info
