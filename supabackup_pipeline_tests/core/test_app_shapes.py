"""What real apps have that the realistic app does not, each backed up, rolled back in place after
damage, and rebuilt in a new project: columns, defaults and indexes from extensions in Supabase's
`extensions` schema (citext, hstore, ltree, pg_trgm, uuid-ossp, pgcrypto), and table shapes:
foreign keys in a cycle (deferrable), a self-reference, an exclusion constraint, inheritance, an
unlogged table, non-default collations and forced row-level security."""

import psycopg
import pytest

from supabackup_pipeline.core.catalog import TableRef
from supabackup_pipeline.core.database_backup import backup_database
from supabackup_pipeline.core.schema_restore import SchemaRestoreRefused
from supabackup_pipeline.dev.stack import create_database, create_project_database
from supabackup_pipeline_tests.core.test_schema_rollback import back_up, restore
from supabackup_pipeline_tests.realistic_app import content_digest, schema_text, superuser_url_for

# trusted extensions: a project's `postgres` may create them on a hosted project too
EXTENSIONS = ["citext", "hstore", "ltree", "pg_trgm", "btree_gist"]

EXTENSION_APP = """
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


EXTENSION_DAMAGE = """
UPDATE public.people SET email = 'x' || email, attrs = NULL, tags = '{}' WHERE id IN (SELECT id FROM public.people LIMIT 50);
DROP INDEX public.people_name_trgm;
ALTER TABLE public.people ADD COLUMN nickname extensions.citext;
"""

SHAPES_APP = """
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

