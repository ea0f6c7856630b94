"""The schema phase of a rollback: make the backed-up schemas exactly what they were.

Runs inside the restore's one transaction, around the data load, as pg_restore would order it:

1. `prepare`: extensions the backup uses are created; the app's objects on Supabase tables that changed are dropped;
   every object of the schemas is dropped (tables, views, types, sequences, functions), except
   tables created after the backup (unless `drop_new_tables`; a partition added since the backup
   to a backed-up table is not a new table: its rows are rows of that table written since the
   backup, and go with them), extension members, and functions
   whose signature and result are unchanged (they are replaced in place, keeping their OID, so a
   trigger on `auth.users` or a policy on `storage.objects` that calls them keeps working);
   then the backup's objects are created (pg_dump's pre-data: types, functions, tables, views).
2. the caller loads the rows into the new, index-less tables;
3. `finish`: constraints, indexes, triggers, policies (post-data); populated materialized views
   refreshed; publication membership; grants made exactly the backup's (objects first reset to
   their defaults, since the role's default privileges gave new objects grants of their own);
   the app's triggers and policies on Supabase tables recreated in their own enabled mode.

Everything that must be decided is decided by `plan_schema_restore`, read-only, before the
transaction starts: anything outside the rebuild that a drop would take with it is refused by
name (no silent CASCADE), a missing extension is refused, owners the role may not assign fall
back to the restoring role with a plan note.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import psycopg

from supabackup_pipeline.core.catalog import TableRef
from supabackup_pipeline.core.ddl import policy_sql
from supabackup_pipeline.core.errors import RestoreRefused, SupabackupError
from supabackup_pipeline.core.live_schema import LiveObject, dependents, live_objects
from supabackup_pipeline.core.pg_types import quote_ident
from supabackup_pipeline.core.schema_catalog import SCHEMA_CATALOG, publication_tables, read_schema_catalog
from supabackup_pipeline.core.schema_dump import GRANTS, SCHEMA_DUMP, Entry, compare_entries

Log = Callable[[str], None]
_ENABLE = {"O": "ENABLE TRIGGER", "A": "ENABLE ALWAYS TRIGGER", "R": "ENABLE REPLICA TRIGGER", "D": "DISABLE TRIGGER"}
_AUTHORIZATION = re.compile(r"^(SET|RESET) SESSION AUTHORIZATION.*$", re.M)
_USING_GIN = re.compile(r"\bUSING gin\b")
# GIN builds ran about twice as fast with 8 MB of maintenance_work_mem as with the default 64 MB
# (the realistic benchmark's tsvector index over 20k long task bodies: 1.9 s against 4.2 s; 4 MB as
# fast, 32 MB 2.5 s; over 120k bodies no gain and no loss), measured, the cause not pinned down.
GIN_BUILD_MEMORY = "8MB"
_RELATION_ENTRIES = {"TABLE", "VIEW", "MATERIALIZED VIEW", "SEQUENCE", "FOREIGN TABLE"}
# pg_dump writes one grantee per statement: `GRANT … TO role;`, `REVOKE … FROM role;`
_GRANTEE = re.compile(r'^(?:GRANT|REVOKE|ALTER DEFAULT PRIVILEGES) .* (?:TO|FROM) ("(?:[^"]|"")*"|[^\s;"]+)'
                      r'(?: WITH GRANT OPTION)?;$', re.M)


class SchemaRestoreRefused(RestoreRefused):
    """The schema cannot be restored without breaking something outside it; nothing was touched."""


def has_schema_dump(root: Path) -> bool:
    return (root / SCHEMA_DUMP).exists() and (root / SCHEMA_CATALOG).exists()


@dataclass
class AppObjects:
    """The app's triggers and policies on Supabase tables: live ones to drop, backed-up ones to create."""

    live_triggers: list[dict] = field(default_factory=list)
    live_policies: list[dict] = field(default_factory=list)
    backed_triggers: list[dict] = field(default_factory=list)
    backed_policies: list[dict] = field(default_factory=list)
    drop_triggers: list[dict] = field(default_factory=list)
    drop_policies: list[dict] = field(default_factory=list)
    create_triggers: list[dict] = field(default_factory=list)
    create_policies: list[dict] = field(default_factory=list)


