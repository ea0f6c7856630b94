"""Restore the database part of a backup — users and tables — in ONE transaction: all or nothing.

Inside that transaction, in this order:
1. an advisory lock (one backup or rollback per project at a time);
2. `session_replication_role = replica` (as Supabase's own restore instructions do), so user
   triggers do not fire on restored rows; triggers set to fire ALWAYS or on REPLICA, and all user
   triggers when the role may not set replica mode, are disabled by name and put back as they were;
3. missing sequences and tables are recreated from the backup's sidecars;
4. every restored table is emptied by one TRUNCATE (with the auth tables that hang off users,
   such as sessions and refresh tokens: a rollback signs everyone out), then schema drift is
   undone on the now empty tables (added columns dropped, dropped columns re-added, types
   reverted), and the rows are loaded with COPY;
5. foreign keys of recreated tables are added back, sequences set to their backed-up values,
   every foreign key touching a restored table is checked, and each table's row count and
   content is compared with the backup (core/fingerprint.py: the dump's COPY digest, or value by
   value). Any difference raises: nothing commits.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import psycopg
from psycopg import sql

from supabackup_pipeline.core.catalog import TableRef, describe_table, list_tables, table_columns, table_exists
from supabackup_pipeline.core.ddl import column_sql, create_table_sql, foreign_key_sql
from supabackup_pipeline.core.errors import RestoreRefused, SupabackupError
from supabackup_pipeline.core.fingerprint import backup_fingerprint, live_copy_sha256, live_fingerprint
from supabackup_pipeline.core.pg_types import Column, quote_ident
from supabackup_pipeline.core import schema_restore
from supabackup_pipeline.core.parts import Parts, TableEntry
from supabackup_pipeline.core.process_memory import hand_freed_memory_back
from supabackup_pipeline.core.project_lock import lock_project
from supabackup_pipeline.core.schema_catalog import SCHEMA_CATALOG, SUPABASE_SCHEMAS, publication_tables
from supabackup_pipeline.core.schema_dump import SCHEMA_DUMP, Entry, compare_entries, live_entries, read_entries
from supabackup_pipeline.core.snapshot import connect
from supabackup_pipeline.core.table_dump import FORMAT_VERSION
from supabackup_pipeline.core.table_load import LoadJob, load_tables
from supabackup_pipeline.core.users_diff import users_diff

Log = Callable[[str], None]
LOCK_TIMEOUT = "60s"  # how long the restore waits for a lock another session holds, then gives up
# JIT is off for the plan and the restore: their queries are catalog walks and whole-table scans
# that run once, and compiling them costs more than it saves (the pg_depend walk of a 40-table
# schema: 1.9 s with JIT, 0.04 s without; it runs in the plan and again in the transaction). Any
# role may turn it off.


@dataclass(frozen=True)
class Drift:
    """How a live table differs from its backup, as a fact the restore acts on (and shows as text)."""

    change: str  # one of the _DRIFT_TEXT keys
    column: str | None = None
    live_type: str | None = None
    backed_type: str | None = None
    kept: bool = False  # a table of Supabase's own (auth.users, ...): its services' changes stay

    def __str__(self) -> str:
        text = _KEPT_TEXT if self.kept and self.change in _KEPT_TEXT else _DRIFT_TEXT
        return text[self.change].format(c=self.column, live=self.live_type, backed=self.backed_type)


_DRIFT_TEXT = {
    "table_dropped": "dropped since the backup: will be recreated",
    "column_added": "column {c} added since the backup: will be dropped",
    "column_dropped": "column {c} dropped since the backup: will be re-added",
    "generation_changed": "column {c} generated differently since the backup: will be re-created",
    "retyped": "column {c} retyped {live} -> {backed}: will revert",
}
# Supabase's services own their tables' columns (a GoTrue upgrade adds columns to auth.users):
# rows are restored into the table as it is now, never the table back to the backup's shape.
_KEPT_TEXT = {
    "column_added": "column {c} added since the backup (by Supabase): kept, restored rows get its default",
    "generation_changed": "column {c} generated differently since the backup (by Supabase): kept",
    "retyped": "column {c} retyped {backed} -> {live} since the backup (by Supabase): kept, values loaded into it",
}


@dataclass
class TableStep:
    ref: TableRef
    parquet: str
    sidecar_path: str
    sidecar: dict
    exists: bool
    rows_now: int | None
    rows_after: int
    drift: list[Drift] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"table": self.ref.qualified, "exists": self.exists, "rows_now": self.rows_now,
                "rows_after": self.rows_after, "drift": [str(d) for d in self.drift]}


@dataclass
class DatabasePlan:
    tables: list[TableStep]
    emptied_auth_tables: list[str] = field(default_factory=list)
    new_tables: list[str] = field(default_factory=list)
    extension_tables: list[str] = field(default_factory=list)  # in the backup, left to their extension
    drop_new_tables: bool = False
    sequences: list[dict] = field(default_factory=list)
    users: dict = field(default_factory=dict)
    schema: schema_restore.SchemaPlan | None = None  # the schema phase (full restores of new backups)
    truncate_parents: list[str] = field(default_factory=list)  # partitioned parents of restored partitions

    def to_json(self) -> dict:
        shown = {"tables": [t.to_json() for t in self.tables], "emptied_auth_tables": self.emptied_auth_tables,
                 "new_tables": self.new_tables, "drop_new_tables": self.drop_new_tables,
                 "extension_tables": self.extension_tables,
                 "sequences": len(self.sequences), "users": self.users}
        if self.schema is not None:
            shown["schema"] = self.schema.to_json()
            shown["schema_changes"] = self.schema.changes
        return shown


def plan_database_restore(
    conn: psycopg.Connection, root: Path, manifest: dict, components: list[str],
    tables: list[str] | None = None, drop_new_tables: bool = False,
) -> DatabasePlan:
    """What a restore would do, read from the live database without changing it.

    A full restore of the database component from a backup with a schema dump rebuilds the
    schemas (core/schema_restore.py); a `--tables` subset, or an older backup, restores rows
    into the existing tables and undoes their column drift.
    """
    conn.execute("SET jit = off")  # see the note on JIT at the top
    hand_freed_memory_back()
    parts = Parts.from_manifest(manifest)
    available = parts.table_dumps(components)
    schemas = parts.database.schemas if parts.database else []
    # the backup's schema dump, read once (a pg_restore run): partition bounds and the rebuild use it
    entries = read_entries(root / SCHEMA_DUMP) if schema_restore.has_schema_dump(root) else []
    extension_tables = _extension_tables(root, available, entries)
    available = [t for t in available if t.qualified not in extension_tables]
    parents = partition_leaves(root, available, entries) if "database" in components else {}
    if tables is not None:
        tables, available = _chosen_tables(tables, available, parents)
    # Supabase's own schemas are never restructured: a backup that includes one restores rows only
    rebuild = bool("database" in components and tables is None and entries and not set(schemas) & set(SUPABASE_SCHEMAS))
    # The users' diff (a COPY of auth.users) and the live schema's pg_dump run on connections of
    # their own alongside the table steps: server work for the other core meanwhile.
    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="plan") as alongside:
        users = alongside.submit(_users_diff, _url_of(conn), root, available) if "users" in components else None
        live = alongside.submit(live_entries, _url_of(conn), schemas) if rebuild else None
        counts = alongside.submit(_row_counts, _url_of(conn), [t.ref for t in available])
        steps = [_table_step(conn, root, t) for t in available]
        for step in steps:
            step.rows_now = counts.result().get(step.ref) if step.exists else None
        restored = {s.ref for s in steps}

        plan = DatabasePlan(tables=steps, drop_new_tables=drop_new_tables, extension_tables=sorted(extension_tables))
        if rebuild:
            plan.schema = schema_restore.plan_schema_restore(conn, root, entries, schemas, drop_new_tables,
                                                             live=live.result())
            plan.new_tables = plan.schema.new_tables
            rebuilt = {o.qualified for o in plan.schema.drops if o.is_table}
        else:
            if "database" in components and tables is None:
                live_tables = list_tables(conn, schemas)
                plan.new_tables = sorted(t.qualified for t in live_tables if t not in restored)
            plan.truncate_parents = sorted(p for p, leaves in parents.items()
                                           if set(leaves) <= {r.qualified for r in restored})
            rebuilt = set(plan.new_tables) if drop_new_tables else set()
        covered = restored | {TableRef(*p.split(".", 1)) for p in plan.truncate_parents}
        plan.emptied_auth_tables, blockers = _dependents(conn, covered, rebuilt)
        _refuse_blockers(blockers)
        if "database" in components:
            complete = tables is None and bool(parts.database and parts.database.complete)
            plan.sequences = _planned_sequences(root, complete, steps)
        if users is not None:
            plan.users = users.result()
        return plan


def _refuse_blockers(blockers: list[str]) -> None:
    """Tables outside the restore that reference restored ones would have to be emptied too: refused."""
    supabase_owned = [b for b in blockers if b.split(".", 1)[0] in SUPABASE_SCHEMAS]
    if supabase_owned:
        raise RestoreRefused(
            f"{', '.join(supabase_owned)} reference restored tables with foreign keys (e.g. an older project's"
            " storage.objects.owner → auth.users): restoring them would mean emptying Supabase's own tables,"
            " which supabackup never does. Restore without that component (for users: --components"
            " database,storage), or drop those foreign keys first if the project no longer needs them."
        )
    if blockers:
        raise RestoreRefused(
            "restoring would empty tables you did not select, because they reference restored tables with"
            f" foreign keys: {', '.join(blockers)}. Select them too (--tables), restore all tables, or (for"
            " tables created after the backup) pass --drop-new-tables."
        )


def _chosen_tables(tables: list[str], available: list[TableEntry], parents: dict[str, list[str]]):
    """(the `--tables` names, partitioned parents expanded to their leaves; the dumps they select,
    with the users tables)."""
    tables = _expand_parents(tables, parents)
    unknown = sorted(set(tables) - {t.qualified for t in available})
    if unknown:
        raise RestoreRefused(f"not in this backup (or not in the chosen components): {', '.join(unknown)}")
    return tables, [t for t in available if t.qualified in set(tables) or t.schema == "auth"]


def _extension_tables(root: Path, available: list[TableEntry], entries: list[Entry]) -> set[str]:
    """Tables a backup holds that its own schema dump does not define, in a schema where it records
    an extension: that extension's (PostGIS's spatial_ref_sys, with PostGIS in `public`), which
    backups before this version held. pg_dump leaves them to their extension, and so does the
    restore: loading them would clash with the rows the extension made."""
    if not entries or not (root / SCHEMA_CATALOG).exists():
        return set()
    hosting = {e["schema"] for e in json.loads((root / SCHEMA_CATALOG).read_text())["extensions"]}
    defined = {f"{e.schema}.{e.name}" for e in entries if e.kind == "TABLE"}
    return {t.qualified for t in available if t.schema in hosting and t.schema != "auth" and t.qualified not in defined}


def _url_of(conn: psycopg.Connection) -> str:
    """A URL for client programs (pg_dump) to the database `conn` is connected to, as the same role."""
    from psycopg.conninfo import make_conninfo

    info = conn.info
    return make_conninfo(host=info.host, port=info.port, dbname=info.dbname, user=info.user, password=info.password)


def _table_step(conn, root: Path, dump: TableEntry) -> TableStep:
    ref = dump.ref
    sidecar = json.loads((root / dump.sidecar).read_text())
    if sidecar.get("format_version", 1) > FORMAT_VERSION:  # its COPY, so its digest, is unknown here
        raise RestoreRefused(f"{ref.qualified} was backed up by a newer supabackup (sidecar format"
                             f" {sidecar['format_version']}; this one reads up to {FORMAT_VERSION}): upgrade to restore it")
    exists = table_exists(conn, ref)
    drift = _drift(conn, ref, sidecar) if exists else [Drift("table_dropped")]
    if ref.schema == "auth" and any(d.change == "column_dropped" for d in drift):
        raise RestoreRefused(f"{ref.qualified} lost columns since the backup ({'; '.join(map(str, drift))});"
                             " Supabase Auth owns its"
                             " schema, so supabackup will not alter it")
    return TableStep(ref, dump.parquet, dump.sidecar, sidecar, exists, None, sidecar["row_count"], drift)


_ATTACH = re.compile(r"ALTER TABLE ONLY (\S+) ATTACH PARTITION (\S+) ")


def partition_leaves(root: Path, available: list[TableEntry], entries: list[Entry]) -> dict[str, list[str]]:
    """Every partitioned table of the backup → the backed-up leaf partitions under it (at any depth):
    from the schema dump's ATTACH entries, or for older backups from the sidecars (one level)."""
    parent_of: dict[str, str] = {}
    for entry in entries:
        if entry.kind == "TABLE ATTACH":
            for parent, child in _ATTACH.findall(entry.sql):
                parent_of[_unquote(child)] = _unquote(parent)
    for t in available if not entries else []:
        parent = json.loads((root / t.sidecar).read_text()).get("partition_of")
        if parent:
            parent_of[t.qualified] = _unquote(parent) if "." in parent else f"{t.schema}.{parent}"
    leaves: dict[str, list[str]] = {}
    for t in available:
        node = t.qualified
        while node in parent_of:
            node = parent_of[node]
            leaves.setdefault(node, []).append(t.qualified)
    return leaves


