"""Where the backup's time goes, per table and per column type, on the realistic project.

For every table the backup dumps, the stages of core/table_dump.py are timed one after the other
(not overlapped as in a real backup, so each can be seen alone):
  describe core/catalog.describe_table (the sidecar's catalog queries),
  copy     the backup's own `COPY (SELECT ...) TO STDOUT (FORMAT binary)` through psql into memory
           (the server's send functions and select expressions, plus psql),
  parse    core/copy_read over those bytes,
  convert  core/pg_types.convert_batch (arrays' text form → lists), timed per column,
  write    ParquetWriter (zstd) into memory;
and, per column, the server's share: `SELECT sum(octet_length((<select expression>)::text))`
less a bare scan of the table, next to the same for the column's plain `::text` (what our select
expressions — range checks, hex encodings — add to the type's own output function). The script prints the tables by total time, then the column
types by time (server + convert) with their share of the CSV bytes.

    .venv/bin/python benchmarks/type_profile.py --size small
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import psycopg
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from realistic_benchmark import data_tables  # noqa: E402
from realistic_project import add_size_options, scale_of, throwaway_project  # noqa: E402

from supabackup_pipeline.core.catalog import TableRef, describe_table  # noqa: E402
from supabackup_pipeline.core.pg_types import codec_for, quote_ident, select_expressions  # noqa: E402
from supabackup_pipeline.core.snapshot import client_connection, client_program, session_options  # noqa: E402
from supabackup_pipeline.core.table_dump import arrow_schema, binary_batches, copy_select_sql, parquet_writer  # noqa: E402


STAGES = ("describe", "copy", "parse", "convert", "write")


def copy_bytes(db_url: str, sql: str) -> bytes:
    conninfo, env = client_connection(db_url, PGOPTIONS=session_options())
    return subprocess.run([client_program("psql"), "-X", "-q", "--dbname", conninfo, "-c", sql],
                          capture_output=True, check=True, env=env).stdout


def timed_convert(convert_seconds: dict[str, float]):
    """(pg_types.codec_for, a codec_for whose convert adds its seconds to convert_seconds[column])."""
    import supabackup_pipeline.core.pg_types as pg_types

    original = pg_types.codec_for

    def codec_for_timed(column):
        codec = original(column)
        if codec.convert is None:
            return codec

        def convert(arr, _inner=codec.convert, _name=column.name):
            started = time.perf_counter()
            try:
                return _inner(arr)
            finally:
                convert_seconds[_name] += time.perf_counter() - started

        return dataclasses.replace(codec, convert=convert)

    return original, codec_for_timed


def profile_table(db: psycopg.Connection, db_url: str, ref: TableRef) -> dict:
    """The four stages' seconds, and per column: type, convert and server seconds, CSV bytes."""
    import supabackup_pipeline.core.pg_types as pg_types

    started = time.perf_counter()
    description = describe_table(db, ref)
    stages = {"describe": time.perf_counter() - started}
    schema = arrow_schema(description)
    started = time.perf_counter()
    data = copy_bytes(db_url, copy_select_sql(description.columns, ref))
    stages["copy"] = time.perf_counter() - started
    convert_seconds: dict[str, float] = defaultdict(float)
    original, wrapped = timed_convert(convert_seconds)
    pg_types.codec_for = wrapped
    try:
        started = time.perf_counter()
        batches = list(binary_batches(io.BytesIO(data), description.columns, schema))
        stages["parse+convert"] = time.perf_counter() - started
    finally:
        pg_types.codec_for = original
    stages["convert"] = sum(convert_seconds.values())
    stages["parse"] = stages.pop("parse+convert") - stages["convert"]
    started = time.perf_counter()
    writer = parquet_writer(pa.BufferOutputStream(), schema)
    for batch in batches:
        writer.write_batch(batch)
    writer.close()
    stages["write"] = time.perf_counter() - started
    return {"table": ref.qualified, "rows": sum(b.num_rows for b in batches), "csv_bytes": len(data),
            "stages": stages, "columns": column_costs(db, ref, description.columns, convert_seconds)}


