"""The backup's floor on this machine: what reading alone costs, measured, against raw COPY.

The realistic benchmark's 1.3× target compares the backup (N workers, each a server backend, a
reader and a Parquet writer, sharing the machine's cores) with raw binary COPY on one connection
(a server backend and a client that only receives). This script measures, on the realistic
project and in one run, best of --repeat, how the backup's CPU splits:

  raw COPY        `COPY t TO STDOUT (FORMAT binary)` over the tables, one connection (the reference)
  read (ours)     the backup's own COPY of every table by the backup's workers in one exported
                  snapshot, read through psql and decoded and converted (core/copy_read,
                  convert_batch) as a backup does, then dropped: no Parquet, no files
  read (ADBC)     the same selects decoded by ADBC's compiled binary COPY reader into Arrow
                  (`pip install adbc-driver-postgresql`; left out when it is not installed)
  read (ADBC, as stored)
                  the columns themselves, no expression (as a backup would read them if it
                  turned numeric, interval, inet, arrays ... into their exact text on the client
                  rather than on the server), by ADBC: the least a read of these tables costs
  backup          core/database_backup.backup_database, database + users

and for each the seconds, the CPU seconds of this process (psql children included) and of the
rest of the machine (the server backends: run it on a quiet machine). The floor it prints is
(CPU of a read + the CPU the backup adds after the read: Parquet, SHA-256, files) / cores: the
backup's time if every core were busy all along.

    .venv/bin/python benchmarks/backup_floor.py --size small --repeat 3
    .venv/bin/python benchmarks/backup_floor.py --db-url postgresql://... (an already built project)
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import os
import shutil
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from database_benchmark import raw_copy  # noqa: E402
from realistic_benchmark import data_tables  # noqa: E402
from realistic_project import add_project_options, on_project  # noqa: E402

from supabackup_pipeline.core.catalog import TableRef, describe_table  # noqa: E402
from supabackup_pipeline.core.database_backup import DEFAULT_WORKERS, backup_database  # noqa: E402
from supabackup_pipeline.core.files import HashingReader  # noqa: E402
from supabackup_pipeline.core.pg_types import quote_ident, select_expressions  # noqa: E402
from supabackup_pipeline.core.snapshot import Snapshot, open_snapshot  # noqa: E402
from supabackup_pipeline.core.table_dump import (  # noqa: E402
    FORMAT_VERSION, arrow_schema, binary_batches, copy_select_sql, dumped_columns,
)


def machine_busy() -> float:
    """CPU seconds every core of the machine has been busy (not idle, not waiting on I/O) since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def measured(fn) -> tuple[float, float, float]:
    """(seconds, CPU seconds of this process and its children, CPU seconds of the rest of the machine)."""
    busy, own, started = machine_busy(), own_cpu(), time.perf_counter()
    fn()
    seconds, own = time.perf_counter() - started, own_cpu() - own
    return seconds, own, max(0.0, machine_busy() - busy - own)


