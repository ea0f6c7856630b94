"""A realistic Supabase app for rollback tests: install it, break it with a "bad migration", compare.

    install_app(db_url, superuser_url, users=200)   # realistic_app/app.sql
    apply_bad_migration(db_url, superuser_url)      # realistic_app/bad_migration.sql
    schema_text(db_url) -> str                      # what "same schema" means
    content_digest(db_url) -> {relation: digest}    # what "same data" means
    signup_creates_profile(superuser_url, email)    # does the auth.users trigger still work?

`db_url` connects as `postgres` (not a superuser, owns `public`), `superuser_url` as
`supabase_admin` to the same database; `superuser_url_for(db_url)` derives the latter from the
former for databases made by `create_project_database`.

The SQL files are split into steps at lines `-- step: postgres` / `-- step: superuser`; each step
runs in a transaction of its own as that role. Everything is done as `postgres`, as an app's
migrations would, except what `postgres` may not do in the local stack: policies on
storage.objects / storage.buckets (owned by supabase_storage_admin).

What a restore connected as `postgres` runs into with this app (checked on the local stack):
- it may CREATE (OR REPLACE) TRIGGER on auth.users / storage.objects (it has TRIGGER there) but
  not DROP or ENABLE/DISABLE them ("must be owner of relation users");
- DROP ... CASCADE of public objects (DROP SCHEMA public CASCADE, DROP FUNCTION is_org_member
  CASCADE, DROP TABLE organizations CASCADE) silently drops the dependent policies on
  storage.objects and the triggers on auth.users / storage.objects, and postgres cannot create
  those policies again;
- `pg_dump --schema=public` leaves out the policies on storage.*, the triggers on auth.* /
  storage.*, and the publication membership (supabase_realtime) of public's tables, and it does
  write `CREATE SCHEMA public;` and the schema's default privileges.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from supabackup_pipeline.core.snapshot import client_program

SQL_DIR = Path(__file__).with_name("realistic_app")

_STEP = re.compile(r"^-- step: (postgres|superuser)\s*$", re.MULTILINE)

# Session settings that make every value's text form independent of the server's defaults.
_STABLE_OUTPUT = {
    "TimeZone": "UTC", "DateStyle": "ISO, MDY", "IntervalStyle": "postgres",
    "extra_float_digits": "1", "bytea_output": "hex", "lc_monetary": "C", "search_path": "",
}


def superuser_url_for(db_url: str) -> str:
    """The `supabase_admin` URL of the database of `db_url` (a postgresql:// URL, as made by
    `create_project_database`)."""
    parts = urlsplit(db_url)
    host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else (parts.hostname or "")
    netloc = f"supabase_admin:supabase_admin@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _steps(path: Path) -> list[tuple[str, str]]:
    parts = _STEP.split(path.read_text())
    # parts = [preamble, role, body, role, body, ...]
    return [(parts[i], parts[i + 1]) for i in range(1, len(parts), 2)]


def _run_steps(path: Path, db_url: str, superuser_url: str, settings: dict[str, int] | None = None) -> None:
    conns: dict[str, psycopg.Connection] = {}
    try:
        for role, body in _steps(path):
            if role not in conns:
                conns[role] = psycopg.connect(db_url if role == "postgres" else superuser_url, autocommit=True)
            conn = conns[role]
            with conn.transaction():
                for name, value in (settings or {}).items():
                    conn.execute("SELECT set_config(%s, %s, true)", [name, str(value)])
                try:
                    conn.execute(body)
                except psycopg.Error as e:
                    raise RuntimeError(f"{path.name}, a step run as {role}: {e}") from e
    finally:
        for conn in conns.values():
            conn.close()


def install_app(db_url: str, superuser_url: str, users: int = 200) -> None:
    """Build the app (schema, policies, grants, seed data) in a fresh Supabase-like database.

    `users` auth users (each with an identity and, through on_auth_user_created, a profile);
    the other tables scale with it (users=200: ~20 organizations, ~1,200 tasks, ~3,000 events).
    """
    if users < 10:
        raise ValueError("users must be at least 10")
    orgs = max(4, users // 10)
    settings = {
        "app.seed_users": users, "app.seed_orgs": orgs, "app.seed_projects": orgs * 3,
        "app.seed_tasks": users * 6, "app.seed_comments": users * 12,
        "app.seed_attachments": max(10, users * 3 // 4), "app.seed_devices": users + users // 2,
        "app.seed_measurements": users * 10, "app.seed_events": users * 15,
    }
    _run_steps(SQL_DIR / "app.sql", db_url, superuser_url, settings)


def apply_bad_migration(db_url: str, superuser_url: str) -> None:
    """A migration gone wrong: changes every kind of object of the app, and its data.

    Apply once, to a database made by `install_app` (users >= 10).
    """
    _run_steps(SQL_DIR / "bad_migration.sql", db_url, superuser_url)


def _pg_env_and_conninfo(db_url: str) -> tuple[dict[str, str], str]:
    params = conninfo_to_dict(db_url)
    password = params.pop("password", None)
    env = dict(os.environ)
    if password is not None:
        env["PGPASSWORD"] = password
    return env, make_conninfo(**params)


def _normalize_dump(text: str) -> str:
    lines = [line for line in text.splitlines()
             if not line.startswith(("\\restrict ", "\\unrestrict "))]
    out: list[str] = []
    for line in lines:
        if not line and (not out or not out[-1]):
            continue  # collapse runs of empty lines (and drop leading ones)
        out.append(line)
    while out and not out[-1]:
        out.pop()
    return "\n".join(out) + "\n"


def schema_text(db_url: str, schemas: tuple[str, ...] | list[str] = ("public",)) -> str:
    """The schema of `schemas` as text: equal text = equal schema.

    `pg_dump --schema-only` of those schemas (owners, grants, policies, comments included), without
    the random `\\restrict` key lines; followed by what that dump leaves out: the app's objects on
    Supabase's own tables (the non-internal triggers on auth.* / storage.* tables, with their
    enabled mode; the policies on storage.* tables) and which publications (supabase_realtime)
    publish the tables of `schemas`.
    """
    pg_dump = client_program("pg_dump")
    if not pg_dump:
        raise RuntimeError("pg_dump not found")
    env, conninfo = _pg_env_and_conninfo(db_url)
    cmd = [pg_dump, "--schema-only", "--no-password", *(f"--schema={s}" for s in schemas), f"--dbname={conninfo}"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"pg_dump failed ({done.returncode}): {done.stderr.strip()}")
    parts = [_normalize_dump(done.stdout)]

    with psycopg.connect(db_url) as conn:
        conn.execute("SET search_path = ''")  # fully qualified names in the deparsed definitions
        triggers = conn.execute("""
            SELECT n.nspname, c.relname, t.tgname, t.tgenabled, pg_get_triggerdef(t.oid)
            FROM pg_trigger t
            JOIN pg_class c ON c.oid = t.tgrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname IN ('auth', 'storage') AND NOT t.tgisinternal
            ORDER BY 1, 2, 3""").fetchall()
        policies = conn.execute("""
            SELECT schemaname, tablename, policyname, permissive, roles::text, cmd, qual, with_check
            FROM pg_policies WHERE schemaname = 'storage'
            ORDER BY 1, 2, 3""").fetchall()
        publications = conn.execute("""
            SELECT pt.pubname, pt.schemaname, pt.tablename,
                   CASE WHEN pr.prattrs IS NOT NULL THEN pt.attnames::text END, pt.rowfilter,
                   p.puballtables, p.pubinsert, p.pubupdate, p.pubdelete, p.pubtruncate, p.pubviaroot
            FROM pg_publication_tables pt
            JOIN pg_publication p ON p.pubname = pt.pubname
            LEFT JOIN pg_publication_rel pr
                ON pr.prpubid = p.oid AND pr.prrelid = format('%%I.%%I', pt.schemaname, pt.tablename)::regclass
            WHERE pt.schemaname = ANY(%s)
            ORDER BY 1, 2, 3""", [list(schemas)]).fetchall()
    parts.append("-- Triggers on auth.* / storage.* tables (schema.table name tgenabled: definition)\n")
    parts.extend(f"{s}.{t} {name} {enabled}: {definition}\n" for s, t, name, enabled, definition in triggers)
    parts.append("-- Policies on storage.* tables\n")
    for s, t, name, permissive, roles, cmd, qual, check in policies:
        parts.append(f"{s}.{t} {name!r} {permissive} FOR {cmd} TO {roles}"
                     + (f" USING ({qual})" if qual is not None else "")
                     + (f" WITH CHECK ({check})" if check is not None else "") + "\n")
    # pg_dump --schema leaves publications out, and with them which tables they publish.
    parts.append(f"-- Publication membership of tables in {', '.join(schemas)}\n")
    for pub, s, t, columns, rowfilter, *flags in publications:
        options = ",".join(flag for flag, on in zip(
            ("all_tables", "insert", "update", "delete", "truncate", "via_root"), flags) if on)
        parts.append(f"{pub} [{options}]: {s}.{t}" + (f" {columns}" if columns else "")
                     + (f" WHERE {rowfilter}" if rowfilter else "") + "\n")
    return "".join(parts)


def _rows_digest(conn: psycopg.Connection, relation: sql.Composable) -> str:
    digest = hashlib.sha256()
    count = 0
    # an alias no column is named like: a column named as the alias would win over the whole row
    query = sql.SQL('SELECT _digest_row_::text FROM {} _digest_row_ ORDER BY _digest_row_::text COLLATE "C"')
    query = query.format(relation)
    with conn.cursor(name="content_digest") as cur:
        cur.itersize = 200
        cur.execute(query)
        for (row,) in cur:
            data = row.encode()
            digest.update(len(data).to_bytes(8, "big"))
            digest.update(data)
            count += 1
    return f"{count} rows sha256:{digest.hexdigest()}"


def content_digest(db_url: str, schemas: tuple[str, ...] | list[str] = ("public",)) -> dict[str, str]:
    """What the database holds, per relation: `{"schema.name": digest}` (equal dicts = equal data).

    Every leaf table (partitions included, partitioned parents not) of `schemas`, plus auth.users
    and auth.identities: "<n> rows sha256:<hex>" of the rows' text forms, sorted (column order
    counts). Every sequence: "last_value=<v> is_called=<b>". Every materialized view: its rows'
    digest, or "unpopulated". Read in one REPEATABLE READ snapshot with fixed output settings.
    """
    result: dict[str, str] = {}
    with psycopg.connect(db_url) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        for name, value in _STABLE_OUTPUT.items():
            conn.execute("SELECT set_config(%s, %s, false)", [name, value])
        relations = conn.execute("""
            SELECT n.nspname, c.relname, c.relkind, c.relispopulated
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE (n.nspname = ANY(%s) AND c.relkind IN ('r', 'S', 'm'))
               OR (n.nspname = 'auth' AND c.relname IN ('users', 'identities') AND c.relkind = 'r')
            ORDER BY 1, 2""", [list(schemas)]).fetchall()
        for schema, name, kind, populated in relations:
            ident = sql.Identifier(schema, name)
            key = f"{schema}.{name}"
            if kind == "S":
                last_value, is_called = conn.execute(
                    sql.SQL("SELECT last_value, is_called FROM {}").format(ident)).fetchone()
                result[key] = f"last_value={last_value} is_called={is_called}"
            elif kind == "m" and not populated:
                result[key] = "unpopulated"
            else:
                result[key] = _rows_digest(conn, ident)
    return result


def signup_creates_profile(db_url_superuser: str, email: str) -> bool:
    """Sign a user up as GoTrue does (as supabase_auth_admin, search_path auth); True if a
    public.profiles row appeared for it. A failing signup (e.g. the trigger function errors)
    raises, as GoTrue would answer 500."""
    user_id = uuid.uuid4()
    with psycopg.connect(db_url_superuser, autocommit=True) as conn:
        with conn.transaction():
            conn.execute("SET LOCAL ROLE supabase_auth_admin")
            conn.execute("SET LOCAL search_path = auth")
            conn.execute("""
                INSERT INTO auth.users (instance_id, id, aud, role, email, encrypted_password,
                    email_confirmed_at, raw_app_meta_data, raw_user_meta_data, is_super_admin,
                    created_at, updated_at, confirmation_token, recovery_token, email_change_token_new,
                    email_change, is_sso_user, is_anonymous)
                VALUES ('00000000-0000-0000-0000-000000000000', %(id)s, 'authenticated', 'authenticated',
                    %(email)s::text, '$2a$10$abcdefghijklmnopqrstuuJ0GgE9QfWqO0H6FkLJbCkWvWc5.ncHW',
                    now(), '{"provider": "email", "providers": ["email"]}',
                    jsonb_build_object('full_name', 'Signed Up ' || %(email)s::text), NULL,
                    now(), now(), '', '', '', '', false, false)""", {"id": user_id, "email": email})
            conn.execute("""
                INSERT INTO auth.identities (provider_id, user_id, identity_data, provider,
                    last_sign_in_at, created_at, updated_at)
                VALUES (%(id)s::text, %(id)s, jsonb_build_object('sub', %(id)s::text, 'email', %(email)s::text),
                    'email', now(), now(), now())""", {"id": user_id, "email": email})
        row = conn.execute("SELECT EXISTS (SELECT 1 FROM public.profiles WHERE id = %s)", [user_id]).fetchone()
    return bool(row[0])
