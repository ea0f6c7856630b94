"""Load a table dump back into PostgreSQL: Parquet → `COPY ... FROM STDIN`, binary or CSV.

The inverse of table_dump. Binary COPY where copy_binary can encode every column (the server
parses no text). Otherwise, and for the value-by-value fingerprints, each Parquet column is turned
back into the exact text Postgres reads (Arrow compute and numpy, never a Python call per value),
an overflow value taking its column's place. Generated columns are left for the server to compute.
"""

from __future__ import annotations

import io
import queue
from pathlib import Path

import numpy as np
import psycopg
from psycopg.copy import QueuedLibpqWriter
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from supabackup_pipeline.core import copy_binary
from supabackup_pipeline.core.catalog import TableRef
from supabackup_pipeline.core.pg_types import OVERFLOW_PREFIX, quote_ident

BATCH_ROWS = 64 * 1024
QUEUED_CHUNKS = 256  # psycopg queues 128 kB chunks: 32 MB in flight, about three batches


class _WriterThread(QueuedLibpqWriter):
    """psycopg's writer thread (it sends while the caller converts the next batch), with a shorter
    queue than its default 1024 chunks, so memory stays flat when the conversion runs ahead."""

    def __init__(self, cursor: psycopg.Cursor):
        super().__init__(cursor)
        self._queue = queue.Queue(maxsize=QUEUED_CHUNKS)  # pinned psycopg: see requirements.lock
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


def _ascii_digits(values: np.ndarray, width: int) -> np.ndarray:
    """Non-negative integers → an (n, width) matrix of zero-padded ASCII digits."""
    out = np.empty((len(values), width), dtype=np.uint8)
    for i in range(width - 1, -1, -1):
        values, digit = np.divmod(values, 10)
        out[:, i] = digit + ord("0")
    return out


def _civil_date(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm)."""
    z = days + 719468
    era = np.floor_divide(z, 146097)
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = np.where(mp < 10, mp + 3, mp - 9)
    return yoe + era * 400 + (month <= 2), month, day


def _fixed_width_text(arr: pa.Array, pieces: list) -> pa.Array:
    """One string per value from equal-width pieces ((n, w) digit matrices or bytes constants);
    the nulls of `arr` stay null."""
    n = len(arr)
    chars = np.hstack([np.broadcast_to(np.frombuffer(p, np.uint8), (n, len(p))) if isinstance(p, bytes) else p
                       for p in pieces])
    offsets = np.arange(n + 1, dtype=np.int64) * chars.shape[1]
    return pa.Array.from_buffers(pa.large_string(), n, [arr.buffers()[0], pa.py_buffer(offsets),
                                                        pa.py_buffer(np.ascontiguousarray(chars))], arr.null_count)


def _date_pieces(days: np.ndarray) -> list:
    year, month, day = _civil_date(days)
    return [_ascii_digits(year, 4), b"-", _ascii_digits(month, 2), b"-", _ascii_digits(day, 2)]


def _time_pieces(micros: np.ndarray) -> list:
    seconds, micro = np.divmod(micros, 1_000_000)
    hours, rest = np.divmod(seconds, 3600)
    minutes, secs = np.divmod(rest, 60)
    return [_ascii_digits(hours, 2), b":", _ascii_digits(minutes, 2), b":", _ascii_digits(secs, 2), b".",
            _ascii_digits(micro, 6)]


def temporal_to_pg_text(arr: pa.Array) -> pa.Array:
    """date32, time64[us] and timestamp[us] (years 0001-9999, as the dump stores them; others are in
    the overflow column) → ISO text, computed with numpy: Arrow's cast to string is ~10x slower."""
    arr = pa.concat_arrays([arr]) if arr.offset else arr
    t, n = arr.type, len(arr)
    if pa.types.is_date32(t):
        return _fixed_width_text(arr, _date_pieces(np.frombuffer(arr.buffers()[1], np.int32, count=n).astype(np.int64)))
    values = np.frombuffer(arr.buffers()[1], np.int64, count=n)
    if pa.types.is_time64(t):
        return _fixed_width_text(arr, _time_pieces(values))
    days, micros = np.divmod(values, 86_400_000_000)
    zone = [b"+00"] if t.tz else []
    return _fixed_width_text(arr, [*_date_pieces(days), b" ", *_time_pieces(micros), *zone])


