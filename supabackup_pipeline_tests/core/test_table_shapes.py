"""Table shapes real apps have that the realistic app does not: foreign keys in a cycle (one of
them deferrable), a self-reference, an exclusion constraint, table inheritance, an unlogged
table, a non-default collation and forced row-level security. Each is backed up, rolled back in
place after damage, and rebuilt in a new project."""

import psycopg

from supabackup_pipeline.dev.stack import create_database, create_project_database
from supabackup_pipeline_tests.core.test_schema_rollback import back_up, restore
from supabackup_pipeline_tests.realistic_app import content_digest, schema_text, superuser_url_for

APP = """
CREATE EXTENSION IF NOT EXISTS btree_gist SCHEMA extensions;
CREATE TABLE public.teams (id int PRIMARY KEY, name text COLLATE "C" NOT NULL, captain int);
CREATE TABLE public.players (
  id int PRIMARY KEY, team_id int NOT NULL REFERENCES public.teams DEFERRABLE INITIALLY DEFERRED,
  mentor_id int REFERENCES public.players, nick text COLLATE "POSIX");
ALTER TABLE public.teams ADD CONSTRAINT teams_captain_fkey FOREIGN KEY (captain) REFERENCES public.players DEFERRABLE;
CREATE TABLE public.bookings (
  id int PRIMARY KEY, room int NOT NULL, during tstzrange NOT NULL,
  EXCLUDE USING gist (room WITH =, during WITH &&));
CREATE TABLE public.base_events (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT now());
CREATE TABLE public.login_events (ip inet) INHERITS (public.base_events);
CREATE UNLOGGED TABLE public.cache_entries (key text PRIMARY KEY, value jsonb);
CREATE TABLE public.secrets (id int PRIMARY KEY, owner uuid, body text);
ALTER TABLE public.secrets ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.secrets FORCE ROW LEVEL SECURITY;
CREATE POLICY secrets_owner ON public.secrets USING (owner = auth.uid());

BEGIN;
SET CONSTRAINTS ALL DEFERRED;
INSERT INTO public.teams SELECT g, 'Team ' || g, g * 10 FROM generate_series(1, 20) g;
INSERT INTO public.players SELECT g, 1 + g % 20, NULLIF(g - 1, 0), 'p' || g FROM generate_series(1, 200) g;
COMMIT;
INSERT INTO public.bookings SELECT g, g % 5, tstzrange('2026-01-01'::timestamptz + g * interval '1 hour',
  '2026-01-01'::timestamptz + (g + 1) * interval '1 hour') FROM generate_series(1, 100) g;
INSERT INTO public.base_events SELECT g FROM generate_series(1, 10) g;
INSERT INTO public.login_events (id, ip) SELECT 100 + g, ('10.0.0.' || g)::inet FROM generate_series(1, 10) g;
INSERT INTO public.cache_entries SELECT 'k' || g, jsonb_build_object('v', g) FROM generate_series(1, 10) g;
INSERT INTO public.secrets SELECT g, gen_random_uuid(), 'secret ' || g FROM generate_series(1, 10) g;
"""

DAMAGE = """
ALTER TABLE public.teams DROP CONSTRAINT teams_captain_fkey;
DELETE FROM public.players WHERE id > 150;
UPDATE public.players SET mentor_id = NULL;
DROP TABLE public.login_events;
ALTER TABLE public.bookings DROP CONSTRAINT bookings_room_during_excl;
TRUNCATE public.cache_entries;
ALTER TABLE public.secrets NO FORCE ROW LEVEL SECURITY;
"""


def state(db_url: str) -> tuple[str, dict]:
    return schema_text(db_url), content_digest(db_url)


def test_cycles_exclusions_inheritance_unlogged_and_forced_rls_come_back(project_db_url, tmp_path):
    with psycopg.connect(superuser_url_for(project_db_url), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS btree_gist SCHEMA extensions")
    with psycopg.connect(project_db_url, autocommit=True) as conn:
        conn.execute(APP)
    (tmp_path / "backup").mkdir()
    backup = {"root": tmp_path / "backup", "manifest": back_up(project_db_url, tmp_path / "backup")}
    at_backup = state(project_db_url)

    with psycopg.connect(project_db_url, autocommit=True) as conn:
        conn.execute(DAMAGE)
    assert state(project_db_url) != at_backup
    assert restore(project_db_url, backup)["schema_differences"] == []
    assert state(project_db_url) == at_backup

    other = create_database(tmp_path / "new-project")
    try:
        target = create_project_database(other.superuser_url, "brand_new")
        assert restore(target, backup)["schema_differences"] == []
        assert state(target) == at_backup
    finally:
        other.cluster.destroy()
