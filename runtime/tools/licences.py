"""Data licences: one table, keyed by SPDX licence id, of what each licence allows a company to do with a model
trained on such data. The model card (export/card.py), ``medinfer info`` and docs/data-licences.md read it here.

The manifest keeps each training source's licence as its producer wrote it (``"CC BY-SA 3.0 (ChEMBL)"``);
:func:`spdx_id` maps that text to an SPDX id (the part before a parenthesis, spaces as hyphens, plus a few
aliases). A licence that is not in the table is "unknown": check it before any use. This is an engineering
summary of the licence texts, not legal advice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Terms:
    """What a licence allows: commercial use (True/False) and the conditions that come with it."""

    name: str
    commercial: bool
    conditions: str


#: SPDX id -> terms. "LicenseRef-" ids are for terms SPDX has no id for.
LICENCES: dict[str, Terms] = {
    "MIT": Terms("MIT License", True, "keep the copyright and permission notice"),
    "BSD-3-Clause": Terms("BSD 3-Clause License", True, "keep the copyright notice; no endorsement"),
    "Apache-2.0": Terms("Apache License 2.0", True, "keep the notices; state changes"),
    "PSF-2.0": Terms("Python Software Foundation License 2.0", True, "keep the notice"),
    "CC0-1.0": Terms("Creative Commons Zero 1.0", True, "none"),
    "CC-BY-4.0": Terms("Creative Commons Attribution 4.0", True, "attribution"),
    "CC-BY-SA-3.0": Terms("Creative Commons Attribution-ShareAlike 3.0", True,
                          "attribution; adaptations of the data under the same licence"),
    "CC-BY-NC-4.0": Terms("Creative Commons Attribution-NonCommercial 4.0", False, "attribution; no commercial use"),
    "CC-BY-NC-ND-4.0": Terms("Creative Commons Attribution-NonCommercial-NoDerivatives 4.0", False,
                             "attribution; no commercial use; no derivatives of the data may be shared"),
    "GPL-2.0-only": Terms("GNU General Public License v2.0", True,
                          "copyleft: what is distributed with the data (or derived from it) goes under the GPL"),
    "LicenseRef-public-domain": Terms("Public domain", True, "no conditions stated; check the source's own terms"),
}
#: Spellings found in manifests -> SPDX id.
ALIASES: dict[str, str] = {"CC0": "CC0-1.0", "GPL-2": "GPL-2.0-only", "GPL-2.0": "GPL-2.0-only", "PSF": "PSF-2.0",
                           "PUBLIC-DOMAIN": "LicenseRef-public-domain", "PSF-LICENCE": "PSF-2.0"}


def spdx_id(licence: str) -> str | None:
    """The SPDX id of a manifest's licence text (``"CC BY-SA 3.0 (ChEMBL)"`` -> ``"CC-BY-SA-3.0"``), or None."""
    head = re.split(r"\s*\(", licence.strip(), maxsplit=1)[0].strip()
    key = re.sub(r"\s+", "-", head)
    if key in LICENCES:
        return key
    lookup = {k.upper(): k for k in LICENCES}
    return lookup.get(key.upper()) or ALIASES.get(key.upper())


def commercial_use(licence: str) -> str:
    """``"yes"`` / ``"no"`` / ``"unknown"`` with the conditions, for a manifest's licence text."""
    spdx = spdx_id(licence)
    terms = LICENCES.get(spdx or "")
    if terms is None:
        return "unknown: check the licence before any use"
    return f"{'yes' if terms.commercial else 'NO'} ({terms.conditions})"


def commercial_summary(licences: list[str]) -> str:
    """One line for a model trained on data under ``licences``: commercial use is allowed only when every source
    allows it."""
    verdicts = {lic: spdx_id(lic) for lic in licences}
    unknown = [lic for lic, spdx in verdicts.items() if spdx is None]
    barred = [lic for lic, spdx in verdicts.items() if spdx is not None and not LICENCES[spdx].commercial]
    if barred:
        return f"NO: {', '.join(sorted(set(barred)))} bars commercial use"
    if unknown:
        return f"unknown: check {', '.join(sorted(set(unknown)))}"
    return "yes, under the conditions of each source's licence"
