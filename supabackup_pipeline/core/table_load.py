"""Load a table dump back into PostgreSQL: Parquet → `COPY ... FROM STDIN`, binary or CSV.

The inverse of table_dump. Binary COPY where copy_binary can encode every column (the server
parses no text). Otherwise, and for the value-by-value fingerprints, each Parquet column is turned
back into the exact text Postgres reads (Arrow compute and numpy, never a Python call per value),
an overflow value taking its column's place. Generated columns are left for the server to compute.
"""

from __future__ import annotations

import collections
import contextlib
import io
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import psycopg
from psycopg.abc import Buffer
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from supabackup_pipeline.core import copy_binary
from supabackup_pipeline.core.catalog import TableRef
from supabackup_pipeline.core.copy_binary_text import text_form_encoder
from supabackup_pipeline.core.pg_types import OVERFLOW_PREFIX, quote_ident

BATCH_BYTES = 8 << 20  # decoded Parquet bytes per batch: memory stays flat whatever the row width
MAX_BATCH_ROWS = 64 * 1024  # narrow rows: more per batch only adds memory, not speed
# Encoded COPY data prepared ahead of what is being sent (a batch larger than this still goes, alone).
# Bytes, not batches: the client gets ahead while the server is busy with a table of long values
# (little to encode), and spends it where encoding is slower than the server's binary load (composites).
IN_FLIGHT_BYTES = 16 << 20
READ_BUFFER = 1 << 20  # Parquet column chunks are read through a buffer of this size, not whole


_HEXDIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_HEX_PAIRS = np.stack([_HEXDIGITS[np.arange(256) >> 4], _HEXDIGITS[np.arange(256) & 0x0F]], axis=1)  # byte → 2 digits
_HEX_PREFIX = pa.scalar(b"\\x", pa.large_binary())


def binary_to_pg_hex(arr: pa.Array) -> pa.Array:
    """binary → bytea's hex input form `\\x0aff…`: every byte to its two digits by one table lookup,
    then Arrow prepends `\\x` to each value (3 bytes of memory per byte, not ~30 with per-byte indexes)."""
    arr = pa.concat_arrays([arr]) if arr.offset else arr
    n = len(arr)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32, count=n + 1).astype(np.int64)
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]] if arr.buffers()[2] else np.empty(0, np.uint8)
    digits = pa.Array.from_buffers(pa.large_binary(), n, [arr.buffers()[0], pa.py_buffer(2 * (offsets - offsets[0])),
                                                         pa.py_buffer(_HEX_PAIRS[data])], arr.null_count)
    return pc.binary_join_element_wise(_HEX_PREFIX, digits, pa.scalar(b"", pa.large_binary())).cast(pa.large_string())


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


@dataclass(frozen=True)
class LoadJob:
    """A table dump to load, into `target` (None: the table it came from)."""

    parquet_path: Path
    sidecar: dict
    target: TableRef | None = None

    @property
    def table(self) -> TableRef:
        return self.target or TableRef(self.sidecar["schema"], self.sidecar["table"])

    @property
    def columns(self) -> list[str]:
        return [c["name"] for c in self.sidecar["columns"] if not c.get("generated")]


def load_table(conn: psycopg.Connection, parquet_path: Path, sidecar: dict, target: TableRef | None = None) -> int:
    """COPY the dump's rows into `target` (default: the table it came from). Returns rows loaded."""
    with contextlib.closing(load_tables(conn, [LoadJob(parquet_path, sidecar, target)])) as loaded:
        return next(loaded)


def load_tables(conn: psycopg.Connection, jobs: list[LoadJob]) -> Iterator[int]:
    """COPY each job's rows into its table, in order, yielding the rows loaded as each COPY ends.

    Binary COPY when every column has a binary form (core/copy_binary.py) and no value sits in an
    overflow column; CSV otherwise. The caller owns the transaction (and emptied the tables first,
    if it meant to). A thread of its own reads and encodes the batches while this one sends them,
    and reads on into the next table while the server still works on this one's last rows: the
    server never waits for a table's first batch (0.9 s of a 6.4 s load on the realistic benchmark).
    """
    receive = _receive_functions(conn, [job.table for job in jobs])  # before any COPY, while conn is free
    prepared = _Handover(IN_FLIGHT_BYTES)
    producer = threading.Thread(target=_prepare_all, args=(jobs, receive, prepared), name="copy-prepare",
                                daemon=True)
    producer.start()
    try:
        for job in jobs:
            yield _copy_prepared(conn, job, prepared)
    finally:
        prepared.stop()  # a producer waiting to hand over a batch gives up
        producer.join()


class _Stopped(Exception):
    """The loading ended (done, or failed) before the producer had handed over everything."""


