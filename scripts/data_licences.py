"""Render docs/data-licences.md: every registered data source, its licence, whether a company may use a model
trained on it commercially, and where it comes from. The verdicts come from the one table in
``medinfer.tools.licences`` (keyed by SPDX id); tests/docs/test_data_licences.py checks the committed file is this
rendering. Needs [train] (the source registry).

    .venv/bin/python scripts/data_licences.py > docs/data-licences.md
"""

from __future__ import annotations

import sys

#: Which model each source feeds: "training" data, or "shifted" data for the applicability-domain evaluation.
USES: dict[str, tuple[str, str]] = {
    "chembl2321810_smiles": ("drug_activity_rf", "training"),
    "chembl2321810_activity": ("drug_activity_rf", "training"),
    "nci_diverse": ("drug_activity_rf", "shifted"),
    "cdk2_ligands": ("drug_activity_rf", "shifted"),
    "egfr_ligands": ("drug_activity_rf", "shifted"),
    "cmet_ligands": ("drug_activity_rf", "shifted"),
    "simglucose_vpatients": ("glucose_lstm", "training (simulated patients)"),
    "iu_cxr_reports": ("clinical_notes_tfidf", "training"),
    "pbmc68k_reduced": ("gene_expression_svd", "training"),
    "pydicom_ct_small": ("lung_nodule_cnn", "training (CT background)"),
    "pydicom_data_693_unci": ("lung_nodule_cnn", "training (CT background)"),
    "pydicom_data_ect": ("lung_nodule_cnn", "training (CT background)"),
    "invesalius_cranium": ("lung_nodule_cnn", "training (CT background)"),
    "pydicom_mr_small": ("lung_nodule_cnn", "shifted"),
    "pydicom_data_neck": ("lung_nodule_cnn", "shifted"),
    "pydicom_data_pancreas": ("lung_nodule_cnn", "shifted"),
}

HEAD = """# Data licences

Every data set medinfer's five specs are built from, with its licence and whether a company may use a model
trained on it **commercially**. A model is as restricted as its most restricted source: the clinical-notes model
(`clinical_notes_tfidf`) is trained on reports licensed **CC BY-NC-ND 4.0** and must not be used commercially;
the others allow commercial use under their licences' conditions (attribution, share-alike for ChEMBL data,
copyleft for the GPL head CT). Each bundle's model card repeats this per source, from its own manifest.

The verdicts come from one table keyed by SPDX licence id (`runtime/tools/licences.py`); this page is rendered
from it and from the source registry (`scripts/data_licences.py`; `tests/docs/test_data_licences.py` checks that
it is current). It is an engineering reading of the licence texts, not legal advice. Data a user supplies
(`medinfer train lung_nodule_cnn --data DIR`) carries the user's own licence.

| model | source | use | licence (SPDX) | commercial use | from |
|---|---|---|---|---|---|
"""


def render() -> str:
    """The page's text."""
    from medinfer.tools.licences import commercial_use, spdx_id
    from medinfer.train.datasets.sources import all_sources

    sources = all_sources()
    missing = sorted(set(sources) - set(USES))
    if missing:
        raise SystemExit(f"scripts/data_licences.py: say which model uses {missing} (USES)")
    rows = []
    for name, src in sorted(sources.items(), key=lambda kv: (USES[kv[0]][0], USES[kv[0]][1], kv[0])):
        model, use = USES[name]
        origin = (f"Debian package `{src.package}` {src.version}" if src.kind == "deb"
                  else f"`{src.package}=={src.version}` wheel") + f": `{src.member}`"
        what = src.description.split(": shifted data")[0]
        rows.append(f"| `{model}` | `{name}`: {what} | {use} | {src.licence} "
                    f"(`{spdx_id(src.licence) or 'unknown'}`) | {commercial_use(src.licence)} | {origin} |")
    return HEAD + "\n".join(rows) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
