"""A rollback makes the backed-up schemas exactly what they were: a realistic app (partitioned
table, enums, domains, composite types, functions, views, materialized views, RLS, grants, a
trigger on auth.users, policies on storage.objects) is broken by a bad migration and rolled back;
`pg_dump --schema-only` and every table's content must equal the backup moment, in place and in
a brand-new project."""

from __future__ import annotations

import difflib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from supabackup_pipeline.core.database_backup import as_manifest, backup_database
from supabackup_pipeline.core.db_restore import RestoreRefused, apply_database_restore, plan_database_restore
from supabackup_pipeline.core.schema_restore import SchemaRestoreRefused
from supabackup_pipeline.core.snapshot import connect
from supabackup_pipeline.dev.stack import create_database, create_project_database
from supabackup_pipeline_tests.realistic_app import (
    apply_bad_migration, content_digest, install_app, schema_text, signup_creates_profile, superuser_url_for,
)

COMPONENTS = ["database", "users"]


def back_up(db_url: str, out: Path) -> dict:
    """A database + users backup and the manifest parts a restore plan reads."""
    result = backup_database(db_url, out, ["public"], include_users=True, log=lambda _: None)
    assert not result.warnings
    return as_manifest(result, ["public"])


def plan(db_url: str, backup: dict, **options):
    with connect(db_url) as conn:
        return plan_database_restore(conn, backup["root"], backup["manifest"], options.pop("components", COMPONENTS),
                                     **options)


def restore(db_url: str, backup: dict, **options) -> dict:
    return apply_database_restore(db_url, plan(db_url, backup, **options), backup["root"], log=lambda _: None)


def state(db_url: str) -> tuple[str, dict]:
    return schema_text(db_url), content_digest(db_url)


def assert_same(actual: tuple[str, dict], expected: tuple[str, dict]) -> None:
    """Equal schema text and equal content, with a readable difference when not."""
    diff = list(difflib.unified_diff(expected[0].splitlines(), actual[0].splitlines(), "backup", "now", lineterm=""))
    assert not diff, "\n".join(diff[:80])
    changed = sorted(k for k in set(actual[1]) | set(expected[1]) if actual[1].get(k) != expected[1].get(k))
    assert not changed, f"content differs in {changed}"


@pytest.fixture(scope="module")
def app(project_db_url, tmp_path_factory):
    """The app installed, backed up, and what its schema and data were at that moment."""
    install_app(project_db_url, superuser_url_for(project_db_url), users=300)
    root = tmp_path_factory.mktemp("schema-backup")
    manifest = back_up(project_db_url, root)
    return {"db": project_db_url, "root": root, "manifest": manifest, "at_backup": state(project_db_url)}


def test_a_bad_migration_is_undone_exactly(app):
    db = app["db"]
    apply_bad_migration(db, superuser_url_for(db))
    assert state(db) != app["at_backup"]
    shown = plan(db, app).to_json()
    actions = {(c["kind"], c["action"]) for c in shown["schema_changes"]}
    assert {("type", "replace"), ("function", "replace"), ("view", "replace"), ("acl", "alter")} <= actions
    assert any(c["action"] == "create" for c in shown["schema_changes"])  # objects the migration dropped
    assert any(c["action"] == "drop" for c in shown["schema_changes"])  # objects the migration added

    result = restore(db, app)

    assert result["schema_differences"] == []
    assert_same(state(db), app["at_backup"])
    assert signup_creates_profile(superuser_url_for(db), "after-rollback@example.com")
    restore(db, app)  # the signup above is undone too: back to the backup moment for the next test


def test_a_new_project_is_rebuilt_from_the_backup(app, tmp_path):
    """Into a second, fresh cluster that looks like a new Supabase project (auth and storage
    schemas, Supabase's roles, nothing of the app): extensions, schema, data and users."""
    other = create_database(tmp_path / "new-project")
    try:
        target = create_project_database(other.superuser_url, "brand_new")
        with psycopg.connect(target) as conn:
            assert conn.execute("SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace").fetchone()[0] == 0
        result = restore(target, app)
        assert result["schema_differences"] == []
        assert_same(state(target), app["at_backup"])
        assert signup_creates_profile(superuser_url_for(target), "first@example.com")
    finally:
        other.cluster.destroy()