@dataclass
class SchemaPlan:
    schemas: list[str]
    entries: list[Entry]
    catalog: dict
    drops: list[LiveObject]
    kept_functions: list[LiveObject]
    new_tables: list[str]  # created after the backup: left alone unless drop_new_tables
    new_partitions: list[LiveObject]  # added since the backup to a backed-up table: dropped with it
    existing_schemas: set[str]
    missing_extensions: list[dict]
    fallback_owners: set[str]
    missing_grantees: set[str]  # roles granted to in the backup that do not exist here
    app: AppObjects
    changes: list[dict]
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"notes": self.notes,
                "extensions_to_create": [e["name"] for e in self.missing_extensions],
                "functions_replaced_in_place": [f.sql_name for f in self.kept_functions],
                "partitions_dropped_with_their_table": [p.qualified for p in self.new_partitions]}


# ------------------------------------------------------------------ plan
def plan_schema_restore(conn: psycopg.Connection, root: Path, entries: list[Entry], schemas: list[str],
                        drop_new_tables: bool, live: list[Entry] | None = None) -> SchemaPlan:
    """Decide the whole schema phase from the live database, changing nothing; refuse (naming the
    objects) whatever could not be done without breaking something outside the rebuild."""
    catalog = json.loads((root / SCHEMA_CATALOG).read_text())
    now = read_schema_catalog(conn, schemas)
    objects = live_objects(conn, schemas)
    backed_relations = {(e.schema, e.name) for e in entries if e.kind in _RELATION_ENTRIES}
    backed_tables = {f"{e.schema}.{e.name}" for e in entries if e.kind == "TABLE"}

    added = [o for o in objects if o.is_table and (o.schema, o.name) not in backed_relations]
    new_partitions = _under_backed_tables(added, backed_tables)
    new = [o for o in added if o not in new_partitions]
    kept_tables = [] if drop_new_tables else new
    kept_oids = {o.oid for o in kept_tables} | _owned_sequences(conn, [o.oid for o in kept_tables])
    backed_signatures = {(f["schema"], f["name"], f["args"], f["result"]) for f in catalog["functions"]}
    kept_functions = {o.oid: o for o in objects
                      if o.catalog == "pg_proc" and o.code in ("f", "p") and o.signature in backed_signatures}
    drops = [o for o in objects if o.oid not in kept_oids and o.oid not in kept_functions]
    app = _plan_app_objects(catalog, now)
    _settle_drops(conn, drops, kept_functions, app, objects)

    plan = SchemaPlan(
        schemas=schemas, entries=entries, catalog=catalog, drops=drops,
        kept_functions=sorted(kept_functions.values(), key=lambda o: o.sql_name),
        new_tables=sorted(o.qualified for o in new), new_partitions=new_partitions,
        existing_schemas={s["name"] for s in now["schemas"]},
        missing_extensions=_missing_extensions(conn, catalog, now),
        fallback_owners=_fallback_owners(conn, entries), missing_grantees=_missing_grantees(conn, entries), app=app,
        changes=compare_entries(entries, live) if live is not None else [],
    )
    _note_plan(plan, conn)
    return plan


def _under_backed_tables(added: list[LiveObject], backed_tables: set[str]) -> list[LiveObject]:
    """The added tables that are partitions (at any depth) of a backed-up table."""
    parent_of = {o.qualified: o.partition_of for o in added}
    found = []
    for o in added:
        node = o.partition_of
        while node in parent_of:
            node = parent_of[node]
        if node in backed_tables:
            found.append(o)
    return found


def _owned_sequences(conn: psycopg.Connection, table_oids: list[int]) -> set[int]:
    rows = conn.execute(
        "SELECT objid FROM pg_depend WHERE classid = 'pg_class'::regclass AND refobjid = ANY(%s::oid[])"
        " AND deptype IN ('a', 'i') AND objid IN (SELECT oid FROM pg_class WHERE relkind = 'S')",
        (table_oids,)).fetchall()
    return {r[0] for r in rows}