def _owned_by(seq: dict) -> tuple[str, str] | None:
    """(table, column) owning a sequence of sequences.json ("schema.table.column", quoted as needed)."""
    if not seq.get("owned_by"):
        return None
    parts = _unquote(seq["owned_by"]).rsplit(".", 1)
    return parts[0], parts[1]


def _referenced_table(constraint: dict) -> str:
    """schema.table a foreign key of a sidecar references (older sidecars: read from its definition)."""
    if constraint.get("references"):
        return _unquote(constraint["references"])
    return _unquote(constraint["definition"].split("REFERENCES ", 1)[1].split("(", 1)[0].strip())


def _unquote(name: str) -> str:
    return ".".join(part.strip('"').replace('""', '"') for part in re.findall(r'"(?:[^"]|"")*"|[^.]+', name))


def _expand_parents(tables: list[str], parents: dict[str, list[str]]) -> list[str]:
    """`--tables` may name a partitioned table: it means all of its partitions."""
    out: list[str] = []
    for name in tables:
        out += parents.get(name, [name])
    return sorted(set(out))


def _live_columns(conn: psycopg.Connection, ref: TableRef) -> dict[str, Column]:
    return {c.name: c for c in table_columns(conn, ref)}


def _generation_changed(live: Column, backed: dict) -> bool:
    """A stored generated column whose expression changed, or a plain column that became one (or back)."""
    if bool(backed.get("generated")) != (live.generated == "s"):
        return True
    return bool(backed.get("generated")) and live.default != backed.get("default")


