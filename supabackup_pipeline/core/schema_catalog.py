"""Facts about the backed-up schemas that pg_dump leaves out or that a restore must decide on.

Recorded at backup time in the snapshot (`database/schema.json`) and read the same way from the
live project when planning a restore:
- the extensions (a new project must create them before anything that uses them);
- the schemas themselves (owner, grants, comment: they are altered, never dropped);
- every function's signature and result (a function that keeps both is replaced in place, so its
  OID — and every trigger or policy elsewhere that calls it — survives);
- which materialized views were populated (pg_dump --schema-only creates them empty);
- the app's own objects on Supabase's tables: triggers on e.g. `auth.users` that call the app's
  functions, and RLS policies on `storage.*` and `realtime.*` tables (Storage access rules and
  Realtime Authorization's policies on `realtime.messages`; `supabase db dump` leaves them out);
- publication membership (e.g. `supabase_realtime`): pg_dump -n leaves publications out.
"""

from __future__ import annotations

import psycopg
from psycopg.rows import dict_row

SCHEMA_CATALOG = "database/schema.json"
# Schemas whose tables belong to Supabase's services: never restructured, but the app's policies
# on their tables are backed up and restored.
SUPABASE_POLICY_SCHEMAS = ["storage", "realtime"]
# Schemas Supabase (or PostgreSQL) owns. A policy on storage.objects that uses objects of any
# other schema belongs to a backup of that schema only: restored without it, it could not be made.
SUPABASE_SCHEMAS = ["auth", "storage", "extensions", "realtime", "graphql", "graphql_public", "vault",
                    "pgsodium", "pgsodium_masks", "net", "cron", "supabase_functions", "supabase_migrations",
                    "pgbouncer", "pg_catalog", "information_schema"]


def _rows(conn: psycopg.Connection, query: str, params: dict) -> list[dict]:
    return conn.cursor(row_factory=dict_row).execute(query, params).fetchall()


def read_schema_catalog(conn: psycopg.Connection, schemas: list[str]) -> dict:
    p = {"schemas": schemas, "policy_schemas": [s for s in SUPABASE_POLICY_SCHEMAS if s not in schemas],
         "allowed": sorted(set(schemas) | set(SUPABASE_SCHEMAS))}
    return {
        "schemas": _rows(conn, """
            SELECT n.nspname AS name, pg_get_userbyid(n.nspowner) AS owner, n.nspacl::text[] AS acl,
                   obj_description(n.oid, 'pg_namespace') AS comment
            FROM pg_namespace n WHERE n.nspname = ANY(%(schemas)s) ORDER BY 1""", p),
        "extensions": _rows(conn, """
            SELECT e.extname AS name, n.nspname AS schema, e.extversion AS version
            FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
            WHERE e.extname <> 'plpgsql' ORDER BY 1""", p),
        "functions": _rows(conn, """
            SELECT n.nspname AS schema, p.proname AS name, pg_get_function_identity_arguments(p.oid) AS args,
                   coalesce(pg_get_function_result(p.oid), '') AS result, p.prokind AS kind
            FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE n.nspname = ANY(%(schemas)s)
              AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                              AND d.objid = p.oid AND d.deptype = 'e')
            ORDER BY 1, 2, 3""", p),
        "populated_matviews": _rows(conn, """
            SELECT n.nspname AS schema, c.relname AS name FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind = 'm' AND c.relispopulated AND n.nspname = ANY(%(schemas)s) ORDER BY 1, 2""", p),
        "app_triggers": _rows(conn, """
            SELECT t.oid, tn.nspname AS schema, c.relname AS table, t.tgname AS name,
                   pg_get_triggerdef(t.oid) AS definition, t.tgenabled::text AS enabled
            FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace tn ON tn.oid = c.relnamespace
            JOIN pg_proc f ON f.oid = t.tgfoid JOIN pg_namespace fn ON fn.oid = f.pronamespace
            WHERE NOT t.tgisinternal AND fn.nspname = ANY(%(schemas)s) AND NOT tn.nspname = ANY(%(schemas)s)
            ORDER BY 1, 2, 3""", p),
        "app_policies": _rows(conn, """
            SELECT (SELECT p.oid FROM pg_policy p WHERE p.polname = policyname
                    AND p.polrelid = format('%%I.%%I', schemaname, tablename)::regclass) AS oid,
                   schemaname AS schema, tablename AS table, policyname AS name, permissive, roles::text[] AS roles,
                   cmd AS command, qual AS using, with_check
            FROM pg_policies WHERE schemaname = ANY(%(policy_schemas)s)
              AND NOT EXISTS (
                  SELECT 1 FROM pg_policy pol JOIN pg_depend d ON d.classid = 'pg_policy'::regclass AND d.objid = pol.oid
                  CROSS JOIN LATERAL pg_identify_object(d.refclassid, d.refobjid, 0) o
                  WHERE pol.polname = policyname AND pol.polrelid = format('%%I.%%I', schemaname, tablename)::regclass
                    AND o.schema IS NOT NULL AND NOT o.schema = ANY(%(allowed)s))
            ORDER BY 1, 2, 3""", p),
        "publications": publication_tables(conn, schemas),
    }


# A table's membership, with its row filter and column list (PostgreSQL 15), as ADD TABLE takes them.
_PUBLICATION_TABLES = """
SELECT t.pubname AS publication, t.schemaname AS schema, t.tablename AS table,
       pg_get_expr(r.prqual, r.prrelid) AS row_filter,
       CASE WHEN r.prattrs IS NOT NULL THEN ARRAY(
           SELECT quote_ident(a.attname) FROM unnest(r.prattrs::int2[]) u(n)
           JOIN pg_attribute a ON a.attrelid = r.prrelid AND a.attnum = u.n ORDER BY a.attnum) END AS columns
FROM pg_publication_tables t JOIN pg_publication p ON p.pubname = t.pubname
LEFT JOIN pg_publication_rel r ON r.prpubid = p.oid AND r.prrelid = format('%%I.%%I', t.schemaname, t.tablename)::regclass
WHERE t.schemaname = ANY(%(schemas)s) ORDER BY 1, 2, 3"""


def publication_tables(conn: psycopg.Connection, schemas: list[str]) -> list[dict]:
    """Publication membership of the schemas' tables (pg_dump -n leaves publications out)."""
    return _rows(conn, _PUBLICATION_TABLES, {"schemas": schemas})