def _settle_drops(conn, drops: list[LiveObject], kept_functions: dict[int, LiveObject], app: AppObjects,
                  objects: list[LiveObject]) -> None:
    """Follow pg_depend from everything to be dropped. A kept function that depends on a dropped
    object (its argument is a recreated type, say) is dropped and recreated too; the app's triggers
    and policies on Supabase tables that depend on one are dropped and recreated from the backup;
    anything else that would go with them refuses the restore, by name."""
    by_oid = {o.oid: o for o in objects}
    managed = {t["oid"]: t for t in app.live_triggers} | {p["oid"]: p for p in app.live_policies}
    while True:
        dropped = {o.oid for o in drops}
        found = dependents(conn, sorted(dropped))
        pulled = [kept_functions.pop(d.oid) for d in found if d.oid in kept_functions]
        if not pulled:
            break
        drops += pulled
    for d in found:
        if d.owner_oid not in dropped and d.oid in managed:
            _drop_managed(app, managed[d.oid])
    _refuse_outside_dependents(found, dropped, {o["oid"] for o in app.drop_triggers + app.drop_policies}, by_oid)


def _refuse_outside_dependents(found: list, dropped: set[int], managed: set[int],
                               by_oid: dict[int, LiveObject]) -> None:
    blockers = []
    for d in found:
        if d.owner_oid in dropped or d.oid in managed:
            continue
        root = by_oid.get(d.root_oid)
        blockers.append(f"{d.owner} depends on {root.kind.lower() + ' ' + root.sql_name if root else d.root_oid}")
    if blockers:
        raise SchemaRestoreRefused(
            "restoring the schema would drop objects that are not part of the backup, refusing (nothing was"
            " changed): " + "; ".join(sorted(set(blockers))[:20])
            + ". Tables created after the backup are dropped only with --drop-new-tables; objects in other"
            " schemas must be dropped or changed by hand first.")


def _drop_managed(app: AppObjects, obj: dict) -> None:
    """A live app trigger/policy that has to go for the rebuild: dropped, and recreated if backed up."""
    target = app.drop_triggers if "enabled" in obj else app.drop_policies
    if obj not in target:
        target.append(obj)
    backed = app.backed_triggers if "enabled" in obj else app.backed_policies
    create = app.create_triggers if "enabled" in obj else app.create_policies
    twin = next((b for b in backed if _same_name(b, obj)), None)
    if twin is not None and twin not in create:
        create.append(twin)


def _same_name(a: dict, b: dict) -> bool:
    return (a["schema"], a["table"], a["name"]) == (b["schema"], b["table"], b["name"])


def _comparable(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if k not in ("oid", "may_own")}


def _plan_app_objects(catalog: dict, now: dict) -> AppObjects:
    """Triggers and policies that differ between the live project and the backup."""
    app = AppObjects(live_triggers=now["app_triggers"], live_policies=now["app_policies"],
                     backed_triggers=catalog["app_triggers"], backed_policies=catalog["app_policies"])
    for live, backed, drop, create in ((now["app_triggers"], catalog["app_triggers"], app.drop_triggers, app.create_triggers),
                                       (now["app_policies"], catalog["app_policies"], app.drop_policies, app.create_policies)):
        for obj in live:
            twin = next((b for b in backed if _same_name(b, obj)), None)
            if twin is None or _comparable(twin) != _comparable(obj):
                drop.append(obj)
        for obj in backed:
            twin = next((b for b in live if _same_name(b, obj)), None)
            if twin is None or _comparable(twin) != _comparable(obj):
                create.append(obj)
    return app


def _missing_extensions(conn, catalog: dict, now: dict) -> list[dict]:
    installed = {e["name"] for e in now["extensions"]}
    missing = [e for e in catalog["extensions"] if e["name"] not in installed]
    available = {r[0] for r in conn.execute("SELECT name FROM pg_available_extensions").fetchall()}
    unavailable = sorted(e["name"] for e in missing if e["name"] not in available)
    if unavailable:
        raise SchemaRestoreRefused(
            f"the backup uses extension(s) this database cannot install: {', '.join(unavailable)}"
            " (enable them in the project first); nothing was changed")
    return missing


