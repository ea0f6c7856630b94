"""Back up the database part of a project (tables, users, schema DDL, sequences) from ONE snapshot.

Tables are dumped by a few worker connections in parallel, all reading the coordinator's exported
snapshot. The users export (auth tables) is read in the same snapshot, so a table row that names a
user and the user itself always agree.
"""

from __future__ import annotations

import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from supabackup_pipeline.core.catalog import NO_SELECT, TableRef, extension_table_rows, list_tables, unreadable_tables
from supabackup_pipeline.core.errors import SupabackupError
from supabackup_pipeline.core.files import BackgroundSync, fsync_path, make_private_dir, sha256_file, write_json
from supabackup_pipeline.core.parts import DatabasePart, Parts, TableEntry, UsersPart
from supabackup_pipeline.core.process_memory import freed_memory_kept
from supabackup_pipeline.core.project_lock import lock_project
from supabackup_pipeline.core.schema_catalog import read_schema_catalog
from supabackup_pipeline.core.schema_dump import dump_command, write_plain_sql
from supabackup_pipeline.core.snapshot import Snapshot, SnapshotInfo, open_snapshot
from supabackup_pipeline.core.table_dump import TableDump, dump_table

# Users and how they sign in. Sessions, refresh tokens and one-time tokens are never backed up:
# restoring them would revive logins that were revoked since.
AUTH_TABLES = ["users", "identities", "mfa_factors", "webauthn_credentials"]


def default_workers() -> int:
    """One table dump per core (at most 8): each worker keeps about one core busy between its
    server backend, its psql and its Python thread, so more workers than cores add memory (~75 MB
    each) but, on a quiet machine, no speed."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


DEFAULT_WORKERS = default_workers()

Log = Callable[[str], None]


@dataclass
class DatabaseBackup:
    snapshot: SnapshotInfo
    tables: list[TableDump] = field(default_factory=list)
    users: list[TableDump] = field(default_factory=list)
    discovered_tables: list[str] = field(default_factory=list)
    files: dict[str, dict] = field(default_factory=dict)  # relative path → {bytes, sha256}
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


def backup_database(
    db_url: str,
    out_dir: Path,
    schemas: list[str],
    tables: set[TableRef] | None = None,
    include_users: bool = True,
    workers: int = DEFAULT_WORKERS,
    log: Log = print,
    missing_ok: bool = False,
) -> DatabaseBackup:
    """Dump `tables` (None = every table of `schemas`) and users into out_dir.

    Tables that exist at run time but were not asked for by name are still dumped when `tables`
    is None: completeness is a property of the run, not of the asset list the code loaded with.
    A table asked for that no longer exists is an error, or with `missing_ok` (the assets, whose
    list was cached when the code loaded) left out and reported by the caller.
    """
    started = time.monotonic()
    db_dir = make_private_dir(out_dir / "database")
    users_dir = make_private_dir(out_dir / "users") if include_users else None
    with freed_memory_kept(), open_snapshot(db_url) as snap:
        lock_project(snap.coordinator, "backup")
        discovered = list_tables(snap.coordinator, schemas)
        result = DatabaseBackup(snapshot=snap.info, discovered_tables=[t.qualified for t in discovered])
        selected = discovered if tables is None else [t for t in discovered if t in tables]
        missing = sorted(t.qualified for t in set(tables or ()) - set(discovered))
        if missing and not missing_ok:
            raise SupabackupError(f"tables not found in the database: {', '.join(missing)}")
        if missing:
            log(f"tables no longer in the database, nothing to back up: {', '.join(missing)}")
        auth = _auth_tables(snap) if include_users else []
        selected = [t for t in selected if t not in auth]
        _refuse_unreadable(snap, selected + auth)
        snap.lock_tables([t.sql for t in selected + auth])
        log(f"snapshot {snap.info.snapshot_id} at {snap.info.taken_at}: {len(selected)} tables, {len(auth)} auth tables")

        jobs = [(t, db_dir) for t in selected] + [(t, users_dir) for t in auth]
        # pg_dump --schema-only is a process of its own in the exported snapshot (alive until this
        # block ends): it runs alongside the table dumps instead of after them (~0.1 s off the benchmark).
        # Its outcome is recorded below, in the same place and order as when it ran afterwards.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="schema") as background, BackgroundSync() as sync:
            ddl = background.submit(_run_schema_dump, snap, schemas, db_dir / "schema.dump") if tables is None else None
            dumps = _dump_parallel(snap, jobs, workers, log, sync)
        result.tables = [d for d in dumps if d.ref not in auth]
        result.users = [d for d in dumps if d.ref in auth]
        if ddl is not None:
            _record_schema_ddl(ddl.result(), db_dir, result, log)
            _write_schema_catalog(snap, schemas, db_dir, result)
        _write_sequences(snap, schemas, db_dir, result)
        _note_large_objects(snap, result, log)
        _note_extension_rows(snap, schemas, result, log)
    for folder in (db_dir, users_dir):  # the files' names durable too, not only their bytes
        if folder is not None:
            fsync_path(folder)
    for dump in dumps:
        folder = "users" if dump.ref in auth else "database"
        result.files[f"{folder}/{dump.parquet_file}"] = {"bytes": dump.parquet_bytes, "sha256": dump.parquet_sha256}
        result.files[f"{folder}/{dump.sidecar_file}"] = {"bytes": dump.sidecar_bytes, "sha256": dump.sidecar_sha256}
    result.seconds = time.monotonic() - started
    return result


def _note_large_objects(snap: Snapshot, result: DatabaseBackup, log: Log) -> None:
    """Large objects (`lo_*`, pg_largeobject) belong to no table: the backup does not hold them, and
    says so rather than leave it to be found at a restore."""
    count = snap.coordinator.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()[0]
    if count:
        result.warnings.append(f"{count} large object(s) (pg_largeobject, lo_* functions) are not backed up:"
                               " keep them with pg_dump --large-objects, or store such files in Supabase Storage")
        log(result.warnings[-1])


def _note_extension_rows(snap: Snapshot, schemas: list[str], result: DatabaseBackup, log: Log) -> None:
    """Rows added to an extension's own tables (a custom SRID in spatial_ref_sys): not backed up, and said."""
    for table, extension, count in extension_table_rows(snap.coordinator, schemas):
        result.warnings.append(f"{table} belongs to extension {extension} and is not backed up, but holds {count}"
                               " row(s) added after the extension made it: keep them with pg_dump, or re-add them")
        log(result.warnings[-1])


