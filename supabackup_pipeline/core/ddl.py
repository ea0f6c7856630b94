"""DDL from a table's description (the sidecar JSON): used for the sidecar's own `ddl` and by restores."""

from __future__ import annotations

from supabackup_pipeline.core.catalog import TableRef
from supabackup_pipeline.core.pg_types import quote_ident


def column_sql(c: dict) -> str:
    """`"name" type [GENERATED ... | DEFAULT ...] [NOT NULL]` for one sidecar column."""
    line = f"{quote_ident(c['name'])} {c['type']}"
    if c.get("generated"):
        line += f" GENERATED ALWAYS AS ({c['default']}) STORED"
    elif c.get("identity"):
        line += f" GENERATED {'ALWAYS' if c['identity'] == 'always' else 'BY DEFAULT'} AS IDENTITY"
    elif c.get("default") is not None:
        line += f" DEFAULT {c['default']}"
    if c.get("not_null"):
        line += " NOT NULL"
    return line


def create_table_sql(sidecar: dict, foreign_keys: bool = False) -> str:
    """CREATE TABLE (+ indexes, RLS, policies, triggers) from a sidecar's description.

    Without foreign keys by default: a restore creates every table first and adds them after.
    """
    ref = TableRef(sidecar["schema"], sidecar["table"])
    lines = [f"    {column_sql(c)}" for c in sidecar["columns"]]
    lines += [f"    CONSTRAINT {quote_ident(k['name'])} {k['definition']}" for k in sidecar["constraints"]
              if foreign_keys or k["type"] != "f"]
    statements = [f"CREATE {'UNLOGGED ' if sidecar.get('unlogged') else ''}TABLE {ref.sql} (\n" + ",\n".join(lines) + "\n)"]
    statements += [i["definition"] for i in sidecar.get("indexes", [])]
    if sidecar.get("rls_enabled"):
        statements.append(f"ALTER TABLE {ref.sql} ENABLE ROW LEVEL SECURITY")
    if sidecar.get("rls_forced"):
        statements.append(f"ALTER TABLE {ref.sql} FORCE ROW LEVEL SECURITY")
    statements += [policy_sql(ref.sql, p) for p in sidecar.get("policies", [])]
    statements += [t["definition"] for t in sidecar.get("triggers", [])]
    return ";\n".join(statements)


def policy_sql(table_sql: str, p: dict) -> str:
    """CREATE POLICY from a row of pg_policies (name, permissive, command, roles, using, with_check)."""
    roles = ", ".join(r if r == "public" else quote_ident(r) for r in p["roles"])
    statement = f"CREATE POLICY {quote_ident(p['name'])} ON {table_sql} AS {p['permissive']} FOR {p['command']} TO {roles}"
    statement += f" USING ({p['using']})" if p.get("using") else ""
    statement += f" WITH CHECK ({p['with_check']})" if p.get("with_check") else ""
    return statement


def foreign_key_sql(sidecar: dict) -> list[str]:
    ref = TableRef(sidecar["schema"], sidecar["table"])
    return [f"ALTER TABLE {ref.sql} ADD CONSTRAINT {quote_ident(k['name'])} {k['definition']}"
            for k in sidecar["constraints"] if k["type"] == "f"]
