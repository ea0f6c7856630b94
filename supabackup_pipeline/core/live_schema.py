"""What the live database holds in the backed-up schemas, and what depends on it from outside.

The schema phase of a restore drops the objects of those schemas and recreates them from the
backup. Before anything is dropped, `blockers` follows pg_depend from everything to be dropped
and names every object that would go with it but is not part of the rebuild (a view in another
schema, a column of a table created after the backup, ...): the restore then refuses, touching
nothing. No silent CASCADE.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

# (catalog, kind code) → the object kind DROP/GRANT statements use
_CLASS_KINDS = {"r": "TABLE", "p": "TABLE", "v": "VIEW", "m": "MATERIALIZED VIEW", "S": "SEQUENCE",
                "f": "FOREIGN TABLE", "c": "TYPE"}
_PROC_KINDS = {"f": "FUNCTION", "p": "PROCEDURE", "a": "AGGREGATE", "w": "FUNCTION"}
_TYPE_KINDS = {"e": "TYPE", "r": "TYPE", "b": "TYPE", "d": "DOMAIN"}


@dataclass(frozen=True)
class LiveObject:
    catalog: str  # pg_class, pg_proc or pg_type
    oid: int
    code: str  # relkind, prokind or typtype
    schema: str
    name: str
    sql_name: str  # quoted and qualified (functions: with their argument types)
    owner: str
    may_own: bool  # the restoring role may act as the owner (drop, alter, grant)
    partition_of: str | None = None  # "schema.table" of a partition's parent
    args: str = ""  # functions: identity arguments
    result: str = ""  # functions: result type

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def kind(self) -> str:
        kinds = {"pg_class": _CLASS_KINDS, "pg_proc": _PROC_KINDS, "pg_type": _TYPE_KINDS}[self.catalog]
        return kinds[self.code]

    @property
    def is_table(self) -> bool:
        return self.catalog == "pg_class" and self.code in ("r", "p")

    @property
    def signature(self) -> tuple[str, str, str, str]:
        return (self.schema, self.name, self.args, self.result)


_NOT_EXTENSION_MEMBER = """NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = '{catalog}'::regclass
                                       AND e.objid = o.oid AND e.deptype = 'e')"""

_OBJECTS_SQL = f"""
SELECT 'pg_class', o.oid, o.relkind::text, n.nspname, o.relname, format('%%I.%%I', n.nspname, o.relname),
       pg_get_userbyid(o.relowner), pg_has_role(o.relowner, 'USAGE'),
       (SELECT format('%%s.%%s', pn.nspname, pc.relname) FROM pg_inherits i JOIN pg_class pc ON pc.oid = i.inhparent
        JOIN pg_namespace pn ON pn.oid = pc.relnamespace WHERE i.inhrelid = o.oid AND o.relispartition), '', ''
FROM pg_class o JOIN pg_namespace n ON n.oid = o.relnamespace
WHERE n.nspname = ANY(%(schemas)s) AND o.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c')
  AND {_NOT_EXTENSION_MEMBER.format(catalog='pg_class')}
  -- a composite type's membership is recorded on its row type (PostGIS's geometry_dump in public)
  AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_type'::regclass AND e.objid = o.reltype
                  AND e.deptype = 'e')
UNION ALL
SELECT 'pg_proc', o.oid, o.prokind::text, n.nspname, o.proname, o.oid::regprocedure::text,
       pg_get_userbyid(o.proowner), pg_has_role(o.proowner, 'USAGE'), NULL,
       pg_get_function_identity_arguments(o.oid), coalesce(pg_get_function_result(o.oid), '')
FROM pg_proc o JOIN pg_namespace n ON n.oid = o.pronamespace
WHERE n.nspname = ANY(%(schemas)s) AND {_NOT_EXTENSION_MEMBER.format(catalog='pg_proc')}
UNION ALL
SELECT 'pg_type', o.oid, o.typtype::text, n.nspname, o.typname, format('%%I.%%I', n.nspname, o.typname),
       pg_get_userbyid(o.typowner), pg_has_role(o.typowner, 'USAGE'), NULL, '', ''
FROM pg_type o JOIN pg_namespace n ON n.oid = o.typnamespace
WHERE n.nspname = ANY(%(schemas)s) AND o.typtype IN ('e', 'r', 'b', 'd')
  AND NOT (o.typelem <> 0 AND o.typsubscript = 'array_subscript_handler'::regproc)
  AND {_NOT_EXTENSION_MEMBER.format(catalog='pg_type')}