def _drift(conn: psycopg.Connection, ref: TableRef, sidecar: dict) -> list[Drift]:
    live = _live_columns(conn, ref)
    backed = {c["name"]: c for c in sidecar["columns"]}
    kept = ref.schema in SUPABASE_SCHEMAS
    drift = [Drift("column_added", n, kept=kept) for n in live if n not in backed]
    drift += [Drift("column_dropped", n) for n in backed if n not in live]
    for n, c in backed.items():
        if n not in live:
            continue
        if _generation_changed(live[n], c):
            drift.append(Drift("generation_changed", n, kept=kept))
        elif live[n].pg_type != c["type"]:
            drift.append(Drift("retyped", n, live[n].pg_type, c["type"], kept=kept))
    return drift


def _dependents(conn, restored: set[TableRef], dropped: set[str]) -> tuple[list[str], list[str]]:
    """Tables that reference the emptied ones, transitively (TRUNCATE must include them): auth
    tables (sessions, refresh tokens, ...) are emptied too, any other table blocks the restore."""
    emptied: set[TableRef] = set()
    blockers: set[str] = set()
    frontier = set(restored)
    while frontier:
        rows = conn.execute(
            """
            SELECT DISTINCT n.nspname, c.relname FROM pg_constraint k
            JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE k.contype = 'f' AND k.confrelid = ANY(SELECT to_regclass(x) FROM unnest(%s::text[]) x)
            """,
            ([t.sql for t in frontier],),
        ).fetchall()
        frontier = set()
        for schema, name in rows:
            ref = TableRef(schema, name)
            if ref in restored or ref in emptied or ref.qualified in dropped:
                continue
            if schema == "auth":
                emptied.add(ref)
                frontier.add(ref)
            else:
                blockers.add(ref.qualified)
    return sorted(t.qualified for t in emptied), sorted(blockers)


