"""A backup reads every table whole, or refuses before writing anything: a table the role may not
read, or whose rows row-level security would hide from it, is never skipped nor cut short, and the
role's timeouts cut no read short either."""

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from supabackup_pipeline.core.database_backup import backup_database
from supabackup_pipeline.core.errors import SupabackupError
from supabackup_pipeline.core.snapshot import connect
from supabackup_pipeline_tests.realistic_app import superuser_url_for

ROLE = "limited_reader"


@pytest.fixture
def limited_role(project_db_url):
    """A login role without BYPASSRLS that may read one table of three in full."""
    with psycopg.connect(superuser_url_for(project_db_url), autocommit=True) as db:
        db.execute(f"""
            CREATE ROLE {ROLE} LOGIN PASSWORD '{ROLE}' NOBYPASSRLS;
            CREATE TABLE public.open_rows AS SELECT g AS id FROM generate_series(1, 3) g;
            CREATE TABLE public.own_rows AS SELECT g AS id, 'someone' AS owner FROM generate_series(1, 3) g;
            ALTER TABLE public.own_rows ENABLE ROW LEVEL SECURITY;
            CREATE POLICY own ON public.own_rows USING (owner = current_user);
            CREATE TABLE public.closed AS SELECT 1 AS id;
            GRANT USAGE ON SCHEMA public TO {ROLE};
            GRANT SELECT ON public.open_rows, public.own_rows TO {ROLE};
            REVOKE ALL ON public.closed FROM PUBLIC, anon, authenticated, service_role;
        """)
    url = make_conninfo(**{**conninfo_to_dict(project_db_url), "user": ROLE, "password": ROLE})
    try:
        yield url
    finally:
        with psycopg.connect(superuser_url_for(project_db_url), autocommit=True) as db:
            db.execute(f"DROP TABLE public.open_rows, public.own_rows, public.closed; DROP OWNED BY {ROLE}; DROP ROLE {ROLE}")


def test_tables_the_role_cannot_read_whole_refuse_the_backup_before_anything_is_written(
        limited_role, project_db_url, tmp_path):
    with pytest.raises(SupabackupError, match=rf"role {ROLE} \(SUPABASE_DB_URL\) cannot read 2 table\(s\) whole:"
                       r" public.closed \(no SELECT privilege\); public.own_rows \(row-level security would hide rows\)\."
                       r".*GRANT SELECT ON public.closed TO limited_reader"):
        backup_database(limited_role, tmp_path / "refused", ["public"], include_users=False, log=lambda _: None)
    assert not [p for p in (tmp_path / "refused").rglob("*") if p.is_file()]

    # and the sessions' own setting: a read that row-level security would cut short fails, it never
    # returns fewer rows (what a role without the up-front check would otherwise back up)
    with connect(limited_role) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            conn.execute("SELECT count(*) FROM public.own_rows")

    # the project's own role (BYPASSRLS, as Supabase's postgres) backs up every row
    result = backup_database(project_db_url, tmp_path / "full", ["public"], include_users=False, log=lambda _: None)
    rows = {d.ref.qualified: d.rows for d in result.tables}
    assert rows["public.own_rows"] == 3 and rows["public.closed"] == 1 and rows["public.open_rows"] == 3


def test_a_role_with_short_timeouts_still_backs_up_a_long_table(project_db_url, tmp_path):
    """Supabase sets statement timeouts on its API roles; a backup role may have them too. The
    backup's sessions lift them, as pg_dump's do: no COPY is cancelled, no snapshot dropped."""
    with psycopg.connect(superuser_url_for(project_db_url), autocommit=True) as db:
        db.execute("""
            CREATE ROLE impatient LOGIN PASSWORD 'impatient' BYPASSRLS IN ROLE pg_read_all_data;
            ALTER ROLE impatient SET statement_timeout = '20ms';
            ALTER ROLE impatient SET idle_in_transaction_session_timeout = '20ms';
            CREATE TABLE public.long_table AS SELECT g AS id, md5(g::text) AS h FROM generate_series(1, 400000) g;
        """)
    url = make_conninfo(**{**conninfo_to_dict(project_db_url), "user": "impatient", "password": "impatient"})
    try:
        with psycopg.connect(url) as conn:  # the role's own setting is in force
            with pytest.raises(psycopg.errors.QueryCanceled):
                conn.execute("SELECT count(*) FROM public.long_table a, public.long_table b WHERE a.id < 2000 AND b.id < 2000")
        result = backup_database(url, tmp_path / "b", ["public"], include_users=False, log=lambda _: None)
        assert {d.ref.qualified: d.rows for d in result.tables}["public.long_table"] == 400000
    finally:
        with psycopg.connect(superuser_url_for(project_db_url), autocommit=True) as db:
            db.execute("DROP TABLE public.long_table; DROP OWNED BY impatient; DROP ROLE impatient")


def test_large_objects_are_named_in_the_backup_warnings(project_db_url, tmp_path):
    """pg_largeobject belongs to no table: the backup cannot hold it, and says so."""
    with psycopg.connect(project_db_url, autocommit=True) as db:
        oid = db.execute("SELECT lo_from_bytea(0, 'a file kept as a large object')").fetchone()[0]
    logged = []
    try:
        result = backup_database(project_db_url, tmp_path / "b", ["public"], include_users=False, log=logged.append)
    finally:
        with psycopg.connect(project_db_url, autocommit=True) as db:
            db.execute("SELECT lo_unlink(%s)", (oid,))
    [warning] = [w for w in result.warnings if "large object" in w]
    assert warning.startswith("1 large object(s) (pg_largeobject, lo_* functions) are not backed up") and warning in logged
    quiet = backup_database(project_db_url, tmp_path / "c", ["public"], include_users=False, log=logged.append)
    assert not [w for w in quiet.warnings if "large object" in w]