def _fallback_owners(conn, entries: list[Entry]) -> set[str]:
    """Owners in the backup that do not exist here, or that the restoring role may not assign."""
    owners = sorted({e.owner for e in entries if e.owner})
    rows = conn.execute(
        "SELECT o, EXISTS (SELECT 1 FROM pg_roles WHERE rolname = o)"
        " AND pg_has_role(current_user, o, 'MEMBER') FROM unnest(%s::text[]) o", (owners,)).fetchall()
    return {owner for owner, assignable in rows if not assignable}


def _role_name(text: str) -> str:
    return text[1:-1].replace('""', '"') if text.startswith('"') else text


def _missing_grantees(conn, entries: list[Entry]) -> set[str]:
    named = {_role_name(m) for e in entries if e.kind in GRANTS for m in _GRANTEE.findall(e.sql)} - {"PUBLIC"}
    rows = conn.execute("SELECT r FROM unnest(%s::text[]) r WHERE NOT EXISTS"
                        " (SELECT 1 FROM pg_roles WHERE rolname = r)", (sorted(named),)).fetchall()
    return {r[0] for r in rows}


def _note_plan(plan: SchemaPlan, conn) -> None:
    role = conn.execute("SELECT current_user").fetchone()[0]
    for owner in sorted(plan.fallback_owners):
        objects = sum(1 for e in plan.entries if e.owner == owner and e.kind not in GRANTS)
        if not objects:
            continue
        plan.notes.append(f"owner {owner} of {objects} object(s) does not exist here or may not be assigned"
                          f" by {role}: they will be owned by {role}")
    if plan.missing_grantees:
        plan.notes.append(f"grants to role(s) that do not exist here are left out: {', '.join(sorted(plan.missing_grantees))}")
    for part in plan.new_partitions:
        plan.notes.append(f"partition {part.qualified} was added to {part.partition_of} after the backup: its rows"
                          " were written since the backup and go with it (the safety backup keeps them)")
    for row in plan.catalog["publications"]:
        pub = conn.execute("SELECT pg_has_role(pubowner, 'USAGE') FROM pg_publication WHERE pubname = %s",
                           (row["publication"],)).fetchone()
        if pub is None or not pub[0]:
            plan.notes.append(f"{row['schema']}.{row['table']} was in publication {row['publication']}, which "
                              + ("does not exist here" if pub is None else f"{role} may not alter")
                              + ": add it back by hand")
    blocked = [o for o in plan.drops + plan.kept_functions if not o.may_own]  # kept ones are replaced in place
    if blocked:
        raise SchemaRestoreRefused(
            f"{role} may not drop or replace these objects (owned by roles it is not a member of), nothing was"
            " changed: "
            + ", ".join(f"{o.kind.lower()} {o.sql_name} (owner {o.owner})" for o in blocked[:20]))


# ------------------------------------------------------------------ apply
def prepare(conn: psycopg.Connection, plan: SchemaPlan, log: Log) -> None:
    """Everything before the data: extensions, drops, then the backup's pre-data objects."""
    conn.execute("SELECT set_config('check_function_bodies', 'false', true)")
    for ext in plan.missing_extensions:
        _create_extension(conn, ext)
        log(f"extension {ext['name']} created in schema {ext['schema']}")
    for trigger in plan.app.drop_triggers:
        conn.execute(f"DROP TRIGGER {quote_ident(trigger['name'])} ON {TableRef(trigger['schema'], trigger['table']).sql}")
    for policy in plan.app.drop_policies:
        conn.execute(f"DROP POLICY {quote_ident(policy['name'])} ON {TableRef(policy['schema'], policy['table']).sql}")
    # checked again inside the transaction: nothing may have come to depend on them since the plan
    dropped = {o.oid for o in plan.drops}
    _refuse_outside_dependents(dependents(conn, sorted(dropped)), dropped,
                               {o["oid"] for o in plan.app.drop_triggers + plan.app.drop_policies},
                               {o.oid: o for o in plan.drops})
    _drop_objects(conn, plan.drops)
    log(f"schema: dropped {len(plan.drops)} object(s), {len(plan.kept_functions)} function(s) to replace in place")
    for function in plan.kept_functions:
        conn.execute(f"COMMENT ON {function.kind} {function.sql_name} IS NULL")
    _sync_schemas(conn, plan)
    _run_entries(conn, plan, "pre-data")