def _row_counts(db_url: str, tables: list[TableRef]) -> dict[TableRef, int]:
    """The rows each table (of those that exist) holds now, for the plan: whole-table scans, on a
    connection of their own while the plan's catalog queries run on the other."""
    with connect(db_url) as conn:
        conn.execute("SET jit = off")
        return {ref: conn.execute(f"SELECT count(*) FROM ONLY {ref.sql}").fetchone()[0]
                for ref in tables if table_exists(conn, ref)}


def _users_diff(db_url: str, root: Path, available: list[TableEntry]) -> dict:
    users = next((t for t in available if t.qualified == "auth.users"), None)
    if users is None:
        return {}
    with connect(db_url) as conn:
        conn.execute("SET jit = off")
        return users_diff(conn, root / users.parquet)


def _planned_sequences(root: Path, complete: bool, steps: list[TableStep]) -> list[dict]:
    """The backup's sequence values to set: all of a complete restore of a complete backup, else
    only those owned by the restored tables' columns. (A backup of some tables, or of the users
    alone, also records every sequence: setting them all would take a table it does not restore
    back to values its rows have passed, and its next insert would collide.)"""
    seq_path = root / "database" / "sequences.json"
    if not seq_path.exists():
        return []
    owned = {s.ref.qualified for s in steps}
    return [s for s in json.loads(seq_path.read_text()) if complete or (_owned_by(s) or ("",))[0] in owned]


# ------------------------------------------------------------------ apply
def apply_database_restore(db_url: str, plan: DatabasePlan, root: Path, log: Log = print) -> dict:
    """Carry out the plan in one transaction; returns per-table results (rows, checksums, seconds),
    the seconds of each phase and, after a schema rebuild, how the live schema compares with the
    backup's (`schema_differences`, empty when equal)."""
    try:
        return _apply(db_url, plan, root, log)
    except psycopg.errors.LockNotAvailable:
        raise SupabackupError(_locked_out(db_url, plan)) from None
    except (psycopg.Error, SupabackupError) as exc:
        blamed = _event_trigger_blamed(db_url, exc)
        if blamed:
            raise SupabackupError(blamed) from exc
        raise