def column_costs(db: psycopg.Connection, ref: TableRef, columns, convert_seconds) -> list[dict]:
    """Per column: its type, the server's seconds for its select expression(s), its text bytes."""
    scan = _seconds(db, f"SELECT count(*) FROM ONLY {ref.sql}")[0]
    out = []
    for column in columns:
        exprs, _ = select_expressions([column])
        total = " + ".join(f"coalesce(octet_length(({e})::text), 0)" for e in exprs)
        seconds, size = _seconds(db, f"SELECT sum({total}) FROM ONLY {ref.sql}")
        bare, _ = _seconds(db, f"SELECT sum(octet_length({quote_ident(column.name)}::text)) FROM ONLY {ref.sql}")
        out.append({"type": column.pg_type.split("(")[0], "codec": codec_for(column).kind,
                    "server": max(0.0, seconds - scan), "bare": max(0.0, bare - scan),
                    "convert": convert_seconds.get(column.name, 0.0), "bytes": int(size or 0)})
    return out


def _seconds(db: psycopg.Connection, sql: str) -> tuple[float, object]:
    started = time.perf_counter()
    value = db.execute(sql).fetchone()[0]
    return time.perf_counter() - started, value


def print_tables(profiles: list[dict], top: int) -> None:
    print(f"\n{'table':30} {'rows':>9} {'COPY MB':>7}" + "".join(f" {k:>8}" for k in STAGES) + "  (seconds)")
    for p in sorted(profiles, key=lambda p: -sum(p["stages"].values()))[:top]:
        print(f"{p['table']:30} {p['rows']:>9,} {p['csv_bytes'] / 1e6:7.1f}" + "".join(f" {p['stages'][k]:8.2f}" for k in STAGES))
    print(f"{'all tables':30} {sum(p['rows'] for p in profiles):>9,} {sum(p['csv_bytes'] for p in profiles) / 1e6:7.1f}"
          + "".join(f" {sum(p['stages'][k] for p in profiles):8.2f}" for k in STAGES))


def print_types(profiles: list[dict]) -> None:
    by_type: dict[str, dict] = defaultdict(lambda: {"columns": 0, "server": 0.0, "bare": 0.0, "convert": 0.0, "bytes": 0,
                                                    "codec": ""})
    for p in profiles:
        for c in p["columns"]:
            entry = by_type[c["type"]]
            entry["columns"] += 1
            entry["codec"] = c["codec"]
            for key in ("server", "bare", "convert", "bytes"):
                entry[key] += c[key]
    total_bytes = sum(e["bytes"] for e in by_type.values()) or 1
    print(f"\n{'column type':28} {'codec':6} {'cols':>4} {'server s':>8} {'(bare ::text)':>13} {'convert s':>9}"
          f" {'text MB':>8} {'share':>6}")
    for name, e in sorted(by_type.items(), key=lambda kv: -(kv[1]["server"] + kv[1]["convert"])):
        print(f"{name:28} {e['codec']:6} {e['columns']:>4} {e['server']:8.2f} {e['bare']:13.2f} {e['convert']:9.2f}"
              f" {e['bytes'] / 1e6:8.1f} {e['bytes'] / total_bytes:6.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_size_options(parser)
    parser.add_argument("--top", type=int, default=15, help="tables to list")
    args = parser.parse_args()
    with throwaway_project(scale_of(args), log=lambda m: None) as info:
        with psycopg.connect(info.db_url, autocommit=True) as db:
            profiles = [profile_table(db, info.db_url, TableRef(*t.split(".", 1))) for t in data_tables(info.db_url)]
    print_tables(profiles, args.top)
    print_types(profiles)


if __name__ == "__main__":
    main()
