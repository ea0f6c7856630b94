"""Would ADBC make the backup fast enough? The backup against a prototype of it that reads through ADBC.

Issue 13's backup target (≤ 1.3× raw COPY) is below the floor of the current read path (psql's
pipe into `core/copy_read`, see backup_floor.py). This script measures, end to end, the first
step of a redesign: the same `backup_database`, with each worker reading its tables through an
ADBC connection in the exported snapshot instead of psql, the format-4 select lists without the
row marker, and the converted columns hashed (`ValuesDigest`) in place of the COPY stream, which
ADBC does not expose. Rounds alternate between the backup and the prototype, best of --repeat;
then the prototype's Parquet is compared with the backup's, table by table.

It is an experiment, not a path of the product: it replaces two private functions of the
backup while it runs, and needs `pip install adbc-driver-postgresql` (not a dependency).

    .venv/bin/python benchmarks/adbc_prototype.py --size small --repeat 3
    .venv/bin/python benchmarks/adbc_prototype.py --db-url postgresql://... (an already built project)
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from realistic_project import add_project_options, on_project  # noqa: E402

from supabackup_pipeline.core import snapshot as snapshot_module  # noqa: E402
from supabackup_pipeline.core import table_dump  # noqa: E402
from supabackup_pipeline.core.copy_read import _PG_EPOCH_DAYS, _PG_EPOCH_US  # noqa: E402
from supabackup_pipeline.core.database_backup import DEFAULT_WORKERS, backup_database  # noqa: E402
from supabackup_pipeline.core.files import HashingWriter, open_private  # noqa: E402
from supabackup_pipeline.core.pg_types import SESSION_SETTINGS, convert_batch, select_expressions, unpack_bits  # noqa: E402


def as_sent(arr: pa.Array) -> pa.Array:
    """ADBC's date, timestamp or time as the raw integer binary COPY sends, which `convert_batch`
    splits (pg_datetime): ADBC adds the 1970 epoch to dates and timestamps, wrapping at the
    extremes (±infinity), so subtracting it, wrapping too, gives the raw value back."""
    kind = arr.type
    if not (pa.types.is_date32(kind) or pa.types.is_timestamp(kind) or pa.types.is_time64(kind)):
        return arr
    arr = pa.concat_arrays([arr]) if arr.offset else arr
    width = np.int32 if pa.types.is_date32(kind) else np.int64
    shift = _PG_EPOCH_DAYS if pa.types.is_date32(kind) else _PG_EPOCH_US if pa.types.is_timestamp(kind) else 0
    with np.errstate(over="ignore"):
        raw = np.frombuffer(arr.buffers()[1], width, count=len(arr)) - width(shift)
    return pa.Array.from_buffers(pa.from_numpy_dtype(width), len(arr), [arr.buffers()[0], pa.py_buffer(raw)])


def feed(hashers: dict[str, "hashlib._Hash"], key: str, arr: pa.Array) -> None:
    """One column's values into `hashers`, a hash per part so that how the column is cut into
    batches does not matter: `key.valid` a byte per row; `key.lengths` the lengths of variable
    values (0 for NULL) and `key.data` their bytes, or `key.values` fixed-width values with NULL
    slots zeroed; list elements under `key.item` the same way."""
    def part(name: str):
        return hashers.setdefault(f"{key}.{name}", hashlib.sha256())

    arr = arr.storage if isinstance(arr, pa.ExtensionArray) else arr
    n, kind = len(arr), arr.type
    valid = unpack_bits(arr.buffers()[0], arr.offset, n, True).view(np.uint8)
    part("valid").update(valid.tobytes())
    if pa.types.is_string(kind) or pa.types.is_binary(kind) or pa.types.is_list(kind):
        offsets = np.frombuffer(arr.buffers()[1], np.int32, count=n + 1, offset=4 * arr.offset)
        lengths = np.diff(offsets)
        if (lengths[valid == 0] != 0).any():
            raise ValueError("a NULL value with a length")
        part("lengths").update(lengths.astype(np.int32).tobytes())
        if pa.types.is_list(kind):
            feed(hashers, f"{key}.item", arr.values.slice(int(offsets[0]), int(offsets[-1] - offsets[0])))
        elif arr.buffers()[2] is not None:
            part("data").update(memoryview(arr.buffers()[2])[int(offsets[0]):int(offsets[-1])])
    elif pa.types.is_boolean(kind):
        part("values").update((unpack_bits(arr.buffers()[1], arr.offset, n, False).view(np.uint8) & valid).tobytes())
    else:
        width = kind.byte_width
        values = np.frombuffer(arr.buffers()[1], np.uint8, count=n * width, offset=arr.offset * width).reshape(n, width)
        part("values").update((values * valid[:, None] if arr.null_count else values).tobytes())


class ValuesDigest:
    """SHA-256 over the SHA-256 of every part of every column of the batches `update` saw."""

    def __init__(self) -> None:
        self.hashers: dict[str, hashlib._Hash] = {}

    def update(self, batch: pa.RecordBatch) -> None:
        for i, column in enumerate(batch.columns):
            feed(self.hashers, str(i), column)

    def hexdigest(self) -> str:
        return hashlib.sha256(b"".join(k.encode() + h.digest() for k, h in sorted(self.hashers.items()))).hexdigest()


class AdbcReader:
    """An ADBC connection in the snapshot, with the backup's session settings, batches of ~4 MB."""

    def __init__(self, snap) -> None:
        import adbc_driver_postgresql.dbapi as adbc

        self.connection = adbc.connect(snap.db_url, autocommit=True)
        self.cursor = self.connection.cursor()
        for name, value in SESSION_SETTINGS.items():
            self.cursor.execute(f"SET {name} = '{value}'")
        self.cursor.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        self.cursor.execute(f"SET TRANSACTION SNAPSHOT '{snap.info.snapshot_id}'")
        self.cursor.adbc_statement.set_options(**{"adbc.postgresql.batch_size_hint_bytes": str(4 << 20)})

    def close(self) -> None:
        self.cursor.close()
        self.connection.close()