def _event_trigger_blamed(db_url: str, exc: BaseException) -> str | None:
    """When an app's event trigger failed on the restore's own DDL (one that logs into a table the
    rebuild has just dropped, say): which one, and what to do. Replica mode silences event triggers
    but those set to fire ALWAYS, and only a superuser may disable one."""
    error = exc if isinstance(exc, psycopg.Error) else exc.__cause__
    context = error.diag.context if isinstance(error, psycopg.Error) else None
    if not context:
        return None
    try:
        with connect(db_url) as conn:
            triggers = conn.execute(
                "SELECT e.evtname, format('%I.%I', n.nspname, p.proname), quote_ident(p.proname) FROM pg_event_trigger e"
                " JOIN pg_proc p ON p.oid = e.evtfoid JOIN pg_namespace n ON n.oid = p.pronamespace"
                " WHERE e.evtenabled <> 'D' ORDER BY 1").fetchall()
    except (psycopg.Error, SupabackupError):
        return None  # the restore's own error stands
    for name, function, short in triggers:  # the context names the function as the search path shows it
        if f"function {function}(" in context or f"function {short}(" in context:
            reason = str(error).strip().splitlines()[0]
            return (f"event trigger {name} (function {function}) failed on the restore's schema changes: {reason};"
                    " nothing was changed. Disable it for the rollback (as a superuser: ALTER EVENT TRIGGER"
                    f" {quote_ident(name)} DISABLE), restore again, then enable it again.")
    return None


def _locked_out(db_url: str, plan: DatabasePlan) -> str:
    """What to tell when another session held a lock the restore waited LOCK_TIMEOUT for: the
    sessions that still hold locks on the restored schemas' relations (the restore's are gone)."""
    schemas = sorted({s.ref.schema for s in plan.tables} | set(plan.schema.schemas if plan.schema else []))
    try:
        holders = _lock_holders(db_url, schemas)
    except (psycopg.Error, SupabackupError):
        holders = []  # the restore's own message stands, without the sessions
    found = "; ".join(f"pid {pid} ({user}, {app}, {state}) on {rel}" for pid, user, app, state, rel in holders)
    return (f"another session held a lock on a table the restore must change, and the restore gave up after"
            f" waiting {LOCK_TIMEOUT} (lock_timeout): nothing was changed. "
            + (f"Sessions holding locks in {', '.join(schemas)}: {found}. " if found else "")
            + "Let them finish or end them (SELECT pg_terminate_backend(pid)), then restore again.")


def _lock_holders(db_url: str, schemas: list[str]) -> list[tuple]:
    """(pid, user, application, state, table) of the other sessions holding locks on the schemas' tables."""
    with connect(db_url) as conn:
        return conn.execute(
            """
            SELECT DISTINCT l.pid, a.usename, coalesce(nullif(a.application_name, ''), '-'), a.state,
                   format('%%I.%%I', n.nspname, c.relname)
            FROM pg_locks l JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace
            LEFT JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE l.granted AND l.pid <> pg_backend_pid() AND n.nspname = ANY(%s) AND c.relkind IN ('r', 'p', 'm')
            ORDER BY 1, 5 LIMIT 10
            """, (schemas,)).fetchall()


def _apply(db_url: str, plan: DatabasePlan, root: Path, log: Log) -> dict:
    hand_freed_memory_back()
    started = time.monotonic()
    results: list[dict] = []
    phases: dict[str, float] = {}

    def lap(phase: str) -> None:
        phases[phase] = round(time.monotonic() - started - sum(phases.values()), 3)

    with connect(db_url) as conn:
        with conn.transaction():
            lock_project(conn, "rollback")
            # restored tables read back in load order: no synchronized or parallel scans
            conn.execute("SET LOCAL synchronize_seqscans = off")
            conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
            conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            conn.execute("SET LOCAL jit = off")  # see the note on JIT at the top
            _fast_toast_compression(conn)
            replica = _try_replica(conn)
            log("user triggers: " + ("off (session_replication_role = replica)" if replica
                                     else "disabled by name for the load"))
            silenced, lifted = _prepare(conn, plan, replica, log)
            lap("prepare")
            steps = _parents_first(plan.tables)
            t0 = time.monotonic()
            with contextlib.closing(load_tables(conn, [LoadJob(root / s.parquet, s.sidecar) for s in steps])) as loaded:
                for step, rows in zip(steps, loaded):
                    results.append({"table": step.ref.qualified, "rows": rows, "seconds": round(time.monotonic() - t0, 3)})
                    log(f"restored {step.ref.qualified}: {rows} rows")
                    t0 = time.monotonic()
            lap("load")
            _after_load(conn, plan, silenced, lifted, log)
            lap("schema_foreign_keys_and_sequences" if plan.schema is not None else "foreign_keys_and_sequences")
            mismatches = _post_validate(conn, plan, root, results)
            if mismatches:
                raise SupabackupError("post-validation failed, nothing was changed: " + "; ".join(mismatches))
            log("post-validation passed: every restored table matches the backup; committing")
            lap("post_validation")
    lap("commit")
    report = {"tables": results, "seconds": round(time.monotonic() - started, 3), "phases": phases,
              "replica_mode": replica}
    if plan.schema is not None:
        report["schema_differences"] = schema_differences(db_url, plan)
        lap("schema_validation")
        log("schema validation: " + ("equal to the backup" if not report["schema_differences"] else
                                     f"{len(report['schema_differences'])} difference(s): {report['schema_differences'][:5]}"))
    return report