ORDER BY 1, 4, 5
"""


def live_objects(conn: psycopg.Connection, schemas: list[str]) -> list[LiveObject]:
    """Tables, views, sequences, functions and types of the schemas, extension members left out
    (they belong to their extension, which stays)."""
    return [LiveObject(*row) for row in conn.execute(_OBJECTS_SQL, {"schemas": schemas}).fetchall()]


# Every object that depends, directly or through others, on the given ones, with the object it
# belongs to (an index → its table, a constraint → its table or domain, an array type → its
# element's table or type, ...), and the dropped object it hangs off.
_DEPENDENTS_SQL = """
WITH RECURSIVE dep(classid, objid, root) AS (
    SELECT d.classid, d.objid, d.refobjid FROM pg_depend d
    WHERE d.refobjid = ANY(%(oids)s::oid[]) AND d.deptype IN ('n', 'a', 'i')
    UNION
    SELECT d.classid, d.objid, dep.root FROM pg_depend d JOIN dep ON d.refclassid = dep.classid AND d.refobjid = dep.objid
    WHERE d.deptype IN ('n', 'a', 'i')
)
SELECT DISTINCT dep.objid, pg_describe_object(dep.classid, dep.objid, 0), owner.oid,
       pg_describe_object(CASE WHEN EXISTS (SELECT 1 FROM pg_class WHERE oid = owner.oid) THEN 'pg_class'::regclass
                               WHEN EXISTS (SELECT 1 FROM pg_type WHERE oid = owner.oid) THEN 'pg_type'::regclass
                               ELSE dep.classid END, owner.oid, 0),
       dep.root
FROM dep CROSS JOIN LATERAL (SELECT CASE dep.classid
    WHEN 'pg_constraint'::regclass THEN (SELECT CASE WHEN conrelid <> 0 THEN conrelid ELSE contypid END
                                         FROM pg_constraint WHERE oid = dep.objid)
    -- a foreign key's triggers on the referenced table belong to the constraint's table
    WHEN 'pg_trigger'::regclass THEN (SELECT CASE WHEN t.tgconstraint <> 0
        THEN (SELECT k.conrelid FROM pg_constraint k WHERE k.oid = t.tgconstraint) ELSE t.tgrelid END
        FROM pg_trigger t WHERE t.oid = dep.objid)
    WHEN 'pg_policy'::regclass THEN (SELECT polrelid FROM pg_policy WHERE oid = dep.objid)
    WHEN 'pg_rewrite'::regclass THEN (SELECT ev_class FROM pg_rewrite WHERE oid = dep.objid)
    WHEN 'pg_attrdef'::regclass THEN (SELECT adrelid FROM pg_attrdef WHERE oid = dep.objid)
    WHEN 'pg_statistic_ext'::regclass THEN (SELECT stxrelid FROM pg_statistic_ext WHERE oid = dep.objid)
    WHEN 'pg_publication_rel'::regclass THEN (SELECT prrelid FROM pg_publication_rel WHERE oid = dep.objid)
    WHEN 'pg_class'::regclass THEN (SELECT CASE
        WHEN c.relkind IN ('i', 'I') THEN (SELECT CASE WHEN tc.relkind = 't'
            THEN (SELECT t.oid FROM pg_class t WHERE t.reltoastrelid = tc.oid) ELSE tc.oid END
            FROM pg_index ix JOIN pg_class tc ON tc.oid = ix.indrelid WHERE ix.indexrelid = c.oid)
        WHEN c.relkind = 't' THEN (SELECT t.oid FROM pg_class t WHERE t.reltoastrelid = c.oid)
        ELSE c.oid END FROM pg_class c WHERE c.oid = dep.objid)
    WHEN 'pg_type'::regclass THEN (SELECT CASE
        WHEN t.typrelid <> 0 THEN t.typrelid
        WHEN t.typelem <> 0 AND t.typsubscript = 'array_subscript_handler'::regproc
            THEN coalesce(nullif((SELECT e.typrelid FROM pg_type e WHERE e.oid = t.typelem), 0), t.typelem)
        ELSE t.oid END FROM pg_type t WHERE t.oid = dep.objid)
    ELSE dep.objid END AS oid) owner
"""


@dataclass(frozen=True)
class Dependent:
    oid: int
    description: str  # pg_describe_object: "trigger x on table auth.users", "view reporting.v", ...
    owner_oid: int  # the object it belongs to (the table of a trigger, ...)
    owner: str  # pg_describe_object of that
    root_oid: int  # the dropped object it depends on


def dependents(conn: psycopg.Connection, oids: list[int]) -> list[Dependent]:
    """Everything that a DROP ... CASCADE of these objects would also drop."""
    if not oids:
        return []
    rows = conn.execute(_DEPENDENTS_SQL, {"oids": oids}).fetchall()
    return [Dependent(*row) for row in rows]