def _is_fast_temporal(t: pa.DataType) -> bool:
    if pa.types.is_timestamp(t):
        return t.unit == "us" and t.tz in (None, "UTC")
    return pa.types.is_date32(t) or (pa.types.is_time64(t) and t.unit == "us")


def list_to_pg_array(arr: pa.Array) -> pa.Array:
    """A list column → Postgres array literals (`{"1",NULL,"a b"}`), columnar: every element in its
    own text form, quoted and escaped (array_in accepts quotes around any element type)."""
    n = len(arr)
    lengths = pc.fill_null(pc.list_value_length(arr), 0).to_numpy()
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    elements = to_pg_text(arr.flatten()).cast(pa.string())
    escaped = pc.replace_substring(pc.replace_substring(elements, "\\", "\\\\"), '"', '\\"')
    quoted = pc.fill_null(pc.binary_join_element_wise("", escaped, "", '"'), "NULL")
    lists = pa.ListArray.from_arrays(pa.array(offsets), quoted, mask=arr.is_null())
    return pc.binary_join_element_wise("{", pc.binary_join(lists, ","), "}", "")


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
    if _is_fast_temporal(t):
        return temporal_to_pg_text(arr)
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

    Binary COPY when every column has a binary form (core/copy_binary.py) and no value sits in an
    overflow column; CSV otherwise. The caller owns the transaction (and emptied the table first,
    if it meant to).
    """
    target = target or TableRef(sidecar["schema"], sidecar["table"])
    columns = [c["name"] for c in sidecar["columns"] if not c.get("generated")]
    if not columns:
        return _insert_default_rows(conn, target, sidecar["row_count"])
    rows = 0
    parquet = pq.ParquetFile(parquet_path, pre_buffer=False)  # pre_buffer=True would read the whole file
    encoders = _binary_encoders(parquet, sidecar, columns)
    column_list = ", ".join(quote_ident(c) for c in columns)
    cursor = conn.cursor()
    # The writer thread sends one batch while this one converts the next: the server, not the
    # conversion, then sets the pace.
    with cursor.copy(f"COPY {target.sql} ({column_list}) FROM STDIN (FORMAT {'binary' if encoders else 'csv'})",
                     writer=_WriterThread(cursor)) as copy:
        if encoders:
            copy.write(copy_binary.SIGNATURE)
            for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=columns):
                copy.write(memoryview(copy_binary.encode_rows(batch.columns, encoders)))
                rows += batch.num_rows
            copy.write(copy_binary.TRAILER)
        else:
            for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
                buffer = io.BytesIO()
                pacsv.write_csv(text_batch(batch, columns), buffer,
                                write_options=pacsv.WriteOptions(include_header=False, quoting_style="needed"))
                copy.write(buffer.getbuffer())
                rows += batch.num_rows
    return rows


def _binary_encoders(parquet: pq.ParquetFile, sidecar: dict, columns: list[str]) -> list | None:
    """One binary encoder per column, or None when the table must go as CSV: a column without a
    binary form, or a value in an overflow column (infinite dates, BC timestamps, odd arrays)."""
    by_name = {c["name"]: c for c in sidecar["columns"]}
    encoders = [copy_binary.column_encoder(by_name[c]) for c in columns]
    if None in encoders:
        return None
    overflow = [OVERFLOW_PREFIX + c for c in columns if OVERFLOW_PREFIX + c in parquet.schema_arrow.names]
    if overflow and any(batch.column(i).null_count < batch.num_rows
                        for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=overflow)
                        for i in range(batch.num_columns)):
        return None
    return encoders


def _insert_default_rows(conn: psycopg.Connection, target: TableRef, count: int) -> int:
    """A table without insertable columns still has rows."""
    for _ in range(count):
        conn.execute(f"INSERT INTO {target.sql} DEFAULT VALUES")
    return count
