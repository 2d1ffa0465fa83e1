"""``medinfer score``: every engine gives exactly ``Model.predict``'s answers with the row ids kept.

Default run: small archives (seconds) with the local and Dask engines, and Spark in local[2] (one JVM start).
``make test-scale`` (marker ``scale``): a >= 1 M-row archive through all three engines, throughput recorded in
benchmarks/results/scale.json.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from pathlib import Path

import medinfer
import numpy as np
import pytest
from medinfer.cli import main
from medinfer.fleet.score import ScoreOptions, score

from ..helpers import tiny
from ..helpers.answers import assert_same_answers, tolerance

pd = pytest.importorskip("pandas")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
import pyarrow.dataset as ds  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def table_rows(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = np.arange(1000, 1000 + n, dtype=np.int64)
    return ids, rng.uniform(-5, 5, size=(n, 3)).astype(np.float32)


def write_parquet(folder: Path, ids: np.ndarray, x: np.ndarray, names: tuple[str, ...], parts: int = 2) -> Path:
    """A folder of Parquet parts with columns id + names (float32), rows in a shuffled order."""
    folder.mkdir(parents=True)
    order = np.random.default_rng(1).permutation(len(ids))
    for k, chunk in enumerate(np.array_split(order, parts)):
        columns = {"id": pa.array(ids[chunk])} | {n: pa.array(x[chunk, j]) for j, n in enumerate(names)}
        pq.write_table(pa.table(columns), folder / f"part-{k}.parquet", row_group_size=65536)
    return folder


def read_output(out: Path) -> pd.DataFrame:
    files = [out] if out.is_file() else sorted(p for p in out.rglob("*") if p.suffix in (".parquet", ".csv"))
    fmt = "csv" if files[0].suffix == ".csv" else "parquet"
    frame = ds.dataset([str(p) for p in files], format=fmt).to_table().to_pandas()
    return frame.sort_values("id").reset_index(drop=True)


def check(frame: pd.DataFrame, model: medinfer.Model, ids: np.ndarray, x: np.ndarray) -> None:
    """Same ids, and the labels/scores of Model.predict on the same rows (within the bundle's stated tolerance:
    a partition is another batch size, tests/helpers/answers.py)."""
    order = np.argsort(ids)
    expected = model.predict(x[order])
    assert frame["id"].tolist() == ids[order].tolist()
    assert_same_answers(model, frame["score"].to_numpy(np.float32), frame["label"].tolist(), expected)
    assert set(frame["status"]) == {"ok"} and frame["reason"].isna().all()
    assert set(frame["model_sha256"]) == {model.model_sha256} and set(frame["model"]) == {model.name}
    assert set(frame["model_version"]) == {model.version}


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory, tiny_bundle_ro: Path) -> dict:
    root = tmp_path_factory.mktemp("score")
    bundle = tiny_bundle_ro  # read only: the session's tiny bundle
    ids, x = table_rows(3000)
    parquet = write_parquet(root / "archive", ids, x, tiny.FEATURES)
    csv = root / "archive.csv"
    pd.DataFrame({"id": ids} | {n: x[:, j] for j, n in enumerate(tiny.FEATURES)}).to_csv(csv, index=False)
    return {"root": root, "bundle": bundle, "ids": ids, "x": x, "parquet": parquet, "csv": csv}


@pytest.mark.parametrize("engine", ["local", "dask"])
@pytest.mark.parametrize(("source", "suffix"), [("parquet", ".parquet"), ("csv", ".csv")])
def test_engine_matches_predict(archive: dict, tmp_path: Path, engine: str, source: str, suffix: str) -> None:
    pytest.importorskip("dask") if engine == "dask" else None
    out = tmp_path / f"scored{suffix}"
    ticks: list[tuple[int, int, str]] = []
    summary = score(archive["bundle"], archive[source], out,
                    ScoreOptions(engine=engine, workers=2, batch_rows=1000), lambda *a: ticks.append(a))
    assert summary["rows"] == 3000 and summary["rows_per_s"] > 0
    assert ticks and ticks[-1][0] == ticks[-1][1]  # progress reached the end
    check(read_output(out), medinfer.load(archive["bundle"]), archive["ids"], archive["x"])


def test_spark_matches_predict(archive: dict, tmp_path: Path) -> None:
    """One JVM start (~10 s on 2 cores): the only Spark test of the default run."""
    pytest.importorskip("pyspark")
    if not shutil.which("java") and not os.environ.get("JAVA_HOME"):
        pytest.skip("Spark needs Java 17+ (no java on PATH, no JAVA_HOME)")
    model = medinfer.load(archive["bundle"])
    for source, out in (("parquet", tmp_path / "scored"), ("csv", tmp_path / "scored.csv")):
        summary = score(archive["bundle"], archive[source], out, ScoreOptions(engine="spark", workers=2))
        assert summary["rows"] == 3000
        check(read_output(out), model, archive["ids"], archive["x"])


def test_bad_rows_fail_or_are_marked(archive: dict, tmp_path: Path) -> None:
    ids, x = archive["ids"][:50], archive["x"][:50].copy()
    x[17, 1] = np.nan
    folder = write_parquet(tmp_path / "bad", ids, x, tiny.FEATURES, parts=1)
    with pytest.raises(medinfer.InputError, match=r"row id=1017: .*NaN.*--on-error no_result"):
        score(archive["bundle"], folder, tmp_path / "out.parquet", ScoreOptions())
    out = tmp_path / "marked.parquet"
    score(archive["bundle"], folder, out, ScoreOptions(on_error="no_result", batch_rows=20))
    frame = read_output(out)
    bad = frame["id"] == 1017
    assert frame.loc[bad, "status"].item() == "no_result" and frame.loc[bad, "reason"].item().startswith(
        "input: input 'x' of tiny_logistic contains 1 NaN")
    assert frame.loc[bad, "label"].isna().item() and np.isnan(frame.loc[bad, "score"].item())
    good = ~bad.to_numpy()
    check(frame[good].reset_index(drop=True), medinfer.load(archive["bundle"]), np.delete(ids, 17),
          np.delete(x, 17, axis=0))


def test_column_errors(archive: dict, tmp_path: Path) -> None:
    frame = pd.DataFrame({"row": [1, 2], "alpha": [0.0, 1.0], "beta": [0.0, 1.0]})
    frame.to_csv(tmp_path / "in.csv", index=False)
    with pytest.raises(medinfer.InputError, match="no row-id column 'id'.*--id-column"):
        score(archive["bundle"], tmp_path / "in.csv", tmp_path / "o.csv", ScoreOptions())
    with pytest.raises(medinfer.InputError, match=r"lacks 1 of tiny_logistic's 3 feature columns \('gamma'\)"):
        score(archive["bundle"], tmp_path / "in.csv", tmp_path / "o.csv", ScoreOptions(id_column="row"))
    with pytest.raises(medinfer.MedinferError, match="unknown engine"):
        score(archive["bundle"], tmp_path / "in.csv", tmp_path / "o.csv", ScoreOptions(engine="ray"))


def test_cli(archive: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.parquet"
    assert main(["score", str(archive["bundle"]), str(archive["csv"]), "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == 3000
    assert main(["score", str(archive["bundle"]), str(archive["csv"]), "--out", str(out)]) == 2  # exists
    assert "exists; pass --overwrite" in capsys.readouterr().err


@pytest.mark.slow
def test_text_model(built, tmp_path: Path) -> None:
    art, path = built("clinical_notes_tfidf")
    texts = [str(v) for v in np.asarray(art.dataset.X_test).reshape(-1)]
    ids = np.arange(len(texts), dtype=np.int64)
    pq.write_table(pa.table({"id": ids, "text": texts}), tmp_path / "notes.parquet")
    model = medinfer.load(path)
    for engine in ("local", "dask"):
        out = tmp_path / f"{engine}.parquet"
        score(path, tmp_path / "notes.parquet", out, ScoreOptions(engine=engine, workers=2))
        frame = read_output(out)
        expected = model.predict(texts)
        assert_same_answers(model, frame["score"].to_numpy(np.float32), frame["label"].tolist(), expected)


# -- >= 1 M rows (make test-scale) -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rf_bundle(request: pytest.FixtureRequest) -> Path:
    real = ROOT / "bundles" / "drug_activity_rf"
    if (real / "manifest.json").is_file():
        return real
    return request.getfixturevalue("built")("drug_activity_rf")[1]


@pytest.mark.scale
def test_million_rows_every_engine(rf_bundle: Path, tmp_path: Path) -> None:
    from benchmarks import provenance

    rows = int(os.environ.get("MEDINFER_SCALE_ROWS", 1_000_000))
    full = rows >= 1_000_000  # only a full run is recorded, and only from a clean, committed tree (refused here)
    started = provenance.require_clean(what="make test-scale") if full else provenance.capture()
    model = medinfer.load(rf_bundle)
    spec = model.manifest.inputs[0]
    golden = next(iter(model.golden()[0].values())).astype(np.float32)
    rng = np.random.default_rng(7)
    base = golden[rng.integers(0, len(golden), rows)]
    x = (base * rng.uniform(0.8, 1.2, size=base.shape).astype(np.float32)).astype(np.float32)
    lo, hi = spec.range or (-np.inf, np.inf)
    np.clip(x, lo, hi, out=x)
    ids = np.arange(rows, dtype=np.int64) * 7 + 3
    start = time.perf_counter()
    source = write_parquet(tmp_path / "archive", ids, x, spec.names or tuple(f"f{j}" for j in range(x.shape[1])),
                           parts=8)
    written = time.perf_counter() - start
    expected = np.concatenate([np.asarray(model.predict(x[i:i + 50_000]).scores) for i in range(0, rows, 50_000)])
    cores = len(os.sched_getaffinity(0))
    results = []
    for engine in ("local", "dask", "spark"):
        out = tmp_path / f"out-{engine}"
        summary = score(rf_bundle, source, out if engine != "local" else out.with_suffix(".parquet"),
                        ScoreOptions(engine=engine, workers=cores), None)
        frame = read_output(out if engine != "local" else out.with_suffix(".parquet"))
        assert frame["id"].to_numpy().tolist() == ids.tolist()  # ids ascend with the row index
        np.testing.assert_allclose(frame["score"].to_numpy(np.float32), expected, rtol=0, atol=tolerance(model))
        assert (frame["status"] == "ok").all()
        del frame
        results.append(summary)
        print(f"\n{engine}: {summary['rows']} rows in {summary['seconds']:.1f} s = {summary['rows_per_s']:,.0f} rows/s")
    setup = {"rows": rows, "features": int(x.shape[1]), "model": model.name, "version": model.version, "parts": 8,
             "write_s": round(written, 2), "cores": cores, "machine": platform.processor() or platform.machine()}
    from benchmarks import results as bench_results  # raw data only: REPORT.md renders it (benchmarks/scale.py)

    command = "make test-scale  # tests/fleet/test_score.py::test_million_rows_every_engine"
    if full:
        provenance.still_publishable(started, what="make test-scale")
        bench_results.write("scale", {"command": command, "time": started["started"], "provenance": started,
                                      "bundles": provenance.bundles_of([rf_bundle]), "setup": setup,
                                      "results": [{k: v for k, v in r.items() if k != "out"} for r in results]})


@pytest.mark.hostile("batch scoring")
@pytest.mark.parametrize("engine", ["local", "dask"])
def test_a_failed_run_leaves_nothing_and_the_rerun_needs_no_overwrite(archive: dict, tmp_path: Path,
                                                                       engine: str) -> None:
    if engine == "dask":
        pytest.importorskip("dask")
    ids, x = archive["ids"][:60], archive["x"][:60].copy()
    x[40, 0] = np.inf
    bad = write_parquet(tmp_path / "bad", ids, x, tiny.FEATURES, parts=2)
    out = tmp_path / ("out.parquet" if engine == "local" else "out")
    with pytest.raises(medinfer.InputError, match="row id=1040"):
        score(archive["bundle"], bad, out, ScoreOptions(engine=engine, workers=1, batch_rows=16))
    assert not out.exists() and not any(p.name.startswith(".out") for p in tmp_path.iterdir())
    x[40, 0] = 0.0
    good = write_parquet(tmp_path / "good", ids, x, tiny.FEATURES, parts=2)
    summary = score(archive["bundle"], good, out, ScoreOptions(engine=engine, workers=1, batch_rows=16))
    assert summary["rows"] == 60 and out.exists()


def test_workers_never_run_more_threads_than_the_cores_by_default() -> None:
    """Seen in make test-scale: a bundle whose profile says 0 intra-op threads (onnxruntime's default, one per core)
    gave each of 2 Dask workers 2 threads on 2 cores, and Dask scored at half its former speed. Without an explicit
    thread count, the workers share the cores; an explicit count, one process (local) or a cluster keeps its own."""
    from medinfer.fleet.score import worker_threads

    dask2 = ScoreOptions(engine="dask", workers=2)
    assert worker_threads(dask2, 0, 2) == 1  # 0 = one thread per core: 2 x 2 > 2
    assert worker_threads(dask2, 2, 2) == 1 and worker_threads(dask2, 4, 8) is None  # 2 x 4 <= 8: the profile
    assert worker_threads(dask2, 1, 2) is None  # the profile fits: scores bit-identical to Model.predict
    assert worker_threads(ScoreOptions(engine="spark", workers=3), 0, 8) == 2
    assert worker_threads(ScoreOptions(engine="dask", workers=4), 0, 2) == 1  # at least one each
    assert worker_threads(ScoreOptions(engine="dask", workers=2, threads_per_worker=3), 0, 2) == 3  # asked for
    assert worker_threads(ScoreOptions(engine="local", workers=2), 0, 2) is None
    assert worker_threads(ScoreOptions(engine="spark", workers=2, master="spark://h:7077"), 0, 2) is None

