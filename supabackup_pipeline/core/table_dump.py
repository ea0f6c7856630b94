"""Dump one table to `<schema>.<table>.parquet` plus its JSON sidecar, streaming.

Rows flow `COPY ... TO STDOUT (FORMAT binary)` → `copy_read` (vectorized, chunk by chunk) →
per-column conversions → ParquetWriter, hashed while written. No table is ever held whole in
memory: peak memory is a chunk or two, whatever the table size.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq

from supabackup_pipeline.core.catalog import TableDescription, TableRef, describe_table
from supabackup_pipeline.core.copy_read import MARKER_SQL, read_chunks
from supabackup_pipeline.core.errors import SupabackupError
from supabackup_pipeline.core.files import BackgroundSync, HashingReader, HashingWriter, open_private, write_json
from supabackup_pipeline.core.pg_types import OVERFLOW_PREFIX, Column, codec_for, convert_batch, select_expressions
from supabackup_pipeline.core.snapshot import CopySession, Snapshot

# Each chunk of COPY data (copy_read.CHUNK_BYTES) becomes one batch and one Parquet row group
# (ParquetWriter.write_batch closes a row group per call; PARQUET_ROW_GROUP only caps it).
PARQUET_ROW_GROUP = 256 * 1024
ZSTD_LEVEL = 1
# 1: rows read as CSV, copy_sha256 of that CSV text. 2: read as binary COPY (first field a marker,
# see copy_read), copy_sha256 of that binary stream. 3: the same, but dates and times are read as
# they are and split into value and overflow on the client (pg_datetime). Same Parquet in 1-3.
# 4: as 3, without the stored generated columns (`dumped_columns`).
FORMAT_VERSION = 4


def safe_file_stem(ref: TableRef) -> str:
    """`schema.table` with every byte outside [A-Za-z0-9_-] percent-encoded: never a path separator,
    never `..`, and the one `.` left separates schema from table unambiguously."""

    def enc(part: str) -> str:
        return "".join(
            ch if (ch.isascii() and (ch.isalnum() or ch in "_-")) else "".join(f"%{b:02X}" for b in ch.encode())
            for ch in part
        )

    return f"{enc(ref.schema)}.{enc(ref.name)}"


@dataclass
class TableDump:
    """What a dump wrote, for the manifest and the asset's metadata."""

    ref: TableRef
    parquet_file: str
    sidecar_file: str
    rows: int
    parquet_bytes: int
    parquet_sha256: str
    sidecar_sha256: str
    sidecar_bytes: int
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def dumped_columns(columns: list[Column], format_version: int = FORMAT_VERSION) -> list[Column]:
    """The columns a dump of `format_version` holds. From format 4 on, stored generated columns are
    left out, as `pg_dump` and `COPY table` leave them out: a restore cannot load them, the server
    computes them from the other columns (the sidecar keeps the expression), and printing them (a
    tsvector of every text body) cost 6-9% of the realistic benchmark's backup."""
    return [c for c in columns if format_version < 4 or not c.generated]


def arrow_schema(description: TableDescription) -> pa.Schema:
    fields = []
    for column in dumped_columns(description.columns):
        codec = codec_for(column)
        meta = {"pg_type": column.pg_type, "codec": codec.kind}
        fields.append(pa.field(column.name, codec.arrow_type, nullable=True, metadata=meta))
        if codec.overflow_sql:
            fields.append(pa.field(OVERFLOW_PREFIX + column.name, pa.string(), metadata={"overflow_of": column.name}))
    names = [f.name for f in fields]
    for name in sorted({n for n in names if names.count(n) > 1}):
        raise SupabackupError(
            f"table {description.ref.qualified} cannot be backed up: its column {name} has the name of the column"
            f" in which supabackup keeps the exact text of column {name[len(OVERFLOW_PREFIX):]}'s values outside"
            " Arrow's range; rename the column to back up this table"
        )
    return pa.schema(fields, metadata={"supabackup_table": description.ref.qualified})


def _leaf_encodings(name: str, arrow_type: pa.DataType) -> dict[str, str]:
    """Parquet encodings by leaf type: delta for integers (ids, timestamps, dates sort of count up),
    byte-stream-split for floats (zstd then finds the repeated exponent bytes)."""
    if pa.types.is_list(arrow_type):
        return _leaf_encodings(f"{name}.list.element", arrow_type.value_type)
    if pa.types.is_floating(arrow_type):
        return {name: "BYTE_STREAM_SPLIT"}
    if pa.types.is_integer(arrow_type) or pa.types.is_temporal(arrow_type):
        return {name: "DELTA_BINARY_PACKED"}
    return {}


