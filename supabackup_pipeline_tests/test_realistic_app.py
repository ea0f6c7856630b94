"""Sanity of the realistic Supabase app fixture (realistic_app.py) that rollback tests build on:
it installs, it is measured the same way twice, signups still make profiles, and the bad migration
changes what schema_text and content_digest see."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from realistic_app import (
    apply_bad_migration, content_digest, install_app, schema_text, signup_creates_profile, superuser_url_for,
)
from supabackup_pipeline.dev.stack import create_project_database

USERS = 200


@pytest.fixture(scope="module")
def app_db(project_db_url) -> str:
    install_app(project_db_url, superuser_url_for(project_db_url), users=USERS)
    return project_db_url


def test_the_app_is_installed(app_db):
    with psycopg.connect(app_db) as conn:
        def one(query: str):
            return conn.execute(query).fetchone()[0]

        assert one("SELECT count(*) FROM auth.users") == USERS
        # every seeded auth user got its profile from on_auth_user_created
        assert one("SELECT count(*) FROM public.profiles p JOIN auth.users u USING (id)") == USERS
        assert one("""SELECT count(*) FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace
                      AND c.relkind IN ('r', 'p') AND NOT c.relispartition""") >= 15
        assert one("""SELECT count(DISTINCT format_type(a.atttypid, a.atttypmod))
                      FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                      WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
                        AND a.attnum > 0 AND NOT a.attisdropped""") >= 40
        partitions = {row[0] for row in conn.execute(
            "SELECT relid::text FROM pg_partition_tree('public.events') WHERE isleaf")}
        assert partitions == {"events_2024", "events_2025_h0", "events_2025_h1", "events_2026", "events_default"}
        assert all(one(f"SELECT count(*) FROM public.{p}") > 0 for p in partitions)
        assert one("SELECT relforcerowsecurity FROM pg_class WHERE oid = 'public.notifications'::regclass")
        assert one("SELECT count(*) FROM pg_policies WHERE schemaname = 'public'") >= 20
        assert one("SELECT count(*) FROM pg_policies WHERE schemaname = 'storage'") == 5
        assert one("SELECT count(*) FROM pg_trigger WHERE tgname = 'on_auth_user_created'") == 1
        assert not one("SELECT relispopulated FROM pg_class WHERE oid = 'public.task_search'::regclass")
        assert one("SELECT max(octet_length(bio)) FROM public.profiles") > 100_000
        assert one("SELECT max(octet_length(content)) FROM public.documents") > 100_000
        assert one("SELECT max(octet_length(content)) FROM public.attachments") == 65_536
        assert one("SELECT count(*) FROM public.invoices WHERE paid_at = 'infinity'") > 0

    digest = content_digest(app_db)
    assert {"auth.users", "auth.identities", "public.events_2025_h0", "public.events_default",
            "public.invoice_number_seq", "public.org_stats"} <= set(digest)
    assert "public.events" not in digest  # partitioned parents hold no rows of their own
    assert digest["public.task_search"] == "unpopulated"
    assert digest["public.tasks"].startswith(f"{USERS * 6} rows sha256:")


def test_schema_text_and_content_digest_are_stable(app_db):
    first = schema_text(app_db)
    assert schema_text(app_db) == first
    assert "\\restrict" not in first and "\n\n\n" not in first
    # the app's objects on Supabase's tables, which pg_dump --schema=public leaves out
    assert ("auth.users on_auth_user_created O: CREATE TRIGGER on_auth_user_created AFTER INSERT ON auth.users"
            " FOR EACH ROW EXECUTE FUNCTION public.handle_new_user()") in first
    assert "storage.objects 'Org members read org files' PERMISSIVE FOR SELECT TO {authenticated}" in first
    assert "supabase_realtime [insert,update,delete,truncate]: public.tasks" in first
    assert content_digest(app_db) == content_digest(app_db)


def test_signup_creates_a_profile(app_db):
    assert signup_creates_profile(superuser_url_for(app_db), f"signup-{uuid.uuid4().hex[:8]}@example.com")


def test_the_bad_migration_changes_schema_and_content(stack):
    # a database of its own, so that this test does not depend on the others' order
    url = create_project_database(stack.superuser_url, f"p_realistic_migration_{uuid.uuid4().hex[:8]}")
    superuser_url = superuser_url_for(url)
    install_app(url, superuser_url, users=50)
    schema_before, content_before = schema_text(url), content_digest(url)

    apply_bad_migration(url, superuser_url)

    schema_after, content_after = schema_text(url), content_digest(url)
    before, after = set(schema_before.splitlines()), set(schema_after.splitlines())
    added, removed = after - before, before - after
    assert "    'owner'" in added                                                      # enum value
    assert "    SET search_path TO 'public', 'pg_temp'" in removed                     # function
    assert "    LANGUAGE plpgsql STABLE SECURITY DEFINER" in removed
    assert "    t.labels" in added                                                     # view column
    assert any(line.startswith('CREATE POLICY "Devices of org admins"') for line in added)  # policies
    assert any(line.startswith('CREATE POLICY "Devices belong to their user"') for line in removed)
    assert "GRANT SELECT ON TABLE public.invoices TO anon;" in added                   # grants
    assert "GRANT SELECT(bio),UPDATE(bio) ON TABLE public.profiles TO anon;" in added
    assert "CREATE INDEX tasks_due_date_idx ON public.tasks USING btree (due_date) WHERE (NOT archived);" in added
    assert "CREATE INDEX projects_metadata_gin ON public.projects USING gin (metadata jsonb_path_ops);" in removed
    assert "    CONSTRAINT invoices_total_nonnegative CHECK ((total >= (0)::numeric))" in added
    assert "    full_name text NOT NULL," in added
    assert "ALTER TABLE public.tasks ENABLE REPLICA TRIGGER tasks_notify_assignee;" in added
    assert any("'Org admins upload org files'" in line for line in added)              # storage policy
    assert "supabase_realtime [insert,update,delete,truncate]: public.invoices" in added

    changed = {key for key in content_before.keys() | content_after.keys()
               if content_before.get(key) != content_after.get(key)}
    assert {"auth.users", "auth.identities", "public.profiles", "public.tasks", "public.memberships",
            "public.task_comments", "public.org_stats", "public.invoice_number_seq", "public.events_2027"} <= changed
    assert content_after["public.task_search"] != "unpopulated"
    assert "public.app_settings" in changed and "public.tags" not in changed

    # the migrated handle_new_user() still makes profiles
    assert signup_creates_profile(superuser_url, "after-migration-signup@example.com")
