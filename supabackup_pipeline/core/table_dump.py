"""Dump one table to `<schema>.<table>.parquet` plus its JSON sidecar, streaming.

Rows flow `COPY ... TO STDOUT (FORMAT csv)` → pyarrow's CSV reader (C++, block by block) →
per-column conversions (vectorized) → ParquetWriter, hashed while written. No table is ever held
whole in memory: peak memory is a few blocks, whatever the table size.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from supabackup_pipeline.core.catalog import TableDescription, TableRef, describe_table
from supabackup_pipeline.core.files import HashingWriter, open_private, write_json
from supabackup_pipeline.core.pg_types import OVERFLOW_PREFIX, codec_for, select_expressions
from supabackup_pipeline.core.snapshot import Snapshot

CSV_BLOCK_SIZE = 4 << 20
PARQUET_ROW_GROUP = 256 * 1024
FORMAT_VERSION = 1


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


def arrow_schema(description: TableDescription) -> pa.Schema:
    fields = []
    for column in description.columns:
        codec = codec_for(column)
        meta = {"pg_type": column.pg_type, "codec": codec.kind}
        fields.append(pa.field(column.name, codec.arrow_type, nullable=True, metadata=meta))
        if codec.overflow_sql:
            fields.append(pa.field(OVERFLOW_PREFIX + column.name, pa.string(), metadata={"overflow_of": column.name}))
    return pa.schema(fields, metadata={"supabackup_table": description.ref.qualified})


def dump_table(snapshot: Snapshot, conn: psycopg.Connection, ref: TableRef, out_dir: Path) -> TableDump:
    """Write the table's rows and description into out_dir; `conn` is a worker of `snapshot`."""
    started = time.monotonic()
    description = describe_table(conn, ref)
    stem = safe_file_stem(ref)
    parquet_path = out_dir / f"{stem}.parquet"
    schema = arrow_schema(description)
    rows, size, digest = _write_parquet(snapshot, conn, description, schema, parquet_path)
    sidecar = {
        "format_version": FORMAT_VERSION,
        **description.to_json(),
        "row_count": rows,
        "parquet": {"file": parquet_path.name, "bytes": size, "sha256": digest},
        "arrow_schema": [{"name": f.name, "type": str(f.type)} for f in schema],
        "overflow_columns": {
            f.name: f.metadata[b"overflow_of"].decode() for f in schema if f.metadata and b"overflow_of" in f.metadata
        },
    }
    sidecar_path = out_dir / f"{stem}.json"
    sidecar_sha = write_json(sidecar_path, sidecar)
    return TableDump(
        ref=ref, parquet_file=parquet_path.name, sidecar_file=sidecar_path.name, rows=rows, parquet_bytes=size,
        parquet_sha256=digest, sidecar_sha256=sidecar_sha, sidecar_bytes=sidecar_path.stat().st_size,
        seconds=time.monotonic() - started,
    )


def _write_parquet(
    snapshot: Snapshot, conn: psycopg.Connection, description: TableDescription, schema: pa.Schema, path: Path
) -> tuple[int, int, str]:
    exprs, csv_fields = select_expressions(description.columns)
    converts = {
        column.name: codec_for(column).convert for column in description.columns if codec_for(column).convert
    }
    rows = 0
    with open_private(path) as raw:
        sink = HashingWriter(raw)
        writer = pq.ParquetWriter(sink, schema, compression="zstd", write_statistics=False)
        try:
            if not exprs:  # a table without columns still has rows
                rows = conn.execute(f"SELECT count(*) FROM ONLY {description.ref.sql}").fetchone()[0]
            else:
                query = f"COPY (SELECT {', '.join(exprs)} FROM ONLY {description.ref.sql}) TO STDOUT (FORMAT csv)"
                with snapshot.copy_out(query) as stream:
                    if not stream.peek(1):  # an empty table: pyarrow refuses to open an empty CSV
                        return 0, *_finish(writer, sink)
                    reader = pacsv.open_csv(
                        stream,
                        read_options=pacsv.ReadOptions(column_names=[n for n, _ in csv_fields], block_size=CSV_BLOCK_SIZE),
                        parse_options=pacsv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False),
                        convert_options=pacsv.ConvertOptions(
                            column_types=dict(csv_fields), true_values=["t"], false_values=["f"], null_values=[""],
                            strings_can_be_null=True, quoted_strings_can_be_null=False,
                        ),
                    )
                    for batch in reader:
                        columns = [
                            converts[name](batch.column(i)) if name in converts else batch.column(i)
                            for i, name in enumerate(batch.schema.names)
                        ]
                        writer.write_batch(pa.RecordBatch.from_arrays(columns, schema=schema), row_group_size=PARQUET_ROW_GROUP)
                        rows += batch.num_rows
        finally:
            size, digest = _finish(writer, sink)
    return rows, size, digest


def _finish(writer: pq.ParquetWriter, sink: HashingWriter) -> tuple[int, str]:
    """Close the Parquet file (once) and return its size and SHA-256."""
    if writer.is_open:
        writer.close()
    sink.close()
    return sink.size, sink.hexdigest()
