"""What the database says about its tables: the list to back up and each table's full description.

Everything here is read inside the backup's snapshot transaction, so the description matches the
rows exactly. Catalog functions (`pg_get_constraintdef`, `pg_get_indexdef`, ...) give the DDL in
the server's own words, which a restore can execute as is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg.rows import dict_row

from supabackup_pipeline.core.pg_types import Column, quote_ident


@dataclass(frozen=True)
class TableRef:
    schema: str
    name: str

    @property
    def qualified(self) -> str:
        """schema.table as users write it (and as files are named)."""
        return f"{self.schema}.{self.name}"

    @property
    def sql(self) -> str:
        return f"{quote_ident(self.schema)}.{quote_ident(self.name)}"


@dataclass
class TableDescription:
    ref: TableRef
    columns: list[Column]
    ddl: str
    constraints: list[dict] = field(default_factory=list)
    indexes: list[dict] = field(default_factory=list)
    policies: list[dict] = field(default_factory=list)
    triggers: list[dict] = field(default_factory=list)
    rls_enabled: bool = False
    rls_forced: bool = False
    unlogged: bool = False
    partition_of: str | None = None
    comment: str | None = None

    def to_json(self) -> dict:
        return {
            "schema": self.ref.schema,
            "table": self.ref.name,
            "columns": [
                {
                    "name": c.name, "type": c.pg_type, "base_type": c.base_type, "element_type": c.element_type,
                    "not_null": c.not_null, "default": c.default,
                    "identity": {"a": "always", "d": "by default"}.get(c.identity),
                    "generated": "stored" if c.generated == "s" else None,
                }
                for c in self.columns
            ],
            "constraints": self.constraints,
            "indexes": self.indexes,
            "policies": self.policies,
            "triggers": self.triggers,
            "rls_enabled": self.rls_enabled,
            "rls_forced": self.rls_forced,
            "unlogged": self.unlogged,
            "partition_of": self.partition_of,
            "comment": self.comment,
            "ddl": self.ddl,
        }


def list_tables(conn: psycopg.Connection, schemas: list[str]) -> list[TableRef]:
    """Ordinary tables (and leaf partitions, which hold the rows) of the given schemas, sorted.
    An extension's own tables (PostGIS's spatial_ref_sys, when PostGIS is in `public`) are left out:
    the extension makes them and their rows (see `extension_table_rows` for rows added to them)."""
    rows = conn.execute(
        """
        SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r' AND n.nspname = ANY(%s) AND c.relpersistence <> 't'
          AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_class'::regclass AND e.objid = c.oid
                          AND e.deptype = 'e')
        ORDER BY n.nspname COLLATE "C", c.relname COLLATE "C"
        """,
        (schemas,),
    ).fetchall()
    return [TableRef(schema, name) for schema, name in rows]


def extension_table_rows(conn: psycopg.Connection, schemas: list[str]) -> list[tuple[str, str, int]]:
    """(table, extension, rows) for each configuration table of an extension in `schemas` that holds
    rows the extension did not make itself (those its `pg_extension_config_dump` condition selects,
    as pg_dump reads them): rows a backup of the schemas does not hold."""
    found = []
    for table, extension, condition in conn.execute(
        """
        SELECT format('%%I.%%I', n.nspname, c.relname), x.extname, coalesce(x.extcondition[i], '')
        FROM pg_extension x CROSS JOIN LATERAL generate_subscripts(x.extconfig, 1) i
        JOIN pg_class c ON c.oid = x.extconfig[i] JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = ANY(%s) AND c.relkind = 'r'
        """,
        (schemas,),
    ).fetchall():
        count = conn.execute(f"SELECT count(*) FROM ONLY {table} {condition}").fetchone()[0]
        if count:
            found.append((table, extension, count))
    return found


NO_SELECT, RLS_HIDES_ROWS = "no SELECT privilege", "row-level security would hide rows"


def unreadable_tables(conn: psycopg.Connection, tables: list[TableRef]) -> dict[str, str]:
    """Tables this role cannot read whole → why: no SELECT on it, or row-level security would hide
    rows from it (the role lacks BYPASSRLS, and the table is not its own or forces RLS on its owner).
    The sessions run with `row_security = off`, so such a read fails rather than returning fewer rows."""
    if not tables:
        return {}
    rows = conn.execute(
        """
        SELECT format('%%I.%%I', n.nspname, c.relname),
               CASE WHEN NOT has_table_privilege(c.oid, 'SELECT') THEN %s ELSE %s END
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.oid = ANY(%s::regclass[])
          AND (NOT has_table_privilege(c.oid, 'SELECT')
               OR (c.relrowsecurity AND NOT (SELECT rolbypassrls FROM pg_roles WHERE rolname = current_user)
                   AND (c.relforcerowsecurity OR NOT pg_has_role(c.relowner, 'USAGE'))))
        ORDER BY 1
        """,
        (NO_SELECT, RLS_HIDES_ROWS, [t.sql for t in tables]),
    ).fetchall()
    return dict(rows)


def table_exists(conn: psycopg.Connection, ref: TableRef) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (ref.sql,)).fetchone()[0]


_COLUMNS_SQL = """
WITH RECURSIVE cols AS (
    SELECT a.attnum, a.attname, a.atttypid, a.atttypmod, a.attnotnull, a.attidentity, a.attgenerated,
           pg_get_expr(d.adbin, d.adrelid) AS default_expr
    FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE a.attrelid = %(oid)s AND a.attnum > 0 AND NOT a.attisdropped
)
SELECT c.attname, format_type(c.atttypid, c.atttypmod),
       base.typname, elem_base.typname,
       c.attnotnull, c.default_expr, c.attidentity, c.attgenerated
