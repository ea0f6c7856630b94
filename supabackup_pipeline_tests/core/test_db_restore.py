"""The database restore itself (core/db_restore.py), without Dagster: triggers, generated columns,
and the post-validation that decides whether the restore commits."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import pytest

from supabackup_pipeline.core import db_restore
from supabackup_pipeline.core.database_backup import as_manifest, backup_database
from supabackup_pipeline.core.db_restore import apply_database_restore, plan_database_restore
from supabackup_pipeline.core.errors import RestoreRefused, SupabackupError
from supabackup_pipeline.core.snapshot import connect
from supabackup_pipeline.core.verify import check_table_dump


@pytest.fixture
def schema(db):
    """A schema of its own per test, so that backups of it hold only this test's tables."""
    name = f"r_{uuid.uuid4().hex[:8]}"
    db.execute(f"CREATE SCHEMA {name}")
    yield name
    db.execute(f"DROP SCHEMA {name} CASCADE")


def back_up(db_url: str, schema: str, out: Path) -> dict:
    """A backup of `schema` (no users) and the manifest part a restore plan reads."""
    result = backup_database(db_url, out, [schema], include_users=False, log=lambda _: None)
    return as_manifest(result, [schema])


def plan(db_url: str, out: Path, manifest: dict):
    with connect(db_url) as conn:
        return plan_database_restore(conn, out, manifest, ["database"])


def rows(db, table: str) -> list[tuple]:
    return db.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()


@pytest.mark.parametrize("replica_mode", [True, False], ids=["replica-mode", "triggers-disabled-by-name"])
def test_no_trigger_fires_on_restored_rows_and_each_keeps_its_mode(db, project_db_url, schema, tmp_path,
                                                                     monkeypatch, replica_mode):
    log = f"{schema}_log"
    db.execute(f"""
        CREATE SCHEMA {log};
        CREATE TABLE {log}.fired (trigger text);
        CREATE TABLE {schema}.t (id int PRIMARY KEY, val text);
        INSERT INTO {schema}.t SELECT g, 'v' || g FROM generate_series(1, 50) g;
        CREATE FUNCTION {schema}.note() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN INSERT INTO {log}.fired VALUES (TG_NAME); RETURN NEW; END $$;
        CREATE TRIGGER t_origin AFTER INSERT ON {schema}.t FOR EACH ROW EXECUTE FUNCTION {schema}.note();
        CREATE TRIGGER t_always AFTER INSERT ON {schema}.t FOR EACH ROW EXECUTE FUNCTION {schema}.note();
        CREATE TRIGGER t_replica AFTER INSERT ON {schema}.t FOR EACH ROW EXECUTE FUNCTION {schema}.note();
        CREATE TRIGGER t_off AFTER INSERT ON {schema}.t FOR EACH ROW EXECUTE FUNCTION {schema}.note();
        ALTER TABLE {schema}.t ENABLE ALWAYS TRIGGER t_always;
        ALTER TABLE {schema}.t ENABLE REPLICA TRIGGER t_replica;
        ALTER TABLE {schema}.t DISABLE TRIGGER t_off;
    """)
    modes_sql = f"SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = '{schema}.t'::regclass ORDER BY 1"
    modes = db.execute(modes_sql).fetchall()
    at_backup = rows(db, f"{schema}.t")
    manifest = back_up(project_db_url, schema, tmp_path)
    db.execute(f"DELETE FROM {schema}.t WHERE id > 10; TRUNCATE {log}.fired")
    if not replica_mode:  # as for a role that may not set session_replication_role
        monkeypatch.setattr(db_restore, "_try_replica", lambda conn: False)

    result = apply_database_restore(project_db_url, plan(project_db_url, tmp_path, manifest), tmp_path,
                                    log=lambda _: None)

    assert result["replica_mode"] is replica_mode
    assert rows(db, f"{schema}.t") == at_backup
    assert rows(db, f"{log}.fired") == []
    assert db.execute(modes_sql).fetchall() == modes
    db.execute(f"DROP SCHEMA {log} CASCADE")


