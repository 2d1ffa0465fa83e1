"""SMILES in for a descriptor model (``drug_activity_rf``): RDKit computes the 2-D descriptors a bundle takes.

Descriptors in stays the device default (numpy + onnxruntime); this reader needs the ``[chem]`` extra (RDKit). A
bundle records the RDKit release its descriptors were computed with (input facts ``rdkit_version``): descriptors of
another release can differ (RDKit changes descriptor definitions between releases), so SMILES are refused unless the
installed RDKit is that release, with the command that installs it. :func:`featurize` is the ONE descriptor
computation: training (:func:`medinfer.train.datasets.chembl.featurize`) calls it too, so what a device computes from
a SMILES is, by construction, what the model was trained and gated on.

A ``.smi`` file holds one molecule per line: the SMILES, then optionally its name (space or tab separated), as
RDKit's SmilesMolSupplier reads it; blank lines and ``#`` comments are skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..extras import optional_import
from ..model import Model

FACT = "rdkit_version"


def featurize(smiles: Sequence[str], names: Sequence[str], *, on_error: str = "raise") -> np.ndarray:
    """RDKit descriptors of each SMILES, in the order of ``names`` (float64; NaN where RDKit cannot compute one).

    Raises:
        InputError: a SMILES RDKit cannot parse (its position and text named), when ``on_error="raise"``; with
            ``"nan"`` its row is all NaN instead.
        MissingExtraError: RDKit is not installed (the [chem] extra).
    """
    chem = optional_import("rdkit.Chem", "chem", "SMILES input")
    descriptors = optional_import("rdkit.Chem.Descriptors", "chem", "SMILES input")
    optional_import("rdkit.RDLogger", "chem", "SMILES input").DisableLog("rdApp.*")
    fns = dict(descriptors.descList)
    unknown = [n for n in names if n not in fns]
    if unknown:
        raise InputError(f"this RDKit has no descriptor(s) {unknown[:5]}: the bundle was made with another RDKit")
    out = np.empty((len(smiles), len(names)), dtype=np.float64)
    for i, smi in enumerate(smiles):
        mol = chem.MolFromSmiles(smi)
        if mol is None:
            if on_error == "nan":
                out[i] = np.nan
                continue
            raise InputError(f"RDKit cannot parse SMILES #{i + 1}: {smi[:80]!r} (one valid SMILES per molecule)")
        for j, name in enumerate(names):
            try:
                out[i, j] = fns[name](mol)
            except (ValueError, ZeroDivisionError, OverflowError):
                out[i, j] = np.nan
    return out


def check_rdkit(model: Model, input_name: str | None = None) -> None:
    """Refuse SMILES for a bundle whose descriptors another RDKit release computed (or that records none).

    Raises:
        InputError: the bundle takes no descriptors from SMILES, or records another RDKit release.
        MissingExtraError: RDKit is not installed.
    """
    spec = model.input_checks[0].spec if input_name is None else model.manifest.input(input_name)
    pinned = (spec.facts or {}).get(FACT)
    if not pinned or not spec.names:
        raise InputError(f"{model.name} does not take SMILES: its input '{spec.name}' records no RDKit descriptors "
                         "(facts.rdkit_version and names)")
    rdkit = optional_import("rdkit", "chem", "SMILES input")
    if rdkit.__version__ != pinned:
        raise InputError(f"{model.name}'s descriptors were computed with RDKit {pinned}; the installed RDKit is "
                         f"{rdkit.__version__}, whose descriptors may differ, so SMILES are refused. Install that "
                         f"release: pip install 'rdkit=={pinned}' (or give the descriptors themselves)")


def descriptors_for(model: Model, smiles: Sequence[str]) -> np.ndarray:
    """The (N, F) float32 descriptor rows ``model`` takes for ``smiles``, after :func:`check_rdkit`.

    Raises:
        InputError: as :func:`check_rdkit`; an unparseable SMILES; a molecule with a descriptor RDKit cannot compute
            (named: the bundle refuses non-finite inputs).
    """
    check_rdkit(model)
    spec = model.input_checks[0].spec
    X = featurize(smiles, spec.names or ())
    bad = np.flatnonzero(~np.isfinite(X).all(axis=1))
    if len(bad):
        i = int(bad[0])
        missing = [n for n, v in zip(spec.names or (), X[i]) if not np.isfinite(v)]
        raise InputError(f"SMILES #{i + 1} ({smiles[i][:60]!r}) has descriptors RDKit cannot compute: {missing[:5]}; "
                         f"{model.name} takes finite descriptors only")
    return X.astype(np.float32)


def read_smi(data: bytes, path: Path, model: Model) -> tuple[list[str], Any]:
    """``(names, descriptor rows)`` of a ``.smi`` file (names: the second column, else ``line N``).

    Raises:
        InputError: not UTF-8, no molecule, or as :func:`descriptors_for`.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is not UTF-8 text: {exc}") from None
    smiles, names = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        smiles.append(parts[0])
        names.append(parts[1] if len(parts) > 1 else f"line {number}")
    if not smiles:
        raise InputError(f"{path} holds no SMILES (one molecule per line: SMILES, then optionally its name)")
    return names, descriptors_for(model, smiles)
