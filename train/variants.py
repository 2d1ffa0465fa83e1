"""Settings a spec declares for the variant builders of the exporter (``ModelSpec.variant_settings``, by kind).

The spec says what it wants (``variants = ("int8", "slice")``) and how (these settings); ``medinfer.export.variants``
builds and gates. Settings that only one kind of model needs (the whole-slice graphs of a CT patch classifier)
live here, not on the base :class:`~medinfer.train.spec.ModelSpec`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Int8:
    """Static QDQ int8 (``"int8"``; also what ``"slice_int8"`` quantises with).

    Attributes:
        exclude_prefixes: node-name prefixes kept in float (layers that lose too much in int8).
        fold_window: (conv name fragment, clip output fragment) of an input windowing layer to fold into the int8
            input quantizer (the CT windows of lung_nodule_cnn), or None.
    """

    exclude_prefixes: tuple[str, ...] = ()
    fold_window: tuple[str, str] | None = None


@dataclass(frozen=True)
class WholeSlice:
    """The whole-slice graphs of a CT patch classifier (``"slice"``, ``"slice_int8"``).

    Attributes:
        strides: window strides (px) the gate checks.
        cells: the range of ``stride_cells`` the graph takes.
        max_elements: the most pixels per call.
        int8_atol: ``slice_int8``'s tolerance against the fp32 patch graph (no decision flip either way).
    """

    strides: tuple[int, ...] = (16, 24, 48)
    cells: tuple[int, int] = (2, 12)
    max_elements: int = 640 * 640
    int8_atol: float = 0.02