def _fast_toast_compression(conn) -> None:
    """lz4 for the long values the load compresses (TOAST), where the server is built with it: the
    same values, compressed faster than with pglz, PostgreSQL's default (0.4 s of a 6.5 s load on
    the realistic benchmark), and read back faster. A column's own COMPRESSION setting still wins."""
    has_lz4 = conn.execute(
        "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'").fetchone()
    if has_lz4 and has_lz4[0]:
        conn.execute("SET LOCAL default_toast_compression = lz4")


def _prepare(conn, plan: DatabasePlan, replica: bool, log: Log) -> tuple[list, list]:
    """The tables ready for their rows: the schema rebuilt (or the existing tables emptied and their
    drift undone), with the user triggers that would fire silenced first, TRUNCATE ones included,
    and the constraints never validated lifted. Returns both, to be put back after the load."""
    emptied = [TableRef(*n.split(".", 1)) for n in plan.emptied_auth_tables + plan.truncate_parents]
    if plan.schema is not None:
        schema_restore.prepare(conn, plan.schema, log)  # the rebuilt tables have no triggers yet
        silenced = _silence_triggers(conn, [s.ref for s in plan.tables] + emptied, replica)
        _empty_auth_tables(conn, plan)
    else:
        silenced = _silence_triggers(conn, [s.ref for s in plan.tables if s.exists] + emptied, replica)
        _prepare_tables(conn, plan, log)  # recreates dropped tables, with their triggers
        silenced += _silence_triggers(conn, [s.ref for s in plan.tables if not s.exists], replica)
    return silenced, _lift_unvalidated(conn, [s.ref for s in plan.tables])


def _lift_unvalidated(conn, tables: list[TableRef]) -> list[tuple[str, str, str, str | None]]:
    """CHECK and foreign key constraints added NOT VALID (never checked against the rows already
    there) on the restored tables, dropped for the load: the backup may hold rows that break them,
    as the live table did. (table, constraint, definition, comment) for `_put_back`."""
    rows = conn.execute(
        """
        SELECT k.conrelid::regclass::text, quote_ident(k.conname), pg_get_constraintdef(k.oid),
               obj_description(k.oid, 'pg_constraint')
        FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
        WHERE NOT k.convalidated AND k.contype IN ('c', 'f') AND k.conislocal AND k.coninhcount = 0
          AND k.conrelid = ANY(%s::regclass[]) AND pg_has_role(c.relowner, 'USAGE')  -- not Supabase's own
        ORDER BY k.conrelid, k.conname
        """,
        ([t.sql for t in tables],),
    ).fetchall()
    for table, name, _, _ in rows:
        conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
    return rows


def _put_back(conn, lifted: list[tuple[str, str, str, str | None]]) -> None:
    """The lifted constraints added again as they were (their definition says NOT VALID)."""
    for table, name, definition, comment in lifted:
        conn.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}")
        if comment is not None:
            conn.execute(sql.SQL("COMMENT ON CONSTRAINT {} ON {} IS {}").format(
                sql.SQL(name), sql.SQL(table), sql.Literal(comment)))


def _after_load(conn, plan: DatabasePlan, silenced: list[tuple[str, str, str]],
                lifted: list[tuple[str, str, str, str | None]], log: Log) -> None:
    """Constraints (the rebuilt schema's post-data, or recreated tables' foreign keys), triggers put
    back, sequences set, and every foreign key the load could have broken checked (those added NOT
    VALID promise nothing about old rows, and are not)."""
    _put_back(conn, lifted)
    if plan.schema is not None:
        schema_restore.finish(conn, plan.schema, log)
    else:
        for step in (s for s in plan.tables if not s.exists):
            for statement in foreign_key_sql(step.sidecar):
                conn.execute(statement)
    _restore_triggers(conn, silenced)
    for seq in plan.sequences:
        conn.execute("SELECT setval(%s::regclass, %s, %s)",
                     (TableRef(seq["schema"], seq["name"]).sql, seq["last_value"], seq["is_called"]))
    # a rebuilt schema's foreign keys were validated when the backup's constraints were added
    checked = [s.ref for s in plan.tables if plan.schema is None or s.ref.schema == "auth"]
    violations = check_foreign_keys(conn, checked)
    if violations:
        raise SupabackupError("restored rows break foreign keys, nothing was changed: " + "; ".join(violations))


def schema_differences(db_url: str, plan: DatabasePlan) -> list[dict]:
    """The committed schema compared with the backup's, object by object (pg_dump of both). Tables
    left because they were created after the backup are not differences."""
    kept = [re.escape(t.split(".", 1)[1]) for t in plan.new_tables] if not plan.drop_new_tables else []
    mentions_kept = re.compile(rf"\b({'|'.join(kept)})\b") if kept else None
    changes = compare_entries(plan.schema.entries, live_entries(db_url, plan.schema.schemas))
    changes += _publication_differences(db_url, plan.schema)
    return [c for c in changes if not (c["action"] == "drop" and mentions_kept and mentions_kept.search(c["name"]))]


