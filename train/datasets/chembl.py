"""ChEMBL aryl-sulfonamide activity set (RDKit wheel) → RDKit descriptors, Bemis–Murcko scaffold split."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from typing import Any

import numpy as np
from medinfer.errors import DatasetError

from ..spec import Progress, quiet
from .sources import Source, fetch, register_source

_CHEMBL_CITATION = (
    "ChEMBL document CHEMBL2321810 (aryl sulfonamide series), as shipped with RDKit Contrib/FreeWilson; "
    "Gaulton A. et al., The ChEMBL database in 2017, Nucleic Acids Res. 45:D945 (2017)"
)

register_source(Source(
    name="chembl2321810_smiles",
    package="rdkit",
    version="2026.9.1",
    member="rdkit/Contrib/FreeWilson/data/CHEMBL2321810.smi",
    sha256="3feff3aa19f16c7a3aa8695acddd442d1fb3d582485bb7fe8754e7b36dc1894f",
    licence="CC BY-SA 3.0 (ChEMBL)",
    citation=_CHEMBL_CITATION,
    description="1017 aryl sulfonamides: SMILES and ChEMBL compound id",
))
register_source(Source(
    name="chembl2321810_activity",
    package="rdkit",
    version="2026.9.1",
    member="rdkit/Contrib/FreeWilson/data/CHEMBL2321810_act.csv",
    sha256="e74db717fa4704befa07eb41ad4845fa437bf3c12eb2b6a854576dbd2e8819fa",
    licence="CC BY-SA 3.0 (ChEMBL)",
    citation=_CHEMBL_CITATION,
    description="pIC50 per compound id (Name, Act)",
))

SOURCES = ("chembl2321810_smiles", "chembl2321810_activity")

# Other chemical series and targets shipped in the same RDKit wheel: shifted data for the applicability-domain guard.
_SHIFTS = {
    "nci_diverse": ("Data/NCI/first_5K.smi", "91e71c015f14939837f2943dcc904f7c87e5a3a0124d82b05c28ad2f23004def",
                    "5000 diverse NCI compounds (the first of the NCI open set)", "public domain (NCI/DTP open set)"),
    "cdk2_ligands": ("Contrib/Fastcluster/testdata/cdk2.sdf",
                     "5b11476d71a589f7e4ae42bbed347eb5e10891756f26469c14bd41a74a93bdf6",
                     "CDK2 ligands (another target)", "BSD-3-Clause (RDKit test data)"),
    "egfr_ligands": ("Contrib/PBF/testData/egfr.sdf",
                     "e57dfc5bd9bfd456cd435b165cfc4f86a992a059859b926ea32579986d1ef236",
                     "EGFR ligands (another target)", "BSD-3-Clause (RDKit test data)"),
    "cmet_ligands": ("Contrib/FreeWilson/data/cmet_ligands.sdf",
                     "10ba1afb8ce7210d284312f23bf0505dd878d2ebdea76babb6ea641d46903258",
                     "c-Met ligands (another series and target)", "BSD-3-Clause (RDKit test data)"),
}
SHIFTS = tuple(_SHIFTS)
for _name, (_member, _sha, _what, _licence) in _SHIFTS.items():
    register_source(Source(name=_name, package="rdkit", version="2026.9.1", member=f"rdkit/{_member}", sha256=_sha,
                           licence=_licence, citation="RDKit: Open-source cheminformatics, https://www.rdkit.org",
                           description=f"{_what}: shifted data for the applicability-domain evaluation"))


def load_shift(name: str, limit: int, seed: int = 0) -> list[str]:
    """SMILES of a shifted set (RDKit-parsable molecules only), a seeded sample of at most ``limit``."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    data = fetch(name)
    if _SHIFTS[name][0].endswith(".sdf"):
        supplier = Chem.ForwardSDMolSupplier(io.BytesIO(data))
        smiles = [Chem.MolToSmiles(m) for m in supplier if m is not None]
    else:
        smiles = [line.split()[0] for line in data.decode("utf-8").splitlines() if line.strip()]
        smiles = [s for s in smiles if Chem.MolFromSmiles(s) is not None]
    if len(smiles) > limit:
        pick = np.sort(np.random.default_rng(seed).choice(len(smiles), size=limit, replace=False))
        smiles = [smiles[i] for i in pick]
    return smiles
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
    """RDKit descriptors in the order of ``names`` (float64; NaN where RDKit cannot compute one), computed by the
    device's own SMILES reader (:func:`medinfer.tools.smiles.featurize`: one computation for training and devices).

    Raises:
        DatasetError: a SMILES string RDKit cannot parse (named in the message).
    """
    from medinfer.errors import InputError
    from medinfer.tools.smiles import featurize as device_featurize
    from tqdm.auto import tqdm

    progress(f"computing {len(names)} RDKit descriptors for {len(smiles)} molecules")
    parts = []
    with tqdm(total=len(smiles), desc="descriptors", unit="mol", leave=False, mininterval=0.5) as bar:
        for start in range(0, len(smiles), 64):
            chunk = smiles[start:start + 64]
            try:
                parts.append(device_featurize(chunk, names))
            except InputError as exc:
                raise DatasetError(f"{exc} (molecules {start + 1}-{start + len(chunk)} of the data)") from None
            bar.update(len(chunk))
    return np.concatenate(parts) if parts else np.empty((0, len(names)))


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