def _refuse_unreadable(snap: Snapshot, tables: list[TableRef]) -> None:
    """Every table is read whole or the backup does not start: a backup that silently lacks a table,
    or some of its rows, would be found out only at the restore."""
    unreadable = unreadable_tables(snap.coordinator, tables)
    if unreadable:
        role = snap.coordinator.info.user
        listed = "; ".join(f"{name} ({why})" for name, why in list(unreadable.items())[:20])
        ungranted = [name for name, why in unreadable.items() if why == NO_SELECT]
        grant = f", or GRANT SELECT ON {ungranted[0]} TO {role} (and the others)" if ungranted else ""
        raise SupabackupError(
            f"role {role} (SUPABASE_DB_URL) cannot read {len(unreadable)} table(s) whole: {listed}. Back up as a"
            f" role that can read every row (Supabase's postgres can: it has BYPASSRLS){grant}; nothing was backed up")


def database_parts(result: DatabaseBackup, complete: bool, schemas: list[str]) -> Parts:
    """The database and users parts a backup records (its manifest's `parts`)."""
    def entries(dumps: list[TableDump], folder: str) -> list[TableEntry]:
        return [TableEntry(d.ref.schema, d.ref.name, f"{folder}/{d.parquet_file}", f"{folder}/{d.sidecar_file}",
                           d.rows, d.parquet_sha256) for d in dumps]

    snap = result.snapshot
    database = DatabasePart(
        files={p: f for p, f in result.files.items() if p.startswith("database/")}, snapshot=snap.to_json(),
        source={"database": snap.database, "system_identifier": snap.system_identifier,
                "server_version": snap.server_version},
        complete=complete, schemas=schemas, tables=entries(result.tables, "database"),
        warnings=result.warnings, seconds=result.seconds)
    users = UsersPart(files={p: f for p, f in result.files.items() if p.startswith("users/")},
                      tables=entries(result.users, "users")) if result.users else None
    return Parts(database=database, users=users)


def as_manifest(result: DatabaseBackup, schemas: list[str]) -> dict:
    """The manifest fields a restore plan reads, for a backup made without Dagster (tests, benchmarks)."""
    return {"parts": database_parts(result, complete=True, schemas=schemas).to_json()}


def _auth_tables(snap: Snapshot) -> list[TableRef]:
    present = {t.name for t in list_tables(snap.coordinator, ["auth"])}
    if "users" not in present:
        raise SupabackupError("auth.users not found: is SUPABASE_DB_URL the database of a Supabase project?")
    return [TableRef("auth", name) for name in AUTH_TABLES if name in present]