def _create_extension(conn, ext: dict) -> None:
    """An extension the backup uses and the project lacks. Untrusted ones (postgis, …) need a
    superuser, or on a hosted project Supabase's own allowance for `postgres`; some (pg_cron,
    pgsodium) must also be preloaded by the server. Where it cannot be created, the restore stops
    with what to do (the transaction rolls back)."""
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(ext['schema'])}")
    try:
        # CASCADE: one it requires that sorts after it (pgrouting → postgis) comes first
        conn.execute(f"CREATE EXTENSION IF NOT EXISTS {quote_ident(ext['name'])} SCHEMA {quote_ident(ext['schema'])}"
                     " CASCADE")
    except psycopg.Error as exc:
        why = ("which role " + conn.info.user + " may not create here"
               if isinstance(exc, psycopg.errors.InsufficientPrivilege) else "which this server could not create")
        raise SchemaRestoreRefused(
            f"the backup uses extension {ext['name']}, {why} ({str(exc).strip().splitlines()[0]}): enable it in"
            f" schema {ext['schema']} first (Dashboard → Database → Extensions, or CREATE EXTENSION as a"
            " superuser), then restore again; nothing was changed"
        ) from None


def _drop_objects(conn, drops: list[LiveObject]) -> None:
    """DROP … CASCADE of each object still there (an earlier cascade may have taken it): the plan
    checked that every cascade stays inside the rebuild. Tables before sequences: an identity
    column's sequence goes with its table and cannot be dropped alone (its name may sort first)."""
    order = {"pg_class": 0, "pg_proc": 1, "pg_type": 2}
    for obj in sorted(drops, key=lambda o: (order[o.catalog], o.code in ("S", "c"))):
        if conn.execute(f"SELECT 1 FROM {obj.catalog} WHERE oid = %s", (obj.oid,)).fetchone():
            conn.execute(f"DROP {obj.kind} {obj.sql_name} CASCADE")


def _sync_schemas(conn, plan: SchemaPlan) -> None:
    """Existing schemas are altered, never dropped: comment and grants made the backup's."""
    live = {s["name"]: s for s in read_schema_catalog(conn, plan.schemas)["schemas"]}
    for backed in plan.catalog["schemas"]:
        now = live.get(backed["name"])
        if now is None:
            continue
        schema = quote_ident(backed["name"])
        if now["comment"] != backed["comment"] and backed["comment"] is None:
            conn.execute(f"COMMENT ON SCHEMA {schema} IS NULL")
        if (now["acl"] or []) != (backed["acl"] or []):
            for grantee in {_acl_grantee(item) for item in now["acl"] or []} - {now["owner"]}:
                conn.execute(f"REVOKE ALL ON SCHEMA {schema} FROM {grantee}")
            for item in backed["acl"] or []:
                grantee, privileges = _acl_grantee(item), item.split("=", 1)[1].split("/", 1)[0]
                names = [{"U": "USAGE", "C": "CREATE"}[p] for p in privileges.replace("*", "")]
                if names and grantee != backed["owner"]:
                    conn.execute(f"GRANT {', '.join(names)} ON SCHEMA {schema} TO {grantee}")


def _acl_grantee(item: str) -> str:
    grantee = item.split("=", 1)[0].strip('"')
    return "PUBLIC" if grantee == "" else quote_ident(grantee)