def in_workers(db_url: str, tables: list[TableRef], workers: int, read_table) -> None:
    """`read_table(snapshot, worker state, ref)` for every table, largest first, by `workers` threads
    that each hold a connection (and whatever `read_table` opens) in one exported snapshot."""
    with open_snapshot(db_url) as snap:
        sizes = dict(snap.coordinator.execute(
            "SELECT n.nspname || '.' || c.relname, pg_total_relation_size(c.oid) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r'").fetchall())
        pending = sorted(tables, key=lambda ref: -sizes.get(ref.qualified, 0))  # as the backup orders them
        failures: list[BaseException] = []

        def work() -> None:
            try:
                with ExitStack() as stack:
                    state = {"conn": stack.enter_context(snap.worker()), "stack": stack}
                    while pending:
                        read_table(snap, state, pending.pop(0))
            except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
                failures.append(exc)

        threads = [threading.Thread(target=work) for _ in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failures:
            raise failures[0]


def read_ours(snap: Snapshot, state: dict, ref: TableRef) -> None:
    """The backup's read of one table, up to the converted record batches (dropped)."""
    if "copier" not in state:
        state["copier"] = state["stack"].enter_context(snap.copy_session())
    description = describe_table(state["conn"], ref)
    if not dumped_columns(description.columns):
        return
    with state["copier"].copy_out(copy_select_sql(description.columns, ref)) as pipe:
        for _ in binary_batches(HashingReader(pipe), description.columns, arrow_schema(description)):
            pass


def read_adbc(snap: Snapshot, state: dict, ref: TableRef, as_stored: bool = False) -> None:
    """The same select list (without the row marker, which ADBC does not need) read by ADBC; or,
    `as_stored`, the columns themselves."""
    import adbc_driver_postgresql.dbapi as adbc

    if "cursor" not in state:
        connection = state["stack"].enter_context(adbc.connect(snap.db_url, autocommit=True))
        state["cursor"] = connection.cursor()
        state["cursor"].execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        state["cursor"].execute(f"SET TRANSACTION SNAPSHOT '{snap.info.snapshot_id}'")
    columns = dumped_columns(describe_table(state["conn"], ref).columns)
    if not columns:
        return
    exprs = [quote_ident(c.name) for c in columns] if as_stored else select_expressions(columns, FORMAT_VERSION)[0]
    state["cursor"].execute(f"SELECT {', '.join(exprs)} FROM ONLY {ref.sql}")
    for _ in state["cursor"].fetch_record_batch():
        pass


def has_adbc() -> bool:
    return importlib.util.find_spec("adbc_driver_postgresql") is not None


def measure(db_url: str, workers: int, repeat: int) -> dict[str, tuple[float, float, float]]:
    """Best (by seconds) of `repeat` interleaved rounds of every step."""
    names = data_tables(db_url)
    refs = [TableRef(*name.split(".", 1)) for name in names]
    steps = {
        "raw COPY, 1 connection": lambda: raw_copy(db_url, names),
        f"read (ours), {workers} workers": lambda: in_workers(db_url, refs, workers, read_ours),
    }
    if has_adbc():
        steps[f"read (ADBC), {workers} workers"] = lambda: in_workers(db_url, refs, workers, read_adbc)
        as_stored = functools.partial(read_adbc, as_stored=True)
        steps[f"read (ADBC, as stored), {workers} workers"] = lambda: in_workers(db_url, refs, workers, as_stored)
    out = Path(tempfile.mkdtemp(prefix="supabackup-floor-"))

    def backup() -> None:
        shutil.rmtree(out / "b", ignore_errors=True)
        backup_database(db_url, out / "b", ["public"], include_users=True, workers=workers, log=lambda _: None)

    steps[f"backup, {workers} workers"] = backup
    best: dict[str, tuple[float, float, float]] = {}
    try:
        for _ in range(max(1, repeat)):
            for name, step in steps.items():
                result = measured(step)
                if name not in best or result[0] < best[name][0]:
                    best[name] = result
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return best


def report(best: dict[str, tuple[float, float, float]], workers: int) -> None:
    cores = len(os.sched_getaffinity(0))
    raw = best["raw COPY, 1 connection"][0]
    print(f"\n{'step':40} {'seconds':>8} {'× raw':>6} {'CPU: this process':>18} {'rest (server)':>14} {'all / cores':>12}")
    for name, (seconds, own, rest) in best.items():
        print(f"{name:40} {seconds:8.2f} {seconds / raw:6.2f} {own:18.2f} {rest:14.2f} {(own + rest) / cores:12.2f}")
    backup = best[f"backup, {workers} workers"]
    ours = best[f"read (ours), {workers} workers"]
    after_read = backup[1] - ours[1]
    print(f"\nthe backup's own CPU after the read (Parquet, SHA-256, files): {after_read:.2f} s")
    for name in (n for n in best if n.startswith("read")):
        _, own, rest = best[name]
        floor = (own + rest + after_read) / cores
        print(f"floor with {name}: ({own:.2f} + {rest:.2f} + {after_read:.2f}) CPU s / {cores} cores"
              f" = {floor:.2f} s = {floor / raw:.2f}× raw COPY")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_project_options(parser)
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the fastest of each step counts")
    args = parser.parse_args()
    if not has_adbc():
        print("adbc-driver-postgresql is not installed: the ADBC read is left out")
    on_project(args, lambda url: report(measure(url, args.workers, args.repeat), args.workers))


if __name__ == "__main__":
    main()
