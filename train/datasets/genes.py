"""10x PBMC 68k, scanpy's reduced copy (shipped in the scanpy wheel): 700 cells × 765 genes → 10 cell types.

``X`` is the file's ``.raw``: log-normalised expression of the same 765 genes (log(1 + normalised counts), 0 to
6.5, 67 % zeros, float32), what a user's pipeline produces before any regression or scaling (the file's own ``.X``,
scanpy's regressed and scaled z-scores, needs per-cell covariates and scaling parameters the file does not hold, so
no user could reproduce it). ``obs['bulk_labels']`` is the cell type. The file is read with anndata from the verified
bytes; scanpy itself is never imported.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from .sources import Source, fetch, register_source

register_source(Source(
    name="pbmc68k_reduced",
    package="scanpy",
    version="1.11.5",
    member="scanpy/datasets/10x_pbmc68k_reduced.h5ad",
    sha256="e71d41e737c941559b7c57c9243bdb3d2c889c2adfdf00e3422ac6b46783676f",
    licence="BSD-3-Clause (scanpy)",
    citation=(
        "Zheng G. X. Y. et al., Massively parallel digital transcriptional profiling of single cells, "
        "Nat Commun 8:14049 (2017) (10x Genomics PBMC 68k); reduced and preprocessed by scanpy: "
        "Wolf F. A., Angerer P., Theis F. J., SCANPY, Genome Biology 19:15 (2018)"
    ),
    description="700 PBMCs x 765 highly variable genes (.raw: log-normalised float32), obs 'bulk_labels' = 10 cell "
                "types",
))

SOURCE = "pbmc68k_reduced"
LABEL_COLUMN = "bulk_labels"
# The 10 cell types of 'bulk_labels', sorted: the classifier's output columns, fixed by the contract.
CELL_TYPES = (
    "CD14+ Monocyte", "CD19+ B", "CD34+", "CD4+/CD25 T Reg", "CD4+/CD45RA+/CD25- Naive T", "CD4+/CD45RO+ Memory",
    "CD56+ NK", "CD8+ Cytotoxic T", "CD8+/CD45RA+ Naive Cytotoxic", "Dendritic",
)


class ExpressionFormatError(ValueError):
    """The expression file does not have the layout this loader knows."""


@dataclass(frozen=True)
class Expression:
    X: np.ndarray  # (cells, genes) float32
    genes: tuple[str, ...]
    cell_types: tuple[str, ...]  # label names (CELL_TYPES)
    y: np.ndarray  # (cells,) int64 index into cell_types
    cells: tuple[str, ...]


def read(data: bytes) -> Expression:
    """Parse h5ad bytes into the dense float32 log-normalised matrix (``.raw``), the gene order and integer
    cell-type labels.

    Raises:
        ExpressionFormatError: no ``bulk_labels`` column, no ``.raw`` of the same genes, an unknown cell type,
            repeated gene names or non-finite values.
    """
    import anndata

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # anndata's notes about legacy layouts of this 2018 file
        adata = anndata.read_h5ad(io.BytesIO(data))
    if LABEL_COLUMN not in adata.obs:
        raise ExpressionFormatError(f"the file has no obs column {LABEL_COLUMN!r}; columns: {list(adata.obs)}")
    if adata.raw is None or list(adata.raw.var_names) != list(adata.var_names):
        raise ExpressionFormatError("the file has no .raw (log-normalised expression) of the same genes as .X")
    raw = adata.raw.X
    X = raw.toarray() if hasattr(raw, "toarray") else np.asarray(raw)
    X = np.ascontiguousarray(X, dtype=np.float32)
    genes = tuple(str(g) for g in adata.var_names)
    if len(set(genes)) != len(genes):
        raise ExpressionFormatError("gene names repeat; the input contract needs each gene once")
    if not np.isfinite(X).all():
        raise ExpressionFormatError(f"{int((~np.isfinite(X)).sum())} expression values are not finite")
    raw = [str(v) for v in adata.obs[LABEL_COLUMN]]
    unknown = sorted(set(raw) - set(CELL_TYPES))
    if unknown:
        raise ExpressionFormatError(f"cell types {unknown} are not among the {len(CELL_TYPES)} known: {CELL_TYPES}")
    y = np.asarray([CELL_TYPES.index(v) for v in raw], dtype=np.int64)
    return Expression(X, genes, CELL_TYPES, y, tuple(str(c) for c in adata.obs_names))


def load(sample: int | None = None, seed: int = 0) -> Expression:
    """The verified dataset, optionally a seeded sample stratified by cell type (every type kept)."""
    expr = read(fetch(SOURCE))
    if sample is None or sample >= len(expr.y):
        return expr
    keep = stratified_sample(expr.y, sample, seed)
    return Expression(expr.X[keep], expr.genes, expr.cell_types, expr.y[keep], tuple(expr.cells[i] for i in keep))


def stratified_sample(y: np.ndarray, size: int, seed: int, minimum: int = 4) -> np.ndarray:
    """Sorted indices of about ``size`` samples, proportional per class, at least ``minimum`` of each class."""
    rng = np.random.default_rng(seed)
    counts = np.bincount(y)
    picks = []
    for k, n in enumerate(counts):
        want = min(n, max(minimum, round(size * n / len(y))))
        picks.append(rng.choice(np.flatnonzero(y == k), size=want, replace=False))
    return np.sort(np.concatenate(picks))


def split(y: np.ndarray, test_fraction: float = 0.25, seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Stratified train/test split (cell-type proportions kept in both halves)."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    train, test = train_test_split(idx, test_size=test_fraction, stratify=y, random_state=seed)
    info = {
        "method": "stratified by cell type (sklearn train_test_split)",
        "test_fraction": test_fraction,
        "seed": seed,
        "n_train": int(len(train)),
        "n_test": int(len(test)),
        "test_per_class": np.bincount(y[test], minlength=int(y.max()) + 1).tolist(),
    }
    return np.sort(train), np.sort(test), info
