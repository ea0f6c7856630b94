"""Content checks of table data: is a live table equal to a table dump?

Fast and exact: the dump records the SHA-256 of the COPY stream the server wrote while the table
was dumped (`copy_sha256`: binary COPY since format 2, each format with its own select list; CSV
text in format 1); reading the live table with the same COPY and hashing the bytes must give the
same digest. No value is parsed, so this costs about a plain COPY out.

Value by value, for dumps without that digest or when the server's text forms differ (another
PostgreSQL version): fingerprints of both sides, are brought to the exact Postgres text form a restore loads (`table_load.text_batch`)
hashed column by column (values, lengths and NULLs in separate streams, so the result does
not depend on how rows are split into batches). Row order counts: a freshly restored table
reads back in load order (TRUNCATE + COPY, synchronized scans off).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from supabackup_pipeline.core.catalog import TableDescription, TableRef
from supabackup_pipeline.core.pg_types import Column
from supabackup_pipeline.core.table_dump import arrow_schema, binary_batches, copy_select_sql, dumped_columns
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
            nulls_now = column.is_null().to_numpy(zero_copy_only=False)
            # a NULL slot's bytes are whatever its producer left there (a uuid's are rendered): not hashed
            column = pc.fill_null(column.cast(pa.large_string()), "") if column.null_count else column.cast(pa.large_string())
            column = pa.concat_arrays([column]) if column.offset else column
            values, lengths, nulls = self.hashers[i]
            offsets = np.frombuffer(column.buffers()[1], dtype=np.int64, count=len(column) + 1)
            data = column.buffers()[2]
            if data is not None:
                values.update(memoryview(data)[offsets[0]:offsets[-1]])
            lengths.update(np.diff(offsets).tobytes())
            nulls.update(nulls_now.tobytes())

    def hexdigest(self) -> str:
        total = hashlib.sha256(str(self.rows).encode())
        for name, streams in zip(self.columns, self.hashers):
            total.update(name.encode() + b"\0" + b"".join(h.digest() for h in streams))
        return total.hexdigest()


def column_names(sidecar: dict) -> list[str]:
    """The columns compared value by value: the ones a restore loads, not the stored generated ones
    (which the server computes; dumps of format 4 on do not hold them, see `dumped_columns`)."""
    return [c.name for c in dumped_columns(sidecar_columns(sidecar))]


def fingerprint_batches(batches: Iterable[pa.RecordBatch], columns: list[str]) -> tuple[int, str]:
    fp = _Fingerprint(columns)
    for batch in batches:
        fp.add(batch)
    return fp.rows, fp.hexdigest()


def _rows_only(rows: int) -> tuple[int, str]:
    """The fingerprint of a dump without columns (a table of none, or only of generated ones): its
    row count, which such a table's batches cannot give (a batch without columns has no rows)."""
    fp = _Fingerprint([])
    fp.rows = rows
    return rows, fp.hexdigest()


def backup_fingerprint(parquet_path: Path, sidecar: dict) -> tuple[int, str]:
    """(rows, fingerprint) of a table dump."""
    names = column_names(sidecar)
    if not names:  # its Parquet file has no rows either: the dump counted them into the sidecar
        return _rows_only(sidecar["row_count"])
    parquet = pq.ParquetFile(parquet_path, pre_buffer=False)
    return fingerprint_batches(parquet.iter_batches(batch_size=64 * 1024), names)


class _CopyReader(io.RawIOBase):
    """`COPY ... TO STDOUT` read on a psycopg connection, as a file (one row arrives per message)."""

    def __init__(self, copy):
        self._copy = copy
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(view):
            if not self._pending:
                chunk = self._copy.read()
                if not chunk:
                    break
                self._pending = memoryview(chunk)
            n = min(len(view) - filled, len(self._pending))
            view[filled:filled + n] = self._pending[:n]
            self._pending = self._pending[n:]
            filled += n
        return filled


def live_batches(conn: psycopg.Connection, description: TableDescription, columns: list[Column]) -> Iterator[pa.RecordBatch]:
    """The table's rows through the dump's own codecs (`binary_batches`), read on `conn`, so inside
    its transaction: a restore reads back what it loaded before committing."""
    schema = arrow_schema(dataclasses.replace(description, columns=columns))
    with conn.cursor().copy(copy_select_sql(columns, description.ref)) as copy:
        stream = io.BufferedReader(_CopyReader(copy), 1 << 20)
        yield from binary_batches(stream, columns, schema)
        stream.read()


def live_fingerprint(conn: psycopg.Connection, description: TableDescription, sidecar: dict) -> tuple[int, str]:
    """(rows, fingerprint) of the live table, read through the backup's column list and codecs."""
    by_name = {c.name: c for c in description.columns}
    wanted = [by_name[c["name"]] for c in sidecar["columns"] if c["name"] in by_name]
    names = column_names(sidecar)
    if not names:
        return _rows_only(conn.execute(f"SELECT count(*) FROM ONLY {description.ref.sql}").fetchone()[0])
    return fingerprint_batches(live_batches(conn, description, wanted), names)


def sidecar_columns(sidecar: dict) -> list[Column]:
    """The columns as the dump described them: what its COPY select list was built from."""
    return [Column(name=c["name"], pg_type=c["type"], base_type=c["base_type"], element_type=c.get("element_type"),
                   generated="s" if c.get("generated") else "")
            for c in sidecar["columns"]]


def live_copy_sha256(conn: psycopg.Connection, sidecar: dict) -> tuple[int, str]:
    """(rows, SHA-256) of the live table read with the dump's own COPY (of the sidecar's format
    version), on `conn` (so inside its transaction). Equals the sidecar's `copy_sha256` exactly
    when the table holds the rows the dump read, in the same order: a restored table reads back in
    load order."""
    digest = hashlib.sha256()
    rows = 0
    ref = TableRef(sidecar["schema"], sidecar["table"])
    version = sidecar.get("format_version", 1)
    with conn.cursor().copy(copy_select_sql(sidecar_columns(sidecar), ref, version)) as copy:
        for row in copy:  # libpq hands out COPY data one row per message
            digest.update(row)
            rows += 1
    # binary COPY's header arrives with the first row and its trailer as a message of its own
    return (rows - 1 if version >= 2 and rows else rows), digest.hexdigest()
