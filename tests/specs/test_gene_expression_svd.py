"""gene_expression_svd beyond the registry-wide tests: named genes in every input form, gene-order errors, the card's
plots, and the real PBMC source."""

from __future__ import annotations

import csv

import medinfer
import numpy as np
import pytest
from medinfer.errors import InputError
from medinfer.tools.inputs import read_input

from ..helpers.pipeline import SYNTHETIC, fit_and_export

pytest.importorskip("sklearn")
pytest.importorskip("skl2onnx")

from medinfer.train import registry  # noqa: E402
from medinfer.train.spec import Dataset  # noqa: E402

N_GENES = 60


GENES = tuple(f"G{i:03d}" for i in range(N_GENES))


@pytest.fixture(scope="module")
def cells(tmp_path_factory: pytest.TempPathFactory):
    spec = registry.get("gene_expression_svd")
    rng = np.random.default_rng(3)
    k = len(spec.labels)
    centres = rng.normal(0, 1, size=(k, N_GENES))
    y = np.repeat(np.arange(k), 20)
    # log-normalised expression, as the bundle takes it: log(1 + counts) of Poisson counts around each type's profile
    X = np.log1p(rng.poisson(3 * np.exp(centres[y]))).astype(np.float32)
    test = np.arange(len(y)) % 4 == 0
    ds = Dataset(X_train=X[~test], y_train=y[~test], X_test=X[test], y_test=y[test], sources=(SYNTHETIC,),
                 split={"method": "every 4th cell"}, synthetic=True, description="synthetic cells",
                 feature_names=GENES, edge=X[:3] * 2)
    art, path = fit_and_export(spec, ds, tmp_path_factory.mktemp("genes"))
    return spec, art.model, ds, path


def test_gene_bundle_runtime_equals_sklearn_for_arrays_dicts_frames_and_csv(cells, tmp_path) -> None:
    spec, model, ds, path = cells
    m = medinfer.load(path)
    assert m.manifest.inputs[0].names == GENES
    native = spec.native_outputs(model, ds.X_test)
    columns = {g: ds.X_test[:, j] for j, g in enumerate(GENES)}
    shuffled = dict(reversed(list(columns.items())))  # names, not positions, decide for a mapping
    csv_path = tmp_path / "cells.csv"
    with open(csv_path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["cell", *GENES])
        writer.writerows([f"c{i}", *map(repr, row.tolist())] for i, row in enumerate(ds.X_test))
    inputs = [ds.X_test, columns, shuffled, read_input(csv_path, m)]
    pd = pytest.importorskip("pandas")
    inputs.append(pd.DataFrame(ds.X_test, columns=list(GENES)))
    for x in inputs:
        pred = m.predict(x)
        np.testing.assert_allclose(pred.scores, native["probabilities"], atol=spec.parity.atol)
        assert list(pred.labels) == [spec.labels[i] for i in native["label"]]


def test_gene_order_errors_name_the_genes(cells, tmp_path) -> None:
    _, _, ds, path = cells
    m = medinfer.load(path)
    columns = {g: ds.X_test[:, j] for j, g in enumerate(GENES)}
    missing = {g: v for g, v in columns.items() if g != "G007"}
    with pytest.raises(InputError, match=r"do not match its 60 features: 1 missing \('G007'\)"):
        m.predict(missing)
    with pytest.raises(InputError, match=r"1 not in the model \('MALAT1'\)"):
        m.predict({**columns, "MALAT1": ds.X_test[:, 0]})
    swapped = ["G001", "G000", *GENES[2:]]
    csv_path = tmp_path / "swapped.csv"
    csv_path.write_text(",".join(swapped) + "\n" + ",".join(["0.5"] * N_GENES) + "\n")
    order = r"are in a different order: column 0 is 'G001', expected 'G000'"
    with pytest.raises(InputError, match=order):
        read_input(csv_path, m)
    pd = pytest.importorskip("pandas")
    with pytest.raises(InputError, match=order):
        m.predict(pd.DataFrame(ds.X_test[:, [1, 0, *range(2, N_GENES)]], columns=swapped))
    with pytest.raises(InputError, match=r"1 missing \('G059'\)"):
        m.predict(pd.DataFrame(ds.X_test[:, :-1], columns=list(GENES[:-1])))
    with pytest.raises(InputError, match="X has 59 features, but gene_expression_svd is expecting 60"):
        m.predict(ds.X_test[:, :-1])


def test_gene_plots_and_card(cells) -> None:
    _, _, _, path = cells
    m = medinfer.load_manifest(path)
    assert set(m.card.plots.values()) == {"plots/confusion.png", "plots/svd_embedding.png", "plots/calibration.png"}
    for rel in m.card.plots.values():
        assert (path / rel).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    card = (path / "model_card.md").read_text()
    assert "![SVD embedding of held-out cells" in card and "macro_f1" in card


def test_real_source_pins_its_licence_and_parses() -> None:
    from medinfer.train.datasets import genes, sources

    assert sources.get_source("pbmc68k_reduced").licence.startswith("BSD-3-Clause")
    expr = genes.read(sources.fetch("pbmc68k_reduced"))
    assert expr.X.shape == (700, 765) and expr.genes[:3] == ("HES4", "TNFRSF4", "SSU72")
    assert np.bincount(expr.y).min() == 8 and expr.cell_types == registry.get("gene_expression_svd").labels