@contextlib.contextmanager
def adbc_session(snap):
    """Stands in for `Snapshot.copy_session`: what each worker reads through."""
    reader = AdbcReader(snap)
    try:
        yield reader
    finally:
        reader.close()


def write_parquet_through_adbc(reader: AdbcReader, conn, description, schema, path, sync=None):
    """Stands in for `table_dump._write_parquet`: the same result, the digest of the columns instead
    of the COPY stream's."""
    columns = table_dump.dumped_columns(description.columns)
    exprs, _ = select_expressions(columns, table_dump.FORMAT_VERSION)
    rows, digest = 0, ValuesDigest()
    with open_private(path) as raw:
        sink = HashingWriter(raw, sync, path)
        writer = table_dump.parquet_writer(sink, schema)
        try:
            if not columns:
                rows = conn.execute(f"SELECT count(*) FROM ONLY {description.ref.sql}").fetchone()[0]
            else:
                reader.cursor.execute(f"SELECT {', '.join(exprs)} FROM ONLY {description.ref.sql}")
                for fetched in reader.cursor.fetch_record_batch():
                    arrays = convert_batch(columns, [as_sent(a) for a in fetched.columns])
                    batch = pa.RecordBatch.from_arrays(arrays, schema=schema)
                    digest.update(batch)
                    writer.write_batch(batch, row_group_size=table_dump.PARQUET_ROW_GROUP)
                    rows += batch.num_rows
        finally:
            size, sha = table_dump._finish(writer, sink)
    return rows, size, sha, digest.hexdigest()


@contextlib.contextmanager
def reading_through_adbc():
    saved = table_dump._write_parquet, snapshot_module.Snapshot.copy_session
    table_dump._write_parquet, snapshot_module.Snapshot.copy_session = write_parquet_through_adbc, adbc_session
    try:
        yield
    finally:
        table_dump._write_parquet, snapshot_module.Snapshot.copy_session = saved


def client_cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def run(db_url: str, workers: int, repeat: int) -> None:
    out = Path(tempfile.mkdtemp(prefix="supabackup-adbc-"))
    best: dict[str, float] = {}
    try:
        for round_ in range(max(1, repeat)):
            for name in ("backup", "ADBC prototype"):
                shutil.rmtree(out / name, ignore_errors=True)
                started, cpu = time.perf_counter(), client_cpu()
                with reading_through_adbc() if name != "backup" else contextlib.nullcontext():
                    backup_database(db_url, out / name, ["public"], include_users=True, workers=workers,
                                    log=lambda _: None)
                seconds = time.perf_counter() - started
                best[name] = min(best.get(name, seconds), seconds)
                print(f"round {round_ + 1} {name:15} {seconds:6.2f} s, client CPU {client_cpu() - cpu:.2f} s", flush=True)
        ratio = best["ADBC prototype"] / best["backup"]
        print(f"best: backup {best['backup']:.2f} s, ADBC prototype {best['ADBC prototype']:.2f} s = {ratio:.2f}×")
        compare(out / "backup", out / "ADBC prototype")
    finally:
        shutil.rmtree(out, ignore_errors=True)


def compare(ours: Path, prototype: Path) -> None:
    """The prototype's Parquet against the backup's, table by table."""
    differing = [p.name for p in sorted(prototype.rglob("*.parquet"))
                 if not pq.read_table(p).equals(pq.read_table(ours / p.relative_to(prototype)))]
    tables = len(list(prototype.rglob("*.parquet")))
    print(f"Parquet of {tables} tables: " + (f"{len(differing)} differ: {', '.join(differing)}" if differing else "all equal"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_project_options(parser)
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the fastest of each counts")
    args = parser.parse_args()
    if importlib.util.find_spec("adbc_driver_postgresql") is None:
        raise SystemExit("adbc-driver-postgresql is not installed: pip install adbc-driver-postgresql")
    on_project(args, lambda url: run(url, args.workers, args.repeat))


if __name__ == "__main__":
    main()