def test_a_partitioned_table_is_restored_and_tables_accepts_its_parent(app):
    db = app["db"]
    with psycopg.connect(db, autocommit=True) as conn:
        parent, leaves = conn.execute("""
            SELECT p.oid::regclass::text, array_agg(c.oid::regclass::text ORDER BY 1) FROM pg_partitioned_table pt
            JOIN pg_class p ON p.oid = pt.partrelid JOIN pg_inherits i ON i.inhparent = p.oid
            JOIN pg_class c ON c.oid = i.inhrelid
            WHERE p.relnamespace = 'public'::regnamespace AND NOT p.relispartition GROUP BY 1 LIMIT 1""").fetchone()
        for leaf in leaves:
            conn.execute(f"DELETE FROM {leaf}")
    subset = plan(db, app, components=["database"], tables=[f"public.{parent.split('.')[-1]}"])
    restored = {s.ref.qualified for s in subset.tables}
    assert restored and all(t.startswith("public.") for t in restored)
    apply_database_restore(db, subset, app["root"], log=lambda _: None)
    assert_same(state(db), app["at_backup"])


def test_new_tables_are_left_unless_asked_and_objects_outside_are_never_dropped_silently(app):
    db = app["db"]
    with psycopg.connect(superuser_url_for(db), autocommit=True) as conn:
        conn.execute("CREATE TABLE public.added_later (id int PRIMARY KEY, note text)")
        conn.execute("INSERT INTO public.added_later VALUES (1, 'keep me')")
        conn.execute("ALTER TABLE public.added_later OWNER TO postgres")
        conn.execute("CREATE SCHEMA reporting")
        conn.execute("CREATE VIEW reporting.profile_count AS SELECT count(*) FROM public.profiles")
    before = state(db)
    with pytest.raises(SchemaRestoreRefused, match=r"view reporting.profile_count depends on table public.profiles"):
        restore(db, app)
    assert_same(state(db), before)  # refused before touching anything

    with psycopg.connect(superuser_url_for(db), autocommit=True) as conn:
        conn.execute("DROP SCHEMA reporting CASCADE")
    shown = plan(db, app)
    assert shown.new_tables == ["public.added_later"]
    result = restore(db, app)
    assert result["schema_differences"] == []  # the table left behind is listed, not a difference
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT note FROM public.added_later").fetchall() == [("keep me",)]
    restore(db, app, drop_new_tables=True)
    assert_same(state(db), app["at_backup"])


def test_a_missing_extension_is_refused_before_anything_changes(app, tmp_path):
    root = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(app["root"]), str(root)], check=True)
    catalog = json.loads((root / "database/schema.json").read_text())
    catalog["extensions"].append({"name": "no_such_extension", "schema": "extensions", "version": "1.0"})
    (root / "database/schema.json").write_text(json.dumps(catalog))
    with pytest.raises(SchemaRestoreRefused, match="no_such_extension"):
        plan(app["db"], dict(app, root=root))


_RESTORE_SCRIPT = """
import json, sys
from pathlib import Path
from supabackup_pipeline.core.db_restore import apply_database_restore, plan_database_restore
from supabackup_pipeline.core.snapshot import connect
db, root = sys.argv[1], Path(sys.argv[2])
manifest = json.loads((root / "manifest-parts.json").read_text())
with connect(db) as conn:
    plan = plan_database_restore(conn, root, manifest, ["database", "users"])
apply_database_restore(db, plan, root, log=lambda m: print(m, flush=True))
"""