def _publication_differences(db_url: str, schema: schema_restore.SchemaPlan) -> list[dict]:
    """Publication memberships (with row filter and column list) unlike the backup's; pg_dump -n,
    which the comparison above reads, leaves them out. Memberships the plan noted it cannot add
    back (no such publication here, or one this role may not alter) are in its notes already."""
    backed = [r for r in schema.catalog["publications"] if "row_filter" in r]  # recorded since filters are
    if not backed and schema.catalog["publications"]:
        return []
    with connect(db_url) as conn:
        live = {(r["publication"], r["schema"], r["table"]): r for r in publication_tables(conn, schema.schemas)}
        alterable = {r[0] for r in conn.execute("SELECT pubname FROM pg_publication WHERE NOT puballtables"
                                                " AND pg_has_role(pubowner, 'USAGE')")}
    changes = []
    for row in backed:
        key = (row["publication"], row["schema"], row["table"])
        now = live.pop(key, None)
        if row["publication"] not in alterable:
            continue
        if now is None or (now["columns"], now["row_filter"]) != (row["columns"], row["row_filter"]):
            changes.append({"kind": "publication table", "name": f"{row['publication']} {row['schema']}.{row['table']}",
                            "action": "create" if now is None else "alter"})
    changes += [{"kind": "publication table", "name": f"{p} {s}.{t}", "action": "drop"}
                for (p, s, t) in live if p in alterable]
    return changes


def _empty_auth_tables(conn, plan: DatabasePlan) -> None:
    """A rebuild recreates the schemas' tables empty; the users tables are emptied in place."""
    targets = [s.ref.sql for s in plan.tables if s.ref.schema == "auth"]
    targets += [TableRef(*n.split(".", 1)).sql for n in plan.emptied_auth_tables]
    if targets:
        conn.execute(f"TRUNCATE {', '.join(targets)}")


def _prepare_tables(conn, plan: DatabasePlan, log: Log) -> None:
    """Restore into the existing tables: recreate dropped ones, empty all, undo column drift."""
    creating = [s for s in plan.tables if not s.exists]
    _create_sequences(conn, plan, creating)
    for step in creating:
        conn.execute(create_table_sql(step.sidecar))
        log(f"recreated {step.ref.qualified}")
    if plan.drop_new_tables:
        for name in plan.new_tables:
            conn.execute(f"DROP TABLE {TableRef(*name.split('.', 1)).sql}")
            log(f"dropped {name} (created after the backup)")
    targets = [s.ref.sql for s in plan.tables] + [TableRef(*n.split(".", 1)).sql for n in plan.emptied_auth_tables]
    targets += [TableRef(*p.split(".", 1)).sql for p in plan.truncate_parents]
    if targets:
        conn.execute(f"TRUNCATE {', '.join(targets)}")
    for step in plan.tables:
        if step.exists and step.ref.schema not in SUPABASE_SCHEMAS:  # Supabase's own columns stay (see Drift)
            _undo_drift(conn, step)


def _try_replica(conn: psycopg.Connection) -> bool:
    try:
        with conn.transaction():  # a savepoint: a refusal leaves the outer transaction usable
            conn.execute("SET LOCAL session_replication_role = replica")
        return True
    except psycopg.errors.InsufficientPrivilege:
        return False


_ENABLE = {"O": "ENABLE TRIGGER", "A": "ENABLE ALWAYS TRIGGER", "R": "ENABLE REPLICA TRIGGER"}


def _silence_triggers(conn, tables: list[TableRef], replica: bool) -> list[tuple[str, str, str]]:
    """Disable, by name, the user triggers that would fire on restored rows: all enabled ones, or in
    replica mode only those set to fire ALWAYS or on REPLICA. Returns (table, trigger, mode) so that
    `_restore_triggers` puts back each trigger's own mode (a disabled one stays disabled)."""
    if not tables:
        return []
    rows = conn.execute(
        """
        SELECT t.tgrelid::regclass::text, quote_ident(t.tgname), t.tgenabled
        FROM pg_trigger t
        WHERE NOT t.tgisinternal AND t.tgrelid = ANY(%s::regclass[])
          AND t.tgenabled <> 'D' AND (NOT %s OR t.tgenabled IN ('A', 'R'))
        """,
        ([t.sql for t in tables], replica),
    ).fetchall()
    for table, trigger, _ in rows:
        conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER {trigger}")
    return [(table, trigger, str(mode)) for table, trigger, mode in rows]


def _restore_triggers(conn, silenced: list[tuple[str, str, str]]) -> None:
    for table, trigger, mode in silenced:
        conn.execute(f"ALTER TABLE {table} {_ENABLE[mode]} {trigger}")


def _create_sequences(conn, plan: DatabasePlan, creating: list[TableStep]) -> None:
    """Sequences that tables being recreated use as defaults (serial columns), before the tables."""
    identity = {(s.ref.qualified, c["name"]) for s in creating for c in s.sidecar["columns"] if c.get("identity")}
    for seq in plan.sequences:
        if _owned_by(seq) in identity:
            continue  # an identity column makes its own sequence
        conn.execute(f"CREATE SEQUENCE IF NOT EXISTS {TableRef(seq['schema'], seq['name']).sql}")