FROM cols c
JOIN pg_type t ON t.oid = c.atttypid
-- resolve domains to the type they are built on (a domain over int4 is stored as int4)
JOIN pg_type base ON base.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
LEFT JOIN pg_type elem ON elem.oid = base.typelem AND base.typcategory = 'A'
LEFT JOIN pg_type elem_base ON elem_base.oid = CASE WHEN elem.typtype = 'd' THEN elem.typbasetype ELSE elem.oid END
ORDER BY c.attnum
"""


def _records(conn: psycopg.Connection, query: str, params: tuple) -> list[dict]:
    """The query's rows as dicts keyed by its column names (the sidecar's keys, as the SQL names them)."""
    return conn.cursor(row_factory=dict_row).execute(query, params).fetchall()


def table_columns(conn: psycopg.Connection, ref: TableRef) -> list[Column]:
    """The table's columns, in order (what `describe_table` says of them, without the rest)."""
    return _columns(conn, conn.execute("SELECT %s::regclass::oid", (ref.sql,)).fetchone()[0])


def _columns(conn: psycopg.Connection, oid: int) -> list[Column]:
    return [
        Column(name=r[0], pg_type=r[1], base_type=r[2], element_type=r[3], not_null=r[4], default=r[5],
               identity=r[6] or "", generated=r[7] or "")
        for r in conn.execute(_COLUMNS_SQL, {"oid": oid}).fetchall()
    ]


def describe_table(conn: psycopg.Connection, ref: TableRef) -> TableDescription:
    oid, relrowsecurity, relforcerowsecurity, relpersistence, comment = conn.execute(
        "SELECT c.oid, c.relrowsecurity, c.relforcerowsecurity, c.relpersistence, obj_description(c.oid, 'pg_class')"
        " FROM pg_class c WHERE c.oid = %s::regclass",
        (ref.sql,),
    ).fetchone()
    columns = _columns(conn, oid)
    constraints = _records(
        conn,
        "SELECT conname AS name, contype AS type, pg_get_constraintdef(oid, true) AS definition,"
        " CASE WHEN contype = 'f' THEN confrelid::regclass::text END AS references FROM pg_constraint"
        " WHERE conrelid = %s AND contype <> 'n' ORDER BY contype <> 'p', conname COLLATE \"C\"",
        (oid,),
    )
    indexes = _records(
        conn,
        "SELECT ic.relname AS name, pg_get_indexdef(i.indexrelid) AS definition"
        " FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid"
        " WHERE i.indrelid = %s AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)"
        " ORDER BY ic.relname COLLATE \"C\"",
        (oid,),
    )
    policies = _records(
        conn,
        "SELECT policyname AS name, cmd AS command, permissive, roles::text[] AS roles, qual AS \"using\", with_check"
        " FROM pg_policies WHERE schemaname = %s AND tablename = %s ORDER BY policyname COLLATE \"C\"",
        (ref.schema, ref.name),
    )
    triggers = _records(
        conn,
        "SELECT tgname AS name, pg_get_triggerdef(oid, true) AS definition, tgenabled::text AS enabled FROM pg_trigger"
        " WHERE tgrelid = %s AND NOT tgisinternal ORDER BY tgname COLLATE \"C\"",
        (oid,),
    )
    parent = conn.execute(
        "SELECT inhparent::regclass::text FROM pg_inherits WHERE inhrelid = %s", (oid,)
    ).fetchone()
    description = TableDescription(
        ref=ref, columns=columns, ddl="", constraints=constraints, indexes=indexes, policies=policies,
        triggers=triggers, rls_enabled=relrowsecurity, rls_forced=relforcerowsecurity,
        unlogged=relpersistence == "u", partition_of=parent[0] if parent else None, comment=comment,
    )
    description.ddl = table_ddl(description)
    return description


def table_ddl(t: TableDescription) -> str:
    """CREATE TABLE (+ foreign keys, indexes, RLS, policies, triggers) recreating this table as it was."""
    from supabackup_pipeline.core.ddl import create_table_sql

    return create_table_sql(t.to_json(), foreign_keys=True) + ";"