def test_kill_9_during_the_schema_phase_leaves_the_project_unchanged(app):
    db = app["db"]
    apply_bad_migration(db, superuser_url_for(db))
    before = state(db)
    (app["root"] / "manifest-parts.json").write_text(json.dumps(app["manifest"]))
    proc = subprocess.Popen([sys.executable, "-c", _RESTORE_SCRIPT, db, str(app["root"])], stdout=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        for line in proc.stdout:
            if line.startswith("schema: dropped"):  # inside the transaction, objects dropped
                os.killpg(proc.pid, signal.SIGKILL)
                break
        assert proc.wait(timeout=60) == -signal.SIGKILL, "the restore ended before it could be killed"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert_same(state(db), before)
    restore(db, app)
    assert_same(state(db), app["at_backup"])


def test_users_only_restore_still_refuses_to_empty_app_tables(app):
    with pytest.raises(RestoreRefused, match="public.profiles"):
        plan(app["db"], app, components=["users"])


def test_owners_the_new_project_lacks_fall_back_to_the_restoring_role(project_db_url, tmp_path):
    """An owner that does not exist in the target, or that postgres may not assign (supabase_admin
    on hosted Supabase), is a plan note and the object is owned by postgres; grants to roles the
    target lacks are left out with a note: never a crash halfway."""
    with psycopg.connect(superuser_url_for(project_db_url), autocommit=True) as conn:
        conn.execute("""
            CREATE ROLE app_reporting NOLOGIN;
            CREATE ROLE app_reporting_readers NOLOGIN;
            CREATE SCHEMA owners AUTHORIZATION postgres;
            CREATE TABLE owners.report (id int PRIMARY KEY, body text);
            INSERT INTO owners.report VALUES (1, 'quarterly');
            ALTER TABLE owners.report OWNER TO app_reporting;
            GRANT ALL ON owners.report TO postgres;
            GRANT SELECT ON owners.report TO app_reporting_readers;
            CREATE FUNCTION owners.version() RETURNS text LANGUAGE sql AS $$ SELECT 'v1' $$;
            ALTER FUNCTION owners.version() OWNER TO supabase_admin;
        """)
    result = backup_database(project_db_url, tmp_path, ["owners"], include_users=False, log=lambda _: None)
    manifest = as_manifest(result, ["owners"])
    other = create_database(tmp_path / "new-project")
    try:
        target = create_project_database(other.superuser_url, "no_such_roles")
        with connect(target) as conn:
            restore_plan = plan_database_restore(conn, tmp_path, manifest, ["database"])
        notes = " ".join(restore_plan.to_json()["schema"]["notes"])
        assert "owner app_reporting" in notes and "owner supabase_admin" in notes
        assert "grants to role(s) that do not exist here are left out: app_reporting_readers" in notes
        apply_database_restore(target, restore_plan, tmp_path, log=lambda _: None)
        with psycopg.connect(target) as conn:
            assert conn.execute("SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'owners.report'::regclass"
                                ).fetchone() == ("postgres",)
            assert conn.execute("SELECT body FROM owners.report").fetchall() == [("quarterly",)]
            assert conn.execute("SELECT owners.version()").fetchone() == ("v1",)
    finally:
        other.cluster.destroy()


def test_an_older_backup_without_a_schema_dump_restores_rows_with_its_partitioned_table(app, tmp_path):
    """Backups made before the schema rebuild restore rows into the existing tables; a partitioned
    table (whose parent has foreign keys) no longer makes the full restore refuse."""
    root = tmp_path / "older"
    subprocess.run(["cp", "-a", str(app["root"]), str(root)], check=True)
    (root / "database/schema.dump").unlink()
    (root / "database/schema.json").unlink()
    db = app["db"]
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("DELETE FROM public.events WHERE id % 2 = 0")
    older = dict(app, root=root)
    restore_plan = plan(db, older)
    assert restore_plan.schema is None and "public.events" in restore_plan.truncate_parents
    apply_database_restore(db, restore_plan, root, log=lambda _: None)
    assert_same(state(db), app["at_backup"])