class _Handover:
    """Items from the producer to the sending thread, in order, with at most `limit` bytes of COPY
    data waiting (one item always fits, whatever its size)."""

    def __init__(self, limit: int) -> None:
        self._items: collections.deque = collections.deque()
        self._bytes = 0
        self._limit = limit
        self._stopped = False
        self._changed = threading.Condition()

    def put(self, item: tuple) -> None:
        """Wait for room; raises _Stopped once the sender has stopped taking items."""
        size = _size(item)
        with self._changed:
            while self._items and self._bytes + size > self._limit and not self._stopped:
                self._changed.wait()
            if self._stopped:
                raise _Stopped
            self._items.append((item, size))
            self._bytes += size
            self._changed.notify_all()

    def get(self) -> tuple:
        with self._changed:
            while not self._items:
                self._changed.wait()
            item, size = self._items.popleft()
            self._bytes -= size
            self._changed.notify_all()
            return item

    def stop(self) -> None:
        with self._changed:
            self._stopped = True
            self._items.clear()
            self._changed.notify_all()


def _size(item: tuple) -> int:
    kind, value = item
    return memoryview(value[0]).nbytes if kind == "data" else 0


def _prepare_all(jobs: list[LoadJob], receive: list[dict], prepared: _Handover) -> None:
    """For each job: its COPY statement (None: no column to copy), then its data, then the end."""
    try:
        for job, functions in zip(jobs, receive):
            for item in _prepared_items(job, functions):
                prepared.put(item)
    except _Stopped:
        pass
    except BaseException as exc:  # raised by the loading thread, in the middle of the job's COPY
        with contextlib.suppress(_Stopped):
            prepared.put(("failed", exc))


def _prepared_items(job: LoadJob, receive: dict[str, tuple]) -> Iterator[tuple]:
    columns = job.columns
    if not columns:
        yield "copy", None
        yield "end", None
        return
    parquet = pq.ParquetFile(job.parquet_path, buffer_size=READ_BUFFER)
    encoders = _binary_encoders(parquet, job.sidecar, columns, receive)
    # CSV also needs the overflow columns; binary those of dates and times holding ±infinity
    read = columns + [OVERFLOW_PREFIX + c for c, e in zip(columns, encoders) if isinstance(e, _Merged)] \
        if encoders else parquet.schema_arrow.names
    column_list = ", ".join(quote_ident(c) for c in columns)
    yield "copy", f"COPY {job.table.sql} ({column_list}) FROM STDIN (FORMAT {'binary' if encoders else 'csv'})"
    if encoders:
        yield "data", (copy_binary.SIGNATURE, 0)
    for batch in parquet.iter_batches(batch_size=batch_rows(parquet, read), columns=read):
        yield "data", (_encoded(batch, columns, encoders), batch.num_rows)
    if encoders:
        yield "data", (copy_binary.TRAILER, 0)
    yield "end", None


def _next(prepared: _Handover) -> tuple:
    kind, value = prepared.get()
    if kind == "failed":
        raise value
    return kind, value


def _copy_prepared(conn: psycopg.Connection, job: LoadJob, prepared: _Handover) -> int:
    """One job's COPY, of the data `_prepare_all` hands over for it."""
    kind, statement = _next(prepared)
    assert kind == "copy", kind
    if statement is None:
        _next(prepared)
        return _insert_default_rows(conn, job.table, job.sidecar["row_count"])
    rows = 0
    with conn.cursor().copy(statement) as copy:
        while (item := _next(prepared))[0] == "data":
            data, count = item[1]
            copy.write(data)
            rows += count
    return rows


def _encoded(batch: pa.RecordBatch, columns: list[str], encoders: list | None) -> Buffer:
    """One batch as COPY data: binary rows with `encoders`, else CSV of the Postgres text forms."""
    if encoders:
        fields = [e.encode(batch.column(c), batch.column(OVERFLOW_PREFIX + c)) if isinstance(e, _Merged)
                  else e(batch.column(c)) for c, e in zip(columns, encoders)]
        return memoryview(copy_binary.join_rows(fields))
    buffer = io.BytesIO()
    pacsv.write_csv(text_batch(batch, columns), buffer,
                    write_options=pacsv.WriteOptions(include_header=False, quoting_style="needed"))
    return buffer.getbuffer()