def _entry_sql(entry: Entry, plan: SchemaPlan) -> str:
    """An entry's SQL as this database can run it."""
    if entry.kind == "DEFAULT ACL" and entry.owner in plan.fallback_owners:
        return ""  # another role's default privileges (supabase_admin's in public): not ours to change
    sql = _AUTHORIZATION.sub("", entry.sql)  # grants by other grantors: made by this role instead
    if entry.kind == "SCHEMA" and entry.name in plan.existing_schemas:
        sql = re.sub(r"^CREATE SCHEMA [^;]*;\s*", "", sql)
    if entry.kind in ("FUNCTION", "PROCEDURE"):
        sql = re.sub(rf"^CREATE {entry.kind}", f"CREATE OR REPLACE {entry.kind}", sql)
    if entry.kind in GRANTS and plan.missing_grantees:
        sql = _GRANTEE.sub(lambda m: "" if _role_name(m[1]) in plan.missing_grantees else m[0], sql)
    for owner in plan.fallback_owners:
        sql = re.sub(rf"^ALTER [^\n]* OWNER TO {re.escape(quote_ident(owner))};$|"
                     rf"^ALTER [^\n]* OWNER TO {re.escape(owner)};$", "", sql, flags=re.M)
    return sql.strip()


def _run_entries(conn, plan: SchemaPlan, section: str) -> None:
    for entry in plan.entries:
        if entry.section != section:
            continue
        sql = _entry_sql(entry, plan)
        if not sql:
            continue
        try:
            if entry.kind == "INDEX" and _USING_GIN.search(sql):
                _build_gin_index(conn, sql)
            else:
                conn.execute(sql)
        except psycopg.Error as exc:
            raise SupabackupError(f"restoring {entry.kind.lower()} {entry.label} failed, nothing was changed:"
                                  f" {str(exc).strip().splitlines()[0]}") from exc


def _build_gin_index(conn, sql: str) -> None:
    """A GIN index built with at most GIN_BUILD_MEMORY of maintenance_work_mem, then the setting put
    back (both local to the transaction; any role may set it)."""
    previous = conn.execute("SELECT current_setting('maintenance_work_mem')").fetchone()[0]
    conn.execute("SELECT set_config('maintenance_work_mem', %s, true)"
                 " WHERE pg_size_bytes(current_setting('maintenance_work_mem')) > pg_size_bytes(%s)",
                 (GIN_BUILD_MEMORY, GIN_BUILD_MEMORY))
    conn.execute(sql)
    conn.execute("SELECT set_config('maintenance_work_mem', %s, true)", (previous,))


def finish(conn: psycopg.Connection, plan: SchemaPlan, log: Log) -> None:
    """Everything after the data: post-data, materialized views, publications, grants, app objects."""
    _run_entries(conn, plan, "post-data")
    populated = {(m["schema"], m["name"]) for m in plan.catalog["populated_matviews"]}
    for entry in plan.entries:  # in pg_restore's order: a view over another view comes after it
        if entry.kind == "MATERIALIZED VIEW" and (entry.schema, entry.name) in populated:
            conn.execute(f"REFRESH MATERIALIZED VIEW {TableRef(entry.schema, entry.name).sql}")
    _restore_publications(conn, plan)
    _reset_grants(conn, plan)
    _run_entries(conn, plan, "grants")
    _create_app_objects(conn, plan.app)
    log(f"schema: {len(plan.entries)} object entries restored")


def _restore_publications(conn, plan: SchemaPlan) -> None:
    """Each table back in the publications it was in, with its row filter and column list (a table
    recreated here left them when it was dropped; a kept one may have another filter now)."""
    live = {(r["publication"], r["schema"], r["table"]): r for r in publication_tables(conn, plan.schemas)}
    for row in plan.catalog["publications"]:
        pub = conn.execute("SELECT puballtables, pg_has_role(pubowner, 'USAGE') FROM pg_publication WHERE pubname = %s",
                           (row["publication"],)).fetchone()
        if pub is None or pub[0] or not pub[1]:
            continue  # noted in the plan (all-tables publications need nothing)
        publication, table = quote_ident(row["publication"]), TableRef(row["schema"], row["table"]).sql
        now = live.get((row["publication"], row["schema"], row["table"]))
        member = (row.get("columns"), row.get("row_filter"))
        if now is not None and ((now["columns"], now["row_filter"]) == member or "row_filter" not in row):
            continue  # (a backup from before filters were recorded: a table already in it stays as it is)
        if now is not None:
            conn.execute(f"ALTER PUBLICATION {publication} DROP TABLE {table}")
        columns = f" ({', '.join(member[0])})" if member[0] else ""
        where = f" WHERE ({member[1]})" if member[1] else ""
        conn.execute(f"ALTER PUBLICATION {publication} ADD TABLE {table}{columns}{where}")