SHAPES_DAMAGE = """
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


def round_trip(db_url: str, tmp_path, app_sql: str, damage_sql: str, extensions: list[str] = EXTENSIONS,
               untrusted: bool = False, schema: str = "extensions") -> None:
    """Install, back up, damage, roll back in place, then restore into a brand-new project: both
    equal the backup moment (schema text and every table's content). `untrusted` extensions only a
    superuser may create (here; Supabase lets `postgres` create them on a hosted project): the new
    project's restore is refused, untouched, until they are enabled there."""
    with psycopg.connect(superuser_url_for(db_url), autocommit=True) as conn:
        for name in extensions:
            conn.execute(f'CREATE EXTENSION IF NOT EXISTS "{name}" SCHEMA {schema}')
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(app_sql)
    (tmp_path / "backup").mkdir()
    backup = {"root": tmp_path / "backup", "manifest": back_up(db_url, tmp_path / "backup")}
    at_backup = state(db_url)

    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(damage_sql)
    assert state(db_url) != at_backup
    assert restore(db_url, backup)["schema_differences"] == []
    assert state(db_url) == at_backup

    other = create_database(tmp_path / "new-project")
    try:
        target = create_project_database(other.superuser_url, "brand_new")
        with psycopg.connect(target) as conn:
            assert not {r[0] for r in conn.execute("SELECT extname FROM pg_extension")} & set(extensions)
        if untrusted:
            before = state(target)
            with pytest.raises(SchemaRestoreRefused, match=f"extension {extensions[0]}, which role postgres may not"
                               f" create here .*enable it in schema {schema} first"):
                restore(target, backup)
            assert state(target) == before
            with psycopg.connect(superuser_url_for(target), autocommit=True) as conn:
                for name in extensions:
                    conn.execute(f'CREATE EXTENSION "{name}" SCHEMA {schema}')
        assert restore(target, backup)["schema_differences"] == []
        assert state(target) == at_backup
    finally:
        other.cluster.destroy()


def test_extension_types_roll_back_in_place_and_into_a_new_project(project_db_url, tmp_path):
    round_trip(project_db_url, tmp_path, EXTENSION_APP, EXTENSION_DAMAGE)


def test_cycles_exclusions_inheritance_unlogged_and_forced_rls_come_back(project_db_url, tmp_path):
    round_trip(project_db_url, tmp_path, SHAPES_APP, SHAPES_DAMAGE)


POSTGIS_APP = """
CREATE TABLE public.places (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name text NOT NULL,
  spot extensions.geometry(Point, 4326) NOT NULL,
  area extensions.geography(Polygon, 4326),
  route extensions.geometry(LineStringZ, 3857),
  anything extensions.geometry
);
CREATE INDEX places_spot ON public.places USING gist (spot);
CREATE INDEX places_area ON public.places USING gist (area);
INSERT INTO public.places (name, spot, area, route, anything)
SELECT 'place ' || g,
       extensions.ST_SetSRID(extensions.ST_MakePoint(-180 + g * 0.35, -80 + g * 0.15), 4326),
       CASE WHEN g % 3 <> 0 THEN extensions.ST_GeogFromText(format('SRID=4326;POLYGON((%s %s, %s %s, %s %s, %s %s))',
            g * 0.1, g * 0.05, g * 0.1 + 0.01, g * 0.05, g * 0.1 + 0.01, g * 0.05 + 0.01, g * 0.1, g * 0.05)) END,
       extensions.ST_GeomFromEWKT(format('SRID=3857;LINESTRING(%s 0 1.5, %s 10 2.25, 1e-7 -0.1 3)', g, g * 2)),
       CASE g % 4 WHEN 0 THEN extensions.ST_GeomFromText('GEOMETRYCOLLECTION EMPTY')
                  WHEN 1 THEN extensions.ST_GeomFromText('MULTIPOINT((1 2),(3 4))') END
FROM generate_series(1, 1000) g;
"""

POSTGIS_DAMAGE = """
UPDATE public.places SET spot = extensions.ST_SetSRID(extensions.ST_MakePoint(0, 0), 4326) WHERE id <= 100;
DELETE FROM public.places WHERE id > 900;
DROP INDEX public.places_area;
"""


def test_postgis_geometries_roll_back_in_place_and_into_a_new_project(project_db_url, tmp_path):
    round_trip(project_db_url, tmp_path, POSTGIS_APP, POSTGIS_DAMAGE, extensions=["postgis"], untrusted=True)


def test_postgis_in_public_leaves_its_own_table_to_it_and_names_rows_added_there(stack, tmp_path):
    """PostGIS enabled in `public` (Supabase's older default, or a plain CREATE EXTENSION): its types
    and its spatial_ref_sys table sit among the app's, but belong to the extension. The rollback and
    the new project leave them to it; rows added to spatial_ref_sys (a custom SRID) are not in the
    backup, and the backup says so."""
    db_url = create_project_database(stack.superuser_url, "postgis_in_public")
    round_trip(db_url, tmp_path, POSTGIS_APP.replace("extensions.", ""), POSTGIS_DAMAGE.replace("extensions.", ""),
               extensions=["postgis"], untrusted=True, schema="public")
    with psycopg.connect(superuser_url_for(db_url), autocommit=True) as conn:
        conn.execute("INSERT INTO public.spatial_ref_sys (srid, auth_name, auth_srid, proj4text)"
                     " VALUES (990001, 'app', 1, '+proj=longlat +datum=WGS84 +no_defs')")
    result = backup_database(db_url, tmp_path / "with-srid", ["public"], include_users=False, log=lambda _: None)
    assert "public.spatial_ref_sys" not in {d.ref.qualified for d in result.tables}
    assert ("public.spatial_ref_sys belongs to extension postgis and is not backed up, but holds 1 row(s) added"
            in " ".join(result.warnings)), result.warnings


def test_a_backup_that_holds_an_extensions_table_restores_without_it(stack, tmp_path, monkeypatch):
    """Backups taken before extension tables were left out hold PostGIS's spatial_ref_sys: the
    restore leaves it to the extension (in place and into a new project) and says so in its plan."""
    from supabackup_pipeline.core import database_backup
    from supabackup_pipeline_tests.core.test_schema_rollback import plan

    def every_table(conn, schemas):  # the table list of those earlier versions
        return [TableRef(*row) for row in conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind = 'r' AND n.nspname = ANY(%s) ORDER BY 1, 2", (schemas,)).fetchall()]

    db_url = create_project_database(stack.superuser_url, "postgis_old_backup")
    with psycopg.connect(superuser_url_for(db_url), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION postgis SCHEMA public")
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(POSTGIS_APP.replace("extensions.", ""))
    monkeypatch.setattr(database_backup, "list_tables", every_table)
    (tmp_path / "backup").mkdir()
    backup = {"root": tmp_path / "backup", "manifest": back_up(db_url, tmp_path / "backup")}
    monkeypatch.undo()
    assert (tmp_path / "backup" / "database" / "public.spatial_ref_sys.parquet").exists()
    at_backup = state(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(POSTGIS_DAMAGE.replace("extensions.", ""))
    assert plan(db_url, backup).extension_tables == ["public.spatial_ref_sys"]
    assert restore(db_url, backup)["schema_differences"] == []
    assert state(db_url) == at_backup
