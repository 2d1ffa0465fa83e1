"""Which CPU class this machine is, for the bundle's per-CPU variant preference (``profile.variant_by_cpu``).

int8 graphs are fast and exact only where the CPU sums 8-bit products in 32 bits: AMX and VNNI (x86), the dot
product instructions (aarch64). On an x86 CPU with AVX2 and no VNNI, onnxruntime's uint8 x int8 kernels add pairs
of products in saturating 16-bit arithmetic, so an int8 variant gated on a VNNI machine may compute other numbers
there: such classes get no int8 variant unless the manifest names one for them.

``load(path, variant="auto")`` runs the variant the manifest prefers for the most specific class of this CPU
(:func:`resolve`), or the validated fp32 graph when it names none. Features come from ``/proc/cpuinfo`` (Linux);
elsewhere the class list is ``("generic",)`` and ``auto`` means the fp32 graph.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable, Mapping

# Most specific first. Each: (class, features that must ALL be present).
X86_CLASSES: tuple[tuple[str, frozenset[str]], ...] = (
    ("amx", frozenset({"amx_tile", "amx_int8", "avx512_vnni"})),
    ("avx512_vnni", frozenset({"avx512f", "avx512_vnni"})),
    ("avx_vnni", frozenset({"avx2", "avx_vnni"})),
    ("avx2", frozenset({"avx2"})),
)
ARM_CLASSES: tuple[tuple[str, frozenset[str]], ...] = (
    ("arm64_i8mm", frozenset({"asimddp", "i8mm"})),
    ("arm64_dotprod", frozenset({"asimddp"})),
)
GENERIC = "generic"
KNOWN = tuple(c for c, _ in X86_CLASSES + ARM_CLASSES) + (GENERIC,)
# Classes whose int8 products are summed exactly in 32 bits (the integer results of a gated int8 graph carry over).
EXACT_INT8 = frozenset({"amx", "avx512_vnni", "avx_vnni", "arm64_i8mm", "arm64_dotprod"})


def cpu_features(cpuinfo: str | None = None) -> frozenset[str]:
    """The CPU's feature flags (x86 ``flags``, aarch64 ``Features``) from ``/proc/cpuinfo`` (or ``cpuinfo``'s
    text); empty where it cannot be read."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
                cpuinfo = fh.read(1 << 20)
        except OSError:
            return frozenset()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return frozenset(value.split())
    return frozenset()


def cpu_classes(features: Iterable[str], machine: str | None = None) -> tuple[str, ...]:
    """Every class the CPU belongs to, most specific first, ending with ``"generic"``.

    Args:
        features: the CPU's flags (:func:`cpu_features`).
        machine: ``platform.machine()`` (default: this machine's); decides between the x86 and ARM tables.
    """
    flags = frozenset(features)
    arch = (machine or platform.machine()).lower()
    table = ARM_CLASSES if arch in ("aarch64", "arm64") else X86_CLASSES
    return tuple(name for name, need in table if need <= flags) + (GENERIC,)


def resolve(preference: Mapping[str, str], classes: Iterable[str]) -> str | None:
    """The variant ``preference`` (class -> variant) names for the first of ``classes`` it covers, else None."""
    for name in classes:
        if name in preference:
            return preference[name]
    return None


def this_cpu() -> tuple[str, ...]:
    """This machine's classes (:func:`cpu_classes` of :func:`cpu_features`)."""
    return cpu_classes(cpu_features())


AUTO = "auto"


def chosen_variant(requested: str | None, preference: Mapping[str, str],
                   classes: Iterable[str] | None = None) -> str:
    """The variant key ``load()`` runs: ``"default"`` for None, the name given, or for ``"auto"`` the manifest's
    preference for this CPU's most specific class it covers (``"default"`` when it covers none)."""
    if requested is None:
        return "default"
    if requested != AUTO:
        return requested
    return resolve(preference, this_cpu() if classes is None else classes) or "default"