def test_a_changed_generated_column_is_recreated_as_backed_up(db, project_db_url, schema, tmp_path):
    db.execute(f"""
        CREATE TABLE {schema}.prices (id int PRIMARY KEY, net numeric(10,2),
                                      gross numeric GENERATED ALWAYS AS (net * 1.2) STORED);
        INSERT INTO {schema}.prices (id, net) SELECT g, g * 10 FROM generate_series(1, 20) g;
    """)
    at_backup = rows(db, f"{schema}.prices")
    manifest = back_up(project_db_url, schema, tmp_path)
    db.execute(f"""
        ALTER TABLE {schema}.prices DROP COLUMN gross;
        ALTER TABLE {schema}.prices ADD COLUMN gross numeric GENERATED ALWAYS AS (net * 1.5) STORED;
    """)
    restore = plan(project_db_url, tmp_path, manifest)
    assert restore.tables[0].drift == [db_restore.Drift("generation_changed", "gross")]
    assert restore.to_json()["tables"][0]["drift"] == ["column gross generated differently since the backup: will be re-created"]

    apply_database_restore(project_db_url, restore, tmp_path, log=lambda _: None)

    assert rows(db, f"{schema}.prices") == at_backup
    db.execute(f"INSERT INTO {schema}.prices (id, net) VALUES (100, 10)")
    assert db.execute(f"SELECT gross FROM {schema}.prices WHERE id = 100").fetchone()[0] == 12


@pytest.mark.parametrize("columns, values", [("", ()), ("one int GENERATED ALWAYS AS (1) STORED", (1,))],
                         ids=["no-columns", "generated-columns-only"])
def test_a_table_whose_dump_holds_no_column_gets_its_rows_back(db, project_db_url, schema, tmp_path, columns, values):
    """A table of no columns, or only of generated ones (which are not dumped), is dumped as its row
    count: the restore inserts that many rows, the server computes every value, and the
    post-validation compares the counts."""
    db.execute(f"""
        CREATE TABLE {schema}.ticks ({columns});
        INSERT INTO {schema}.ticks SELECT FROM generate_series(1, 5);
    """)
    manifest = back_up(project_db_url, schema, tmp_path)
    assert check_table_dump(tmp_path, f"database/{schema}.ticks.parquet", f"database/{schema}.ticks.json") == []
    db.execute(f"DELETE FROM {schema}.ticks")

    result = apply_database_restore(project_db_url, plan(project_db_url, tmp_path, manifest), tmp_path,
                                    log=lambda _: None)

    assert db.execute(f"SELECT * FROM {schema}.ticks").fetchall() == [values] * 5
    assert result["tables"][0]["validated_by"] == "fingerprint"


def test_long_values_are_restored_with_lz4_unless_their_column_says_otherwise(db, project_db_url, schema, tmp_path):
    """The load compresses long values with lz4 where the server has it (faster than pglz, the
    default); the values are the backup's, and a column's own COMPRESSION setting still wins."""
    db.execute(f"""
        CREATE TABLE {schema}.notes (id int PRIMARY KEY, body text, kept text COMPRESSION pglz);
        INSERT INTO {schema}.notes SELECT g, repeat('note ' || g || ' ', 800), repeat('kept ' || g || ' ', 800)
        FROM generate_series(1, 20) g;
    """)
    at_backup = rows(db, f"{schema}.notes")
    manifest = back_up(project_db_url, schema, tmp_path)
    db.execute(f"UPDATE {schema}.notes SET body = 'short' WHERE id % 2 = 0")
    has_lz4 = db.execute("SELECT 'lz4' = ANY(enumvals) FROM pg_settings"
                         " WHERE name = 'default_toast_compression'").fetchone()[0]

    apply_database_restore(project_db_url, plan(project_db_url, tmp_path, manifest), tmp_path, log=lambda _: None)

    assert rows(db, f"{schema}.notes") == at_backup
    methods = db.execute(f"SELECT DISTINCT pg_column_compression(body), pg_column_compression(kept)"
                         f" FROM {schema}.notes").fetchall()
    assert methods == [("lz4" if has_lz4 else "pglz", "pglz")]


def _bulk_table(db, schema: str) -> None:
    db.execute(f"""
        CREATE TABLE {schema}.items (id int PRIMARY KEY, name text, tags text[], at timestamptz, price numeric,
                                     label text GENERATED ALWAYS AS (upper(name)) STORED);
        INSERT INTO {schema}.items SELECT g, 'item ' || g, ARRAY['a', NULL, 'b"' || g],
               '2026-01-01'::timestamptz + g * interval '1 minute', g / 7.0
        FROM generate_series(1, 3000) g;
    """)


