"""Faster or other variants of a validated graph: static int8 (:mod:`.int8`), the whole-slice graphs
(:mod:`.whole_slice`)."""