def _dump_parallel(snap: Snapshot, jobs: list[tuple[TableRef, Path]], workers: int, log: Log,
                   sync: BackgroundSync) -> list[TableDump]:
    """Largest tables first over `workers` connections that share the snapshot; files made durable by `sync`."""
    sizes = dict(
        snap.coordinator.execute(
            "SELECT n.nspname || '.' || c.relname, pg_total_relation_size(c.oid) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r'"
        ).fetchall()
    )
    pending = sorted(jobs, key=lambda job: -sizes.get(job[0].qualified, 0))
    total = len(pending)
    done: list[TableDump] = []

    def work(queue: list[tuple[TableRef, Path]]) -> list[TableDump]:
        out = []
        with snap.worker() as conn, snap.copy_session() as copier:
            while True:
                try:
                    ref, folder = queue.pop(0)
                except IndexError:
                    return out
                dump = dump_table(copier, conn, ref, folder, sync)
                out.append(dump)
                done.append(dump)
                log(f"[{len(done)}/{total}] {ref.qualified}: {dump.rows} rows, {dump.parquet_bytes} bytes,"
                    f" {dump.rows_per_second:,.0f} rows/s")

    n = max(1, min(workers, total))
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="dump") as pool:
        results = [f.result() for f in [pool.submit(work, pending) for _ in range(n)]]
    return sorted([d for r in results for d in r], key=lambda d: (d.ref.schema, d.ref.name))


def _run_schema_dump(snap: Snapshot, schemas: list[str], target: Path) -> subprocess.CompletedProcess | None:
    """`pg_dump --format=custom --schema-only` in the same snapshot into `target` (every object of
    the schemas with owners and grants); None if pg_dump is not installed. Touches nothing shared:
    it runs in a thread."""
    command = dump_command(snap.db_url, schemas, target, snapshot_id=snap.info.snapshot_id)
    if command is None:
        return None
    cmd, env = command
    target.touch(mode=0o600)
    return subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)


def _record_schema_ddl(
    done: subprocess.CompletedProcess | None, db_dir: Path, result: DatabaseBackup, log: Log
) -> None:
    """schema.dump and schema.sql in the manifest, or a warning: a missing or failing pg_dump never
    fails the backup (the rollback then restores tables from their sidecars only)."""
    dump, plain = db_dir / "schema.dump", db_dir / "schema.sql"
    if done is None:
        result.warnings.append("pg_dump not found: schema.dump not written (each table's DDL is in its sidecar)")
        return
    if done.returncode != 0:
        dump.unlink(missing_ok=True)
        message = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit code {done.returncode}"
        result.warnings.append(f"pg_dump --schema-only failed ({message}); each table's DDL is in its sidecar")
        log(result.warnings[-1])
        return
    write_plain_sql(dump, plain)
    plain.chmod(0o600)
    for path in (dump, plain):
        fsync_path(path)  # schema.sql is pg_restore's output, which it does not fsync (pg_dump syncs its own)
        result.files[f"database/{path.name}"] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


def _write_schema_catalog(snap: Snapshot, schemas: list[str], db_dir: Path, result: DatabaseBackup) -> None:
    path = db_dir / "schema.json"
    catalog = read_schema_catalog(snap.coordinator, schemas)
    for obj in catalog["app_triggers"] + catalog["app_policies"]:
        obj.pop("oid")  # meaningful only in the database it was read from
    sha = write_json(path, catalog)
    result.files["database/schema.json"] = {"bytes": path.stat().st_size, "sha256": sha}


def _write_sequences(snap: Snapshot, schemas: list[str], db_dir: Path, result: DatabaseBackup) -> None:
    sequences = []
    for schema, name, owned_by in snap.coordinator.execute(
        """
        SELECT n.nspname, c.relname,
               (SELECT d.refobjid::regclass::text || '.' || quote_ident(a.attname) FROM pg_depend d
                JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                WHERE d.objid = c.oid AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') LIMIT 1)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'S' AND n.nspname = ANY(%s) ORDER BY 1, 2
        """,
        (schemas,),
    ).fetchall():
        ref = TableRef(schema, name)
        last_value, is_called = snap.coordinator.execute(f"SELECT last_value, is_called FROM {ref.sql}").fetchone()
        sequences.append({"schema": schema, "name": name, "last_value": last_value, "is_called": is_called,
                          "owned_by": owned_by})
    path = db_dir / "sequences.json"
    sha = write_json(path, sequences)
    result.files["database/sequences.json"] = {"bytes": path.stat().st_size, "sha256": sha}