@pytest.mark.parametrize("digest", ["recorded", "missing", "different"])
def test_post_validation_compares_the_copy_digest_or_else_every_value(db, project_db_url, schema, tmp_path, digest):
    """A dump records the digest of the COPY text it read; without it (an older backup) or when the
    server prints differently (here: a wrong digest), the restore compares the values instead."""
    _bulk_table(db, schema)
    at_backup = rows(db, f"{schema}.items")
    manifest = back_up(project_db_url, schema, tmp_path)
    db.execute(f"DELETE FROM {schema}.items WHERE id % 2 = 0")
    restore = plan(project_db_url, tmp_path, manifest)
    sidecar = restore.tables[0].sidecar
    assert len(sidecar["copy_sha256"]) == 64
    if digest == "missing":
        del sidecar["copy_sha256"]
    elif digest == "different":
        sidecar["copy_sha256"] = "0" * 64

    result = apply_database_restore(project_db_url, restore, tmp_path, log=lambda _: None)

    assert rows(db, f"{schema}.items") == at_backup
    assert result["tables"][0]["validated_by"] == ("copy_sha256" if digest == "recorded" else "fingerprint")


def test_the_value_by_value_comparison_ignores_what_lies_under_a_null(db, project_db_url, schema, tmp_path):
    """The fallback fingerprint compares values, not buffers: under a NULL uuid the backup's Parquet
    holds zeros and the live table's decoded COPY holds whatever bytes were there."""
    db.execute(f"""
        CREATE TABLE {schema}.owners (id int PRIMARY KEY, owner uuid, label text, at timestamptz);
        INSERT INTO {schema}.owners SELECT g, CASE WHEN g % 3 = 0 THEN NULL ELSE md5(g::text)::uuid END,
               CASE WHEN g % 5 = 0 THEN NULL ELSE 'x' || g END, CASE WHEN g % 4 = 0 THEN NULL ELSE now() END
        FROM generate_series(1, 500) g;
    """)
    at_backup = rows(db, f"{schema}.owners")
    manifest = back_up(project_db_url, schema, tmp_path)
    db.execute(f"DELETE FROM {schema}.owners WHERE id < 100")
    restore = plan(project_db_url, tmp_path, manifest)
    restore.tables[0].sidecar["copy_sha256"] = "0" * 64  # as if this server printed some type differently

    result = apply_database_restore(project_db_url, restore, tmp_path, log=lambda _: None)

    assert result["tables"][0]["validated_by"] == "fingerprint"
    assert rows(db, f"{schema}.owners") == at_backup


# How earlier dump formats read `_bulk_table`'s table; their copy_sha256 is the digest of this stream.
EARLIER_FORMATS = {
    1: (  # CSV
        "COPY (SELECT \"id\", \"name\", \"tags\","
        " CASE WHEN array_ndims(\"tags\") > 1 OR array_lower(\"tags\", 1) <> 1 THEN \"tags\"::text END,"
        " CASE WHEN \"at\" BETWEEN '0001-01-01 00:00:00+00'::timestamptz AND '9999-12-31 23:59:59.999999+00'::timestamptz"
        " THEN \"at\" END,"
        " CASE WHEN NOT (\"at\" BETWEEN '0001-01-01 00:00:00+00'::timestamptz AND '9999-12-31 23:59:59.999999+00'::timestamptz)"
        " THEN \"at\"::text END, \"price\", \"label\" FROM ONLY {table}) TO STDOUT (FORMAT csv)"
    ),
    2: (  # binary, a marker first, the server splitting timestamps into value and overflow text
        "COPY (SELECT 5999440460902781527::int8, \"id\", \"name\", \"tags\"::text,"
        " CASE WHEN array_ndims(\"tags\") > 1 OR array_lower(\"tags\", 1) <> 1 THEN \"tags\"::text END,"
        " CASE WHEN \"at\" BETWEEN '0001-01-01 00:00:00+00'::timestamptz AND '9999-12-31 23:59:59.999999+00'::timestamptz"
        " THEN \"at\" END,"
        " CASE WHEN NOT (\"at\" BETWEEN '0001-01-01 00:00:00+00'::timestamptz AND '9999-12-31 23:59:59.999999+00'::timestamptz)"
        " THEN \"at\"::text END, \"price\"::text, \"label\" FROM ONLY {table}) TO STDOUT (FORMAT binary)"
    ),
    3: (  # binary, dates and times as they are (split on the client), generated columns too
        "COPY (SELECT 5999440460902781527::int8, \"id\", \"name\", \"tags\"::text,"
        " CASE WHEN array_ndims(\"tags\") > 1 OR array_lower(\"tags\", 1) <> 1 THEN \"tags\"::text END,"
        " \"at\", \"price\"::text, \"label\" FROM ONLY {table}) TO STDOUT (FORMAT binary)"
    ),
}


