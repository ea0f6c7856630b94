"""Load a table dump back into PostgreSQL: Parquet → Postgres text forms → `COPY ... FROM STDIN (FORMAT csv)`.

The inverse of table_dump: each Parquet column is turned back into the exact text Postgres reads
(vectorized where Arrow can, per value only for arrays), overflow values take precedence over the
typed column, and generated columns are left for the server to compute.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from supabackup_pipeline.core.catalog import TableRef
from supabackup_pipeline.core.pg_types import OVERFLOW_PREFIX, quote_ident

BATCH_ROWS = 64 * 1024
_HEXDIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def binary_to_pg_hex(arr: pa.Array) -> pa.Array:
    """binary → bytea's hex input form `\\x0aff…`, without a Python loop per value."""
    arr = pa.concat_arrays([arr]) if arr.offset else arr
    n = len(arr)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32, count=n + 1).astype(np.int64)
    base = offsets[0]
    lengths = np.diff(offsets)
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)[base:offsets[-1]] if arr.buffers()[2] else np.empty(0, np.uint8)
    new_offsets = 2 * np.arange(n + 1, dtype=np.int64) + 2 * (offsets - base)
    out = np.empty(int(new_offsets[-1]), dtype=np.uint8)
    out[new_offsets[:-1]] = ord("\\")
    out[new_offsets[:-1] + 1] = ord("x")
    rows = np.repeat(np.arange(n), lengths)
    pos = new_offsets[rows] + 2 + 2 * (np.arange(len(data)) - (offsets[rows] - base))
    out[pos] = _HEXDIGITS[data >> 4]
    out[pos + 1] = _HEXDIGITS[data & 0x0F]
    return pa.Array.from_buffers(
        pa.large_string(), n, [arr.buffers()[0], pa.py_buffer(new_offsets), pa.py_buffer(out)], arr.null_count
    )


def uuid_to_pg_text(arr: pa.Array) -> pa.Array:
    """Arrow uuid → 32 hex digits (uuid_in accepts them without hyphens)."""
    storage = arr.storage if isinstance(arr, pa.ExtensionArray) else arr
    storage = pa.concat_arrays([storage]) if storage.offset else storage
    raw = np.frombuffer(storage.buffers()[1], dtype=np.uint8, count=16 * len(storage)).reshape(-1, 16)
    hexed = np.empty((len(storage), 32), dtype=np.uint8)
    hexed[:, 0::2] = _HEXDIGITS[raw >> 4]
    hexed[:, 1::2] = _HEXDIGITS[raw & 0x0F]
    offsets = np.arange(len(storage) + 1, dtype=np.int32) * 32
    return pa.Array.from_buffers(
        pa.string(), len(storage), [storage.buffers()[0], pa.py_buffer(offsets), pa.py_buffer(hexed.tobytes())],
        storage.null_count,
    )


def _array_element(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, (int, float)):
        return repr(value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def list_to_pg_array(arr: pa.Array) -> pa.Array:
    """A list column → Postgres array literals ({1,NULL,"a b"}). Per value: arrays are rarely bulk."""
    return pa.array(
        [None if v is None else "{" + ",".join(_array_element(e) for e in v) + "}" for v in arr.to_pylist()],
        type=pa.string(),
    )


def to_pg_text(arr: pa.Array) -> pa.Array:
    t = arr.type
    if getattr(t, "extension_name", None) == "arrow.uuid":
        return uuid_to_pg_text(arr)
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return binary_to_pg_hex(arr.cast(pa.binary()))
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return list_to_pg_array(arr)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return arr
    return pc.cast(arr, pa.string())


def text_batch(batch: pa.RecordBatch, columns: list[str]) -> pa.RecordBatch:
    """The batch's `columns` as Postgres text, each overflow value taking its column's place."""
    names = batch.schema.names
    out = []
    for name in columns:
        text = to_pg_text(batch.column(names.index(name)))
        overflow = OVERFLOW_PREFIX + name
        if overflow in names:
            text = pc.coalesce(batch.column(names.index(overflow)).cast(text.type), text)
        out.append(text)
    return pa.RecordBatch.from_arrays(out, names=[f"c{i}" for i in range(len(columns))])


def load_table(conn: psycopg.Connection, parquet_path: Path, sidecar: dict, target: TableRef | None = None) -> int:
    """COPY the dump's rows into `target` (default: the table it came from). Returns rows loaded.

    The caller owns the transaction (and emptied the table first, if it meant to).
    """
    target = target or TableRef(sidecar["schema"], sidecar["table"])
    columns = [c["name"] for c in sidecar["columns"] if not c.get("generated")]
    if not columns:
        return _insert_default_rows(conn, target, sidecar["row_count"])
    rows = 0
    parquet = pq.ParquetFile(parquet_path, pre_buffer=False)  # pre_buffer=True would read the whole file
    column_list = ", ".join(quote_ident(c) for c in columns)
    with conn.cursor().copy(f"COPY {target.sql} ({column_list}) FROM STDIN (FORMAT csv)") as copy:
        for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
            buffer = io.BytesIO()
            pacsv.write_csv(text_batch(batch, columns), buffer,
                            write_options=pacsv.WriteOptions(include_header=False, quoting_style="needed"))
            copy.write(buffer.getbuffer())
            rows += batch.num_rows
    return rows


def _insert_default_rows(conn: psycopg.Connection, target: TableRef, count: int) -> int:
    """A table without insertable columns still has rows."""
    for _ in range(count):
        conn.execute(f"INSERT INTO {target.sql} DEFAULT VALUES")
    return count