def _undo_drift(conn, step: TableStep) -> None:
    """On the emptied table: drop added columns, re-add dropped ones (and re-create ones whose
    generation changed), revert types."""
    live = _live_columns(conn, step.ref)
    backed = {c["name"]: c for c in step.sidecar["columns"]}
    for name in live:
        if name not in backed or _generation_changed(live[name], backed[name]):
            conn.execute(f"ALTER TABLE {step.ref.sql} DROP COLUMN {quote_ident(name)}")
    live = _live_columns(conn, step.ref)
    for name, c in backed.items():
        if name not in live:
            conn.execute(f"ALTER TABLE {step.ref.sql} ADD COLUMN {column_sql(c)}")
        elif live[name].pg_type != c["type"]:
            col = quote_ident(name)
            conn.execute(f"ALTER TABLE {step.ref.sql} ALTER COLUMN {col} DROP DEFAULT")
            conn.execute(f"ALTER TABLE {step.ref.sql} ALTER COLUMN {col} TYPE {c['type']} USING NULL")
            if c.get("default") is not None and not c.get("identity") and not c.get("generated"):
                conn.execute(f"ALTER TABLE {step.ref.sql} ALTER COLUMN {col} SET DEFAULT {c['default']}")


def _parents_first(steps: list[TableStep]) -> list[TableStep]:
    """Referenced tables before the tables that reference them (needed when triggers stay on)."""
    by_name = {s.ref.qualified: s for s in steps}
    deps = {s.ref.qualified: set() for s in steps}
    for s in steps:
        for k in s.sidecar["constraints"]:
            if k["type"] == "f":
                target = _referenced_table(k)
                if target in by_name and target != s.ref.qualified:
                    deps[s.ref.qualified].add(target)
    ordered, seen = [], set()

    def visit(name: str, stack: set) -> None:
        if name in seen or name in stack:
            return
        for parent in deps[name]:
            visit(parent, stack | {name})
        seen.add(name)
        ordered.append(by_name[name])

    for name in deps:
        visit(name, set())
    return ordered


def check_foreign_keys(conn, tables: list[TableRef]) -> list[str]:
    """Foreign keys into or out of the restored tables that some row breaks (MATCH SIMPLE semantics)."""
    rows = conn.execute(
        """
        SELECT k.conname, k.conrelid::regclass::text, k.confrelid::regclass::text,
               ARRAY(SELECT quote_ident(attname) FROM unnest(k.conkey) WITH ORDINALITY u(n, i)
                     JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.n ORDER BY i),
               ARRAY(SELECT quote_ident(attname) FROM unnest(k.confkey) WITH ORDINALITY u(n, i)
                     JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = u.n ORDER BY i)
        FROM pg_constraint k
        WHERE k.contype = 'f' AND k.convalidated AND (k.conrelid = ANY(%s::regclass[]) OR k.confrelid = ANY(%s::regclass[]))
        """,
        ([t.sql for t in tables], [t.sql for t in tables]),
    ).fetchall()
    broken = []
    for name, child, parent, cols, pcols in rows:
        not_null = " AND ".join(f"c.{c} IS NOT NULL" for c in cols)
        match = " AND ".join(f"p.{p} = c.{c}" for c, p in zip(cols, pcols))
        bad = conn.execute(
            f"SELECT count(*) FROM {child} c WHERE {not_null} AND NOT EXISTS (SELECT 1 FROM {parent} p WHERE {match})"
        ).fetchone()[0]
        if bad:
            broken.append(f"{name} on {child}: {bad} rows reference missing {parent} rows")
    return broken


def _post_validate(conn, plan: DatabasePlan, root: Path, results: list[dict]) -> list[str]:
    """Each restored table equal to its dump: by the dump's COPY digest, or else value by value."""
    mismatches = []
    by_table = {r["table"]: r for r in results}
    for step in plan.tables:
        result = by_table[step.ref.qualified]
        expected_copy = step.sidecar.get("copy_sha256")
        if expected_copy:
            rows, actual = live_copy_sha256(conn, step.sidecar)
            if rows == step.rows_after and actual == expected_copy:
                result.update(validated_by="copy_sha256", checksum=actual)
                continue
        # No digest (an older backup), or the text differs: this server may print some type
        # differently from the one backed up. Compare the values themselves.
        expected_rows, expected = backup_fingerprint(root / step.parquet, step.sidecar)
        rows, actual = live_fingerprint(conn, describe_table(conn, step.ref), step.sidecar)
        result.update(validated_by="fingerprint", checksum=actual)
        if rows != expected_rows or rows != step.rows_after:
            mismatches.append(f"{step.ref.qualified}: {rows} rows, backup has {expected_rows}")
        elif actual != expected:
            mismatches.append(f"{step.ref.qualified}: content differs from the backup")
    return mismatches
