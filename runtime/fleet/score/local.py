"""The local engine of ``medinfer score``: this process, one Arrow batch at a time (bounded memory)."""

from __future__ import annotations

from pathlib import Path

from .plan import Plan, Progress, ScoreOptions, Scorer, arrow_schema, is_csv_output, open_dataset


def score_local(bundle: str | Path, source: str | Path, out: str | Path, plan: Plan, options: ScoreOptions,
                progress: Progress | None = None) -> int:
    """Score in this process, one Arrow batch at a time (bounded memory). Returns the row count."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    dataset = open_dataset(source, plan.csv_types)
    total = dataset.count_rows()
    scorer = Scorer(bundle, plan, options, text_output=is_csv_output(out))
    scorer.model()
    columns = [plan.id_column, *plan.features]
    schema = arrow_schema(plan, dataset.schema.field(plan.id_column).type, is_csv_output(out))
    writer = pacsv.CSVWriter(str(out), schema) if is_csv_output(out) else pq.ParquetWriter(str(out), schema)
    done = 0
    try:
        for batch in dataset.to_batches(columns=columns, batch_size=options.batch_rows):
            frame = scorer(batch.to_pandas())
            writer.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False))
            done += len(frame)
            if progress is not None:
                progress(done, total, "rows")
    finally:
        writer.close()
    return done
