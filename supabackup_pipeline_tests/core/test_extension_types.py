"""Columns, defaults and indexes that come from extensions in Supabase's `extensions` schema
(citext, hstore, ltree, pg_trgm, uuid-ossp, pgcrypto), as real apps use them: they are backed up,
rolled back in place, and rebuilt in a new project where the extensions do not exist yet."""

import psycopg

from supabackup_pipeline.dev.stack import create_database, create_project_database
from supabackup_pipeline_tests.core.test_schema_rollback import back_up, restore
from supabackup_pipeline_tests.realistic_app import content_digest, schema_text, superuser_url_for

# trusted extensions: a project's `postgres` may create them on a hosted project too
EXTENSIONS = ["citext", "hstore", "ltree", "pg_trgm"]

APP = """
CREATE TABLE public.people (
  id uuid PRIMARY KEY DEFAULT extensions.uuid_generate_v4(),
  email extensions.citext UNIQUE NOT NULL,
  attrs extensions.hstore,
  path extensions.ltree,
  tags extensions.citext[],
  password_hash text DEFAULT extensions.crypt('x', extensions.gen_salt('bf', 4)),
  name text
);
CREATE INDEX people_name_trgm ON public.people USING gin (name extensions.gin_trgm_ops);
CREATE INDEX people_path ON public.people USING gist (path);
INSERT INTO public.people (email, attrs, path, tags, name)
SELECT 'User' || g || '@Example.com', ('a=>' || g || ', "b c"=>NULL, "q\\"uote"=>"x,y"')::extensions.hstore,
       ('top.sub' || (g % 7))::extensions.ltree, ARRAY['Tag' || g, 'TAG', NULL]::extensions.citext[], 'name ' || g
FROM generate_series(1, 500) g;
"""


def state(db_url: str) -> tuple[str, dict]:
    return schema_text(db_url), content_digest(db_url)


def test_extension_types_roll_back_in_place_and_into_a_new_project(project_db_url, tmp_path):
    with psycopg.connect(superuser_url_for(project_db_url), autocommit=True) as conn:
        for name in EXTENSIONS:
            conn.execute(f'CREATE EXTENSION IF NOT EXISTS "{name}" SCHEMA extensions')
    with psycopg.connect(project_db_url, autocommit=True) as conn:
        conn.execute(APP)
    (tmp_path / "backup").mkdir()
    backup = {"root": tmp_path / "backup", "manifest": back_up(project_db_url, tmp_path / "backup")}
    at_backup = state(project_db_url)

    with psycopg.connect(project_db_url, autocommit=True) as conn:
        conn.execute("UPDATE public.people SET email = 'x' || email, attrs = NULL, tags = '{}'"
                     " WHERE id IN (SELECT id FROM public.people LIMIT 50)")
        conn.execute("DROP INDEX public.people_name_trgm")
        conn.execute("ALTER TABLE public.people ADD COLUMN nickname extensions.citext")
    assert state(project_db_url) != at_backup
    assert restore(project_db_url, backup)["schema_differences"] == []
    assert state(project_db_url) == at_backup

    other = create_database(tmp_path / "new-project")
    try:
        target = create_project_database(other.superuser_url, "brand_new")
        with psycopg.connect(target) as conn:
            present = {r[0] for r in conn.execute("SELECT extname FROM pg_extension")}
        assert not present & set(EXTENSIONS)
        assert restore(target, backup)["schema_differences"] == []
        assert state(target) == at_backup
    finally:
        other.cluster.destroy()