@pytest.mark.parametrize("version", sorted(EARLIER_FORMATS))
def test_a_backup_of_an_earlier_format_still_validates_by_its_own_digest(db, project_db_url, schema, tmp_path, version):
    """Backups made before the current format recorded the digest of their own COPY: a restore
    reads the restored table back that way for them, and the digest proves it equal without a
    value comparison."""
    _bulk_table(db, schema)
    at_backup = rows(db, f"{schema}.items")
    with connect(project_db_url) as conn, conn.cursor().copy(EARLIER_FORMATS[version].format(table=f"{schema}.items")) as copy:
        old_digest = hashlib.sha256(b"".join(bytes(chunk) for chunk in copy)).hexdigest()
    manifest = back_up(project_db_url, schema, tmp_path)
    db.execute(f"UPDATE {schema}.items SET name = 'changed' WHERE id = 7")
    restore = plan(project_db_url, tmp_path, manifest)
    sidecar = restore.tables[0].sidecar
    assert sidecar["format_version"] == 4 and sidecar["copy_sha256"] != old_digest
    sidecar.update(format_version=version, copy_sha256=old_digest)

    result = apply_database_restore(project_db_url, restore, tmp_path, log=lambda _: None)

    assert rows(db, f"{schema}.items") == at_backup
    assert result["tables"][0]["validated_by"] == "copy_sha256"


@pytest.mark.parametrize("fault, message", [
    ("UPDATE {t} SET name = 'changed' WHERE id = 7", "content differs from the backup"),
    ("DELETE FROM {t} WHERE id = 7", "2999 rows, backup has 3000"),
    ("UPDATE {t} SET tags = ARRAY['a', 'b\"7'] WHERE id = 7", "content differs from the backup"),
])
def test_post_validation_refuses_to_commit_a_restore_that_differs(db, project_db_url, schema, tmp_path,
                                                                   monkeypatch, fault, message):
    """A load that got something wrong (simulated after the real COPY) is caught before the commit,
    and the project is left as it was."""
    _bulk_table(db, schema)
    manifest = back_up(project_db_url, schema, tmp_path)
    db.execute(f"DELETE FROM {schema}.items WHERE id % 2 = 0")
    before = rows(db, f"{schema}.items")
    real_load = db_restore.load_tables

    def faulty_load(conn, jobs):
        for loaded in real_load(conn, jobs):
            conn.execute(fault.format(t=f"{schema}.items"))
            yield loaded

    monkeypatch.setattr(db_restore, "load_tables", faulty_load)
    with pytest.raises(SupabackupError, match="post-validation failed, nothing was changed") as failure:
        apply_database_restore(project_db_url, plan(project_db_url, tmp_path, manifest), tmp_path,
                               log=lambda _: None)
    assert message in str(failure.value)
    assert rows(db, f"{schema}.items") == before


def test_a_backup_of_a_newer_format_is_refused_before_anything_changes(db, project_db_url, schema, tmp_path):
    """A newer supabackup's COPY (so its digest) is unknown here: the plan refuses, naming the table
    and the formats, instead of failing the post-validation after the load."""
    _bulk_table(db, schema)
    manifest = back_up(project_db_url, schema, tmp_path)
    sidecar_path = tmp_path / "database" / f"{schema}.items.json"
    sidecar = json.loads(sidecar_path.read_text())
    sidecar_path.write_text(json.dumps({**sidecar, "format_version": 99}))
    db.execute(f"UPDATE {schema}.items SET name = 'changed' WHERE id = 7")
    refused = rf"{schema}\.items was backed up by a newer supabackup \(sidecar format 99"
    with pytest.raises(RestoreRefused, match=refused):
        plan(project_db_url, tmp_path, manifest)
    assert db.execute(f"SELECT name FROM {schema}.items WHERE id = 7").fetchone()[0] == "changed"