def batch_rows(parquet: pq.ParquetFile, columns: list[str]) -> int:
    """Rows per batch so that a batch holds about BATCH_BYTES of decoded values, sized by the widest
    row group (Parquet records each column chunk's uncompressed size): a table of 64 KB blobs goes
    ~128 rows at a time, a narrow one MAX_BATCH_ROWS."""
    meta = parquet.metadata
    names = parquet.schema_arrow.names
    wanted = {i for i, leaf in enumerate(parquet.schema) if leaf.path.split(".")[0] in set(columns) & set(names)}
    widest = 0.0
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        if group.num_rows:
            size = sum(group.column(i).total_uncompressed_size for i in wanted)
            widest = max(widest, size / group.num_rows)
    return int(max(1, min(MAX_BATCH_ROWS, BATCH_BYTES // max(widest, 1.0))))


def _receive_functions(conn: psycopg.Connection, tables: list[TableRef]) -> list[dict[str, tuple]]:
    """For each table: its columns → the receive function of their type (of a domain's base type),
    for an array its element type's receive function and OID, for money this session's scale, for
    a composite its attributes' type OIDs and receive functions: what the server will read the
    column's binary fields with (copy_binary_text.text_form_encoder). One query for all the tables."""
    found: list[dict[str, tuple]] = [{} for _ in tables]
    rows = conn.execute(
        "SELECT t.i, a.attname, b.typreceive::text, e.typreceive::text, e.oid,"
        "  CASE WHEN b.typreceive = 'cash_recv'::regproc THEN to_json(scale(1::money::numeric))"
        "   WHEN b.typtype = 'c' THEN (SELECT json_agg(json_build_array(ca.atttypid::int8, cb.typreceive::text) ORDER BY ca.attnum)"
        "    FROM pg_attribute ca JOIN pg_type ct ON ct.oid = ca.atttypid"
        "    JOIN pg_type cb ON cb.oid = CASE WHEN ct.typtype = 'd' THEN ct.typbasetype ELSE ct.oid END"
        "    WHERE ca.attrelid = b.typrelid AND ca.attnum > 0 AND NOT ca.attisdropped) END"
        " FROM unnest(%s::regclass[]) WITH ORDINALITY t(rel, i)"
        " JOIN pg_attribute a ON a.attrelid = t.rel"
        " JOIN pg_type ty ON ty.oid = a.atttypid"
        " JOIN pg_type b ON b.oid = CASE WHEN ty.typtype = 'd' THEN ty.typbasetype ELSE ty.oid END"
        " LEFT JOIN pg_type e ON e.oid = b.typelem AND b.typreceive = 'array_recv'::regproc"
        " WHERE a.attnum > 0 AND NOT a.attisdropped", ([t.sql for t in tables],)).fetchall()
    for i, name, receive, element_receive, element_oid, detail in rows:
        found[i - 1][name] = (receive, element_receive, element_oid, detail)
    return found


@dataclass(frozen=True)
class _Merged:
    """The encoder of a column read together with its overflow column (copy_binary.with_overflow)."""

    encode: Callable[[pa.Array, pa.Array], pa.Array]


def _binary_encoders(parquet: pq.ParquetFile, sidecar: dict, columns: list[str],
                     receive: dict[str, tuple]) -> list | None:
    """One binary encoder per column, or None when the table must go as CSV: a column without a
    binary form, a value in an overflow column other than a date's or time's ±infinity (BC
    timestamps, odd arrays), or a text-form value (enum, inet, interval, timetz, macaddr, money, a
    composite) copy_binary_text cannot encode exactly."""
    by_name = {c["name"]: c for c in sidecar["columns"]}
    from_text = {c: text_form_encoder(*receive.get(c, ()))
                 for c in columns if copy_binary.column_encoder(by_name[c]) is None}
    encoders = [from_text[c] if c in from_text else copy_binary.column_encoder(by_name[c]) for c in columns]
    if None in encoders:
        return None
    for name, found in _overflow_values(parquet, columns).items():
        if not found <= copy_binary.special_values(by_name[name]):
            return None
        encoders[columns.index(name)] = _Merged(copy_binary.with_overflow(by_name[name]))
    try:
        for name, encode in from_text.items():  # every value tried before the COPY starts: a failure would abort it
            if encode is copy_binary.var_fields:  # an enum's label: nothing to parse
                continue
            for batch in parquet.iter_batches(batch_size=batch_rows(parquet, [name]), columns=[name]):
                encode(batch.column(0))
    except ValueError:
        return None
    return encoders


def _overflow_values(parquet: pq.ParquetFile, columns: list[str], most: int = 3) -> dict[str, set[str]]:
    """Column → the distinct texts in its overflow column (up to `most` + 1 of them), for the
    columns whose overflow column holds any."""
    names = parquet.schema_arrow.names
    overflow = [OVERFLOW_PREFIX + c for c in columns if OVERFLOW_PREFIX + c in names]
    found: dict[str, set[str]] = {}
    if not overflow:
        return found
    for batch in parquet.iter_batches(batch_size=batch_rows(parquet, overflow), columns=overflow):
        for i, name in enumerate(overflow):
            column = batch.column(i)
            if column.null_count < len(column):
                values = found.setdefault(name[len(OVERFLOW_PREFIX):], set())
                if len(values) <= most:
                    values.update(pc.unique(column.drop_null()).to_pylist()[:most + 1])
    return found


def _insert_default_rows(conn: psycopg.Connection, target: TableRef, count: int) -> int:
    """A table without insertable columns still has rows."""
    for _ in range(count):
        conn.execute(f"INSERT INTO {target.sql} DEFAULT VALUES")
    return count