# Every object of the schemas with grants of its own, as GRANT/REVOKE name it.
_GRANTED_SQL = """
SELECT CASE WHEN c.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, format('%%I.%%I', n.nspname, c.relname),
       c.relowner, c.relacl, acldefault(CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::"char", c.relowner)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY(%(schemas)s) AND c.relacl IS NOT NULL AND NOT c.oid = ANY(%(kept)s::oid[])
UNION ALL
SELECT CASE WHEN p.prokind = 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, p.oid::regprocedure::text, p.proowner,
       p.proacl, acldefault('f'::"char", p.proowner)
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = ANY(%(schemas)s) AND p.proacl IS NOT NULL
UNION ALL
SELECT 'TYPE', format('%%I.%%I', n.nspname, t.typname), t.typowner, t.typacl, acldefault('T'::"char", t.typowner)
FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = ANY(%(schemas)s) AND t.typacl IS NOT NULL
"""


def _reset_grants(conn, plan: SchemaPlan) -> None:
    """Every object of the schemas back to its default grants, so that the backup's GRANT/REVOKE
    entries (written relative to those defaults) leave exactly the backup's grants: objects created
    here received the restoring role's default privileges, and replaced functions kept theirs."""
    kept = [o.oid for o in live_objects(conn, plan.schemas) if o.is_table and o.qualified in plan.new_tables]
    for kind, name, owner, acl, default in conn.execute(_GRANTED_SQL, {"schemas": plan.schemas, "kept": kept}).fetchall():
        revoke = conn.execute(
            "SELECT string_agg(DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee))"
            " END, ', ') FROM aclexplode(%s::aclitem[]) a", (acl,)).fetchone()[0]
        if revoke:
            conn.execute(f"REVOKE ALL ON {kind} {name} FROM {revoke}")
        for grantee, privilege in conn.execute(
                "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END,"
                " a.privilege_type FROM aclexplode(%s::aclitem[]) a", (default,)).fetchall():
            conn.execute(f"GRANT {privilege} ON {kind} {name} TO {grantee}")
    _reset_default_privileges(conn, plan.schemas)


def _reset_default_privileges(conn, schemas: list[str]) -> None:
    """Per-schema default privileges dropped, so the backup's DEFAULT ACL entries are all there is."""
    kinds = {"r": "TABLES", "S": "SEQUENCES", "f": "FUNCTIONS", "T": "TYPES", "n": "SCHEMAS"}
    rows = conn.execute(
        "SELECT pg_get_userbyid(d.defaclrole), n.nspname, d.defaclobjtype::text,"
        " CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END"
        " FROM pg_default_acl d JOIN pg_namespace n ON n.oid = d.defaclnamespace, aclexplode(d.defaclacl) a"
        " WHERE n.nspname = ANY(%s) AND pg_has_role(d.defaclrole, 'MEMBER')", (schemas,)).fetchall()
    for role, schema, kind, grantee in rows:
        conn.execute(f"ALTER DEFAULT PRIVILEGES FOR ROLE {quote_ident(role)} IN SCHEMA {quote_ident(schema)}"
                     f" REVOKE ALL ON {kinds[kind]} FROM {grantee}")


def _create_app_objects(conn, app: AppObjects) -> None:
    for trigger in app.create_triggers:
        table = TableRef(trigger["schema"], trigger["table"]).sql
        conn.execute(trigger["definition"])
        if trigger["enabled"] != "O":
            conn.execute(f"ALTER TABLE {table} {_ENABLE[trigger['enabled']]} {quote_ident(trigger['name'])}")
    for policy in app.create_policies:
        conn.execute(policy_sql(TableRef(policy["schema"], policy["table"]).sql, policy))
