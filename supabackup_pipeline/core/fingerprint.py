"""Content fingerprints of table data, the same for a backup's Parquet file and for a live table.

Both sides are brought to the exact Postgres text form a restore loads (`table_load.text_batch`)
and hashed column by column (values, lengths and NULLs in separate streams, so the result does
not depend on how rows are split into batches). Row order counts: a freshly restored table
reads back in load order (TRUNCATE + COPY, synchronized scans off).
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from supabackup_pipeline.core.catalog import TableDescription
from supabackup_pipeline.core.pg_types import Column, codec_for, select_expressions
from supabackup_pipeline.core.table_load import text_batch


class _Fingerprint:
    def __init__(self, columns: list[str]):
        self.columns = columns
        self.rows = 0
        self.hashers = [[hashlib.sha256() for _ in range(3)] for _ in columns]

    def add(self, batch: pa.RecordBatch) -> None:
        text = text_batch(batch, self.columns)
        self.rows += batch.num_rows
        for i, column in enumerate(text.columns):
            column = column.cast(pa.large_string())
            column = pa.concat_arrays([column]) if column.offset else column
            values, lengths, nulls = self.hashers[i]
            offsets = np.frombuffer(column.buffers()[1], dtype=np.int64, count=len(column) + 1)
            data = column.buffers()[2]
            if data is not None:
                values.update(memoryview(data)[offsets[0]:offsets[-1]])
            lengths.update(np.diff(offsets).tobytes())
            nulls.update(column.is_null().to_numpy(zero_copy_only=False).tobytes())

    def hexdigest(self) -> str:
        total = hashlib.sha256(str(self.rows).encode())
        for name, streams in zip(self.columns, self.hashers):
            total.update(name.encode() + b"\0" + b"".join(h.digest() for h in streams))
        return total.hexdigest()


def loadable_columns(sidecar: dict) -> list[str]:
    return [c["name"] for c in sidecar["columns"] if not c.get("generated")]


def fingerprint_batches(batches: Iterable[pa.RecordBatch], columns: list[str]) -> tuple[int, str]:
    fp = _Fingerprint(columns)
    for batch in batches:
        fp.add(batch)
    return fp.rows, fp.hexdigest()


def backup_fingerprint(parquet_path: Path, sidecar: dict) -> tuple[int, str]:
    """(rows, fingerprint) of a table dump."""
    parquet = pq.ParquetFile(parquet_path, pre_buffer=False)
    return fingerprint_batches(parquet.iter_batches(batch_size=64 * 1024), loadable_columns(sidecar))


def live_batches(conn: psycopg.Connection, description: TableDescription, columns: list[Column]) -> Iterator[pa.RecordBatch]:
    """The table's rows through the dump codecs, read on `conn` (so inside its transaction)."""
    exprs, fields = select_expressions(columns)
    converts = {c.name: codec_for(c).convert for c in columns if codec_for(c).convert}
    query = f"COPY (SELECT {', '.join(exprs)} FROM ONLY {description.ref.sql}) TO STDOUT (FORMAT csv)"
    buffer = io.BytesIO()
    with conn.cursor().copy(query) as copy:
        for chunk in copy:
            buffer.write(chunk)
            if buffer.tell() >= 8 << 20:
                yield from _parse(buffer, fields, converts)
                buffer = io.BytesIO()
    yield from _parse(buffer, fields, converts)


def _parse(buffer: io.BytesIO, fields, converts) -> Iterator[pa.RecordBatch]:
    # COPY sends whole rows per message, so a flush at a message boundary never splits a row
    if not buffer.tell():
        return
    buffer.seek(0)
    table = pacsv.read_csv(
        buffer,
        read_options=pacsv.ReadOptions(column_names=[n for n, _ in fields]),
        parse_options=pacsv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False),
        convert_options=pacsv.ConvertOptions(
            column_types=dict(fields), true_values=["t"], false_values=["f"], null_values=[""],
            strings_can_be_null=True, quoted_strings_can_be_null=False,
        ),
    )
    for batch in table.to_batches():
        yield pa.RecordBatch.from_arrays(
            [converts[n](batch.column(i)) if n in converts else batch.column(i) for i, n in enumerate(batch.schema.names)],
            names=batch.schema.names,
        )


def live_fingerprint(conn: psycopg.Connection, description: TableDescription, sidecar: dict) -> tuple[int, str]:
    """(rows, fingerprint) of the live table, read through the backup's column list and codecs."""
    by_name = {c.name: c for c in description.columns}
    wanted = [by_name[c["name"]] for c in sidecar["columns"] if c["name"] in by_name]
    names = loadable_columns(sidecar)
    return fingerprint_batches(live_batches(conn, description, wanted), names)