def parquet_writer(sink, schema: pa.Schema) -> pq.ParquetWriter:
    """zstd without dictionaries: most columns of a table are near-unique (ids, uuids, timestamps,
    JSON), where a dictionary is built, then thrown away or kept at a loss; zstd finds the repeats of
    the few low-cardinality columns by itself. Measured on the benchmark's tables: half the CPU
    time of the dictionary default and a smaller file."""
    encodings: dict[str, str] = {}
    for field in schema:
        if "." not in field.name:  # a dotted name would be ambiguous as a column path
            encodings.update(_leaf_encodings(field.name, field.type))
    return pq.ParquetWriter(
        sink, schema, compression="zstd", compression_level=ZSTD_LEVEL, use_dictionary=False,
        column_encoding=encodings or None, write_statistics=False,
    )


def dump_table(snapshot: Snapshot | CopySession, conn: psycopg.Connection, ref: TableRef, out_dir: Path,
               sync: BackgroundSync | None = None) -> TableDump:
    """Write the table's rows and description into out_dir; `conn` is a worker of `snapshot` (or
    of the snapshot of the worker's psql `CopySession`). Files are fsynced before this returns, or
    by `sync`."""
    started = time.monotonic()
    description = describe_table(conn, ref)
    stem = safe_file_stem(ref)
    parquet_path = out_dir / f"{stem}.parquet"
    schema = arrow_schema(description)
    rows, size, digest, copy_digest = _write_parquet(snapshot, conn, description, schema, parquet_path, sync)
    sidecar = {
        "format_version": FORMAT_VERSION,
        **description.to_json(),
        "row_count": rows,
        # The rows as the server wrote them (`copy_select_sql` of this format): a restore reads the
        # restored table the same way and compares, which proves it equal to the source without parsing it.
        "copy_sha256": copy_digest,
        "parquet": {"file": parquet_path.name, "bytes": size, "sha256": digest},
        "arrow_schema": [{"name": f.name, "type": str(f.type)} for f in schema],
        "overflow_columns": {
            f.name: f.metadata[b"overflow_of"].decode() for f in schema if f.metadata and b"overflow_of" in f.metadata
        },
    }
    sidecar_path = out_dir / f"{stem}.json"
    sidecar_sha = write_json(sidecar_path, sidecar, sync)
    return TableDump(
        ref=ref, parquet_file=parquet_path.name, sidecar_file=sidecar_path.name, rows=rows, parquet_bytes=size,
        parquet_sha256=digest, sidecar_sha256=sidecar_sha, sidecar_bytes=sidecar_path.stat().st_size,
        seconds=time.monotonic() - started,
    )


def copy_select_sql(columns: list[Column], ref: TableRef, format_version: int = FORMAT_VERSION) -> str:
    """The COPY a dump of `format_version` reads a table with (a restore reads it back the same way,
    to compare digests)."""
    exprs, _ = select_expressions(dumped_columns(columns, format_version), format_version)
    if format_version < 2:
        return f"COPY (SELECT {', '.join(exprs)} FROM ONLY {ref.sql}) TO STDOUT (FORMAT csv)"
    return f"COPY (SELECT {', '.join([MARKER_SQL, *exprs])} FROM ONLY {ref.sql}) TO STDOUT (FORMAT binary)"


def _write_parquet(
    snapshot: Snapshot | CopySession, conn: psycopg.Connection, description: TableDescription, schema: pa.Schema,
    path: Path, sync: BackgroundSync | None = None,
) -> tuple[int, int, str, str | None]:
    """(rows, Parquet size, Parquet SHA-256, SHA-256 of the COPY stream read)."""
    rows = 0
    copied = None
    with open_private(path) as raw:
        sink = HashingWriter(raw, sync, path)
        writer = parquet_writer(sink, schema)
        try:
            if not dumped_columns(description.columns):  # a dump without columns still has rows
                rows = conn.execute(f"SELECT count(*) FROM ONLY {description.ref.sql}").fetchone()[0]
            else:
                with snapshot.copy_out(copy_select_sql(description.columns, description.ref)) as pipe:
                    copied = HashingReader(pipe)
                    for batch in binary_batches(copied, description.columns, schema):
                        writer.write_batch(batch, row_group_size=PARQUET_ROW_GROUP)
                        rows += batch.num_rows
        finally:
            size, digest = _finish(writer, sink)
    return rows, size, digest, copied.hexdigest() if copied else None


def binary_batches(stream, columns: list[Column], schema: pa.Schema):
    """Record batches (in `schema`) from the bytes of `copy_select_sql(columns, ...)` (binary)."""
    columns = dumped_columns(columns)
    _, fields = select_expressions(columns, FORMAT_VERSION)
    for arrays in read_chunks(stream, [t for _, t in fields]):
        yield pa.RecordBatch.from_arrays(convert_batch(columns, arrays), schema=schema)


def _finish(writer: pq.ParquetWriter, sink: HashingWriter) -> tuple[int, str]:
    """Close the Parquet file (once) and return its size and SHA-256."""
    if writer.is_open:
        writer.close()
    sink.close()
    return sink.size, sink.hexdigest()
