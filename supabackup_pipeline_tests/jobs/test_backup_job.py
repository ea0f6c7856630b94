"""backup_job end to end on a real database: manifest, files, modes, users, discovery, schedule, CLI."""

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from supabackup_pipeline.assets.keys import MANIFEST_KEY, table_key
from supabackup_pipeline.assets.manifest import taken_by
from supabackup_pipeline.core.files import sha256_file
from supabackup_pipeline.core.project_lock import ADVISORY_LOCK_KEY
from supabackup_pipeline.core.store import BackupStore
from supabackup_pipeline.definitions import build_definitions
from supabackup_pipeline.jobs.backup import backup_schedule
from supabackup_pipeline.operations import run_backup, show_backup
from supabackup_pipeline.partitions import BACKUP_PARTITIONS_NAME

SECRET = "S3cr3t-Pa55word-7c1f"


@pytest.fixture(scope="module")
def seeded(project_db_url):
    import psycopg

    with psycopg.connect(project_db_url, autocommit=True) as db:
        db.execute("""
            CREATE TABLE public.customers (id bigserial PRIMARY KEY, name text NOT NULL, born date);
            CREATE TABLE public.orders (id bigserial PRIMARY KEY, customer_id bigint REFERENCES public.customers(id),
                                        total numeric(12, 2), placed_at timestamptz DEFAULT now());
            INSERT INTO public.customers (name, born) SELECT 'c' || g, '2000-01-01'::date + g FROM generate_series(1, 500) g;
            INSERT INTO public.orders (customer_id, total) SELECT 1 + g % 500, g * 1.25 FROM generate_series(1, 2000) g;
            ALTER TABLE public.orders ENABLE ROW LEVEL SECURITY;
            CREATE POLICY own_orders ON public.orders FOR SELECT TO authenticated USING (customer_id > 0);
            INSERT INTO auth.users (id, email, encrypted_password, raw_user_meta_data)
                VALUES ('11111111-1111-1111-1111-111111111111', 'ada@example.com',
                        '$2a$10$abcdefghijklmnopqrstuuJ5aFv0vJ3b0x8S2ZQH1m2Jt7o6yq', '{"name": "Ada"}');
            INSERT INTO auth.identities (provider_id, user_id, identity_data, provider)
                VALUES ('11111111-1111-1111-1111-111111111111', '11111111-1111-1111-1111-111111111111',
                        '{"sub": "1", "email": "ada@example.com"}', 'email');
            INSERT INTO auth.sessions (id, user_id) VALUES (gen_random_uuid(), '11111111-1111-1111-1111-111111111111');
        """)
        db.execute(f"CREATE ROLE backup_tester LOGIN PASSWORD '{SECRET}' IN ROLE postgres")
    return project_db_url.replace("postgres:postgres@", f"backup_tester:{SECRET}@")


@pytest.fixture
def env(backup_env, seeded, tmp_path, monkeypatch):
    monkeypatch.setenv("SUPABASE_DB_URL", seeded)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    return {**backup_env, "SUPABASE_DB_URL": seeded, "DAGSTER_HOME": str(tmp_path / "dagster_home")}


def test_backup_writes_a_complete_checksummed_private_backup(env):
    result = run_backup(description="first", components=["database", "users"])
    assert result["status"] == "valid", result
    root = Path(result["path"])
    manifest = json.loads((root / "metadata.json").read_text())
    assert manifest["backup_id"] == result["backup_id"] == root.name
    assert manifest["description"] == "first" and manifest["components"] == ["database", "users"]
    assert manifest["snapshot"]["snapshot_id"] and manifest["snapshot"]["wal_lsn"]
    assert manifest["source"]["system_identifier"] and manifest["source"]["server_version"].startswith("15")

    # every file is listed with its real size and SHA-256, and nothing unlisted is there
    on_disk = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} - {"metadata.json", "metadata.json.sha256"}
    assert on_disk == set(manifest["files"])
    for rel, entry in manifest["files"].items():
        assert (root / rel).stat().st_size == entry["bytes"]
        assert sha256_file(root / rel) == entry["sha256"]
    assert manifest["total_size"] == sum(f["bytes"] for f in manifest["files"].values())

    # files 0600, folders 0700: they hold password hashes
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), path

    orders = pq.read_table(root / "database/public.orders.parquet")
    assert orders.num_rows == 2000
    sidecar = json.loads((root / "database/public.orders.json").read_text())
    assert sidecar["row_count"] == 2000 and sidecar["rls_enabled"]
    assert [p["name"] for p in sidecar["policies"]] == ["own_orders"]
    assert "REFERENCES public.customers(id)" in " ".join(k["definition"] for k in sidecar["constraints"])
    assert "CREATE TABLE public.orders" in (root / "database/schema.sql").read_text()
    sequences = json.loads((root / "database/sequences.json").read_text())
    assert {"name": "orders_id_seq", "last_value": 2000} .items() <= {**sequences[1]}.items() or any(
        s["name"] == "orders_id_seq" and s["last_value"] == 2000 for s in sequences)

    users = pq.read_table(root / "users/auth.users.parquet").to_pylist()
    assert [u["email"] for u in users] == ["ada@example.com"]
    assert users[0]["encrypted_password"].startswith("$2a$10$")
    assert (root / "users/auth.identities.parquet").exists()
    assert not any("sessions" in rel or "refresh_tokens" in rel for rel in manifest["files"])

    # the secret in SUPABASE_DB_URL appears in no backup file and in no run log
    for path in root.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    instance = dg.DagsterInstance.get()
    logs = instance.all_logs(result["run_id"])
    assert logs and not any(SECRET in (e.message or "") for e in logs)
    assert SECRET not in json.dumps(instance.get_run_by_id(result["run_id"]).run_config)

    details = show_backup(result["backup_id"])
    assert {t["table"]: t["rows"] for t in details["tables"]} == {"public.customers": 500, "public.orders": 2000}
    assert_ui_metadata(instance, result["backup_id"], manifest)


def assert_ui_metadata(instance: dg.DagsterInstance, backup_id: str, manifest: dict) -> None:
    """What the UI shows for a backup (the manifest's partition): who, when, how long, per table."""
    [record] = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=MANIFEST_KEY, asset_partitions=[backup_id]), limit=1).records
    meta = record.asset_materialization.metadata
    assert meta["description"].value == "first" and meta["taken_by"].value == "command line"
    assert meta["created_at"].value == datetime.fromisoformat(manifest["created_at"]).timestamp()
    assert 0 < meta["duration_s"].value < 240
    rows = {r.data["table"]: (r.data["rows"], r.data["bytes"]) for r in meta["tables"].value.records}
    files = manifest["files"]
    assert rows["public.orders"] == (2000, files["database/public.orders.parquet"]["bytes"]
                                     + files["database/public.orders.json"]["bytes"])
    assert rows["public.customers"][0] == 500 and rows["auth.users"][0] == 1


def test_a_table_created_after_definitions_loaded_is_still_backed_up(env, seeded):
    import psycopg

    defs_before = build_definitions(env["BACKUP_PATH"])
    with psycopg.connect(seeded, autocommit=True) as db:
        db.execute("CREATE TABLE public.late_arrival (id int); INSERT INTO public.late_arrival VALUES (1), (2)")
    try:
        keys_before = defs_before.resolve_asset_graph().get_all_asset_keys()
        assert table_key("public", "late_arrival") not in keys_before
        result = run_backup(components=["database"])
        assert result["status"] == "valid"
        details = show_backup(result["backup_id"])
        assert {"table": "public.late_arrival", "rows": 2} .items() <= next(
            t for t in details["tables"] if t["table"] == "public.late_arrival").items()
        # after a reload, the new table is an asset of its own
        keys_after = build_definitions(env["BACKUP_PATH"]).resolve_asset_graph().get_all_asset_keys()
        assert table_key("public", "late_arrival") in keys_after
    finally:
        with psycopg.connect(seeded, autocommit=True) as db:
            db.execute("DROP TABLE public.late_arrival")


def _refusal(instance: dg.DagsterInstance, run_id: str) -> tuple[str, set[str]]:
    """A refused run ends canceled (so Dagster marks no partition failed) and says why in a tag and in
    each step that refused; (the reason, those steps)."""
    run = instance.get_run_by_id(run_id)
    assert run.status == dg.DagsterRunStatus.CANCELED, run.status
    failures = {e.step_key: e.dagster_event.step_failure_data.error.cause.message for e in instance.all_logs(run_id)
                if e.dagster_event and e.dagster_event.is_step_failure}  # the cause: our error, not Dagster's wrapper
    assert failures and all(run.tags["supabackup/refused"] in m for m in failures.values()), failures
    return run.tags["supabackup/refused"], set(failures)


def test_relaunching_a_published_backup_id_is_refused_and_the_run_ends_canceled(env):
    """What the UI's Materialize on an existing partition does: every step refuses, nothing is
    written, and the run ends canceled rather than failed."""
    result = run_backup(components=["database"])
    backup_id, root = result["backup_id"], Path(result["path"])
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    instance = dg.DagsterInstance.get()
    job = build_definitions(env["BACKUP_PATH"]).resolve_job_def("backup_job")
    rerun = job.execute_in_process(instance=instance, partition_key=backup_id, raise_on_error=False)
    reason, refused_steps = _refusal(instance, rerun.run_id)
    assert "already exists" in reason and refused_steps == {"database_dump", "storage_mirror"}
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
    assert instance.has_dynamic_partition(BACKUP_PARTITIONS_NAME, backup_id)
    assert not BackupStore(Path(env["BACKUP_PATH"])).staging_ids()


def test_a_backup_refused_because_the_project_is_busy_ends_canceled_and_leaves_nothing(env, seeded):
    import psycopg

    with psycopg.connect(seeded) as rollback_in_progress:  # holds the lock a backup or rollback takes
        rollback_in_progress.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))
        result = run_backup(components=["database", "storage"])
    assert result["status"] == "failed" and "rollback is running" in result["error"], result
    reason, refused_steps = _refusal(dg.DagsterInstance.get(), result["run_id"])
    # the storage step, next in this in-process run, refused at once instead of mirroring every bucket
    assert "rollback is running" in reason and refused_steps == {"database_dump", "storage_mirror"}
    store = BackupStore(Path(env["BACKUP_PATH"]))
    assert result["backup_id"] not in store.backup_ids() + store.staging_ids()
    assert not dg.DagsterInstance.get().has_dynamic_partition(BACKUP_PARTITIONS_NAME, result["backup_id"])


def test_the_ui_tells_a_safety_backup_from_a_scheduled_manual_or_cli_one():
    assert taken_by({"supabackup/pre_rollback_of": "20261127T120000Z", "supabackup/source": "cli"}) == (
        "safety backup before the rollback to 20261127T120000Z")
    assert taken_by({"dagster/schedule_name": "backup_schedule"}) == "schedule backup_schedule"
    assert taken_by({"supabackup/source": "cli"}) == "command line"
    assert taken_by({}) == "Dagster UI (manual)"


def test_schedule_tick_adds_one_partition_and_requests_one_run():
    when = datetime(2026, 11, 27, 3, 0, tzinfo=timezone.utc)
    with dg.instance_for_test() as instance:
        request = backup_schedule(dg.build_schedule_context(instance=instance, scheduled_execution_time=when))
        assert isinstance(request, dg.RunRequest)
        assert instance.get_dynamic_partitions(BACKUP_PARTITIONS_NAME) == ["20261127T030000Z"]
        assert request.partition_key == request.run_key == "20261127T030000Z"
        # a second evaluation for the same instant gets a distinct ID rather than reusing one
        second = backup_schedule(dg.build_schedule_context(instance=instance, scheduled_execution_time=when))
        assert second.partition_key != request.partition_key
        assert len(instance.get_dynamic_partitions(BACKUP_PARTITIONS_NAME)) == 2


def test_definitions_load_without_any_configuration(tmp_path, monkeypatch):
    for var in ("SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY", "SUPABASE_DB_URL", "BACKUP_PATH"):
        monkeypatch.delenv(var, raising=False)
    defs = build_definitions(str(tmp_path))
    dg.Definitions.validate_loadable(defs)
    assert defs.resolve_job_def("backup_job").partitions_def is not None


def _cli(args, env, **kwargs):
    return subprocess.run([sys.executable, "-m", "supabackup_pipeline", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=240, **kwargs)


def test_cli_missing_or_malformed_config_names_the_variable(env, tmp_path):
    bare = {k: v for k, v in env.items() if k != "SUPABASE_DB_URL"}
    done = _cli(["backup", "--components", "database"], {**bare, "SUPABASE_DB_URL": ""})
    assert done.returncode == 2 and "SUPABASE_DB_URL is not set" in done.stderr
    done = _cli(["backup", "--components", "database"], {**bare, "SUPABASE_DB_URL": "mysql://x"})
    assert done.returncode == 2 and "SUPABASE_DB_URL is malformed" in done.stderr
    assert BackupStore(Path(env["BACKUP_PATH"])).backup_ids() == []


def test_cli_unreachable_database_fails_cleanly(env):
    from supabackup_pipeline.dev.postgres_cluster import free_port

    url = f"postgresql://postgres:postgres@127.0.0.1:{free_port()}/postgres"
    done = _cli(["backup", "--components", "database", "--json"], {**env, "SUPABASE_DB_URL": url})
    assert done.returncode == 1
    out = json.loads(done.stdout)
    assert out["status"] == "failed" and "cannot connect to the database" in out["error"]
    assert BackupStore(Path(env["BACKUP_PATH"])).backup_ids() == []


def test_cli_unreachable_or_misspelled_storage_url_is_named(env):
    """Storage that does not answer is named as SUPABASE_URL's (not `httpx.ConnectError`); a URL
    with the API's own path in it is a configuration error before anything starts."""
    from supabackup_pipeline.dev.postgres_cluster import free_port

    done = _cli(["backup", "--components", "storage", "--json"], {**env, "SUPABASE_URL": f"http://127.0.0.1:{free_port()}"})
    assert done.returncode == 1
    error = json.loads(done.stdout)["error"]
    assert "the Storage API (SUPABASE_URL) could not be reached after" in error and "ConnectError" in error, error
    assert BackupStore(Path(env["BACKUP_PATH"])).backup_ids() == []

    done = _cli(["backup", "--components", "storage"], {**env, "SUPABASE_URL": env["SUPABASE_URL"] + "/storage/v1/"})
    assert done.returncode == 2
    assert "SUPABASE_URL is the project's URL, https://<project-ref>.supabase.co, without /storage/v1" in done.stderr


def test_cli_refresh_tables_caches_a_new_table_for_the_asset_list(env, seeded, monkeypatch):
    import psycopg

    from supabackup_pipeline.assets.keys import bucket_key
    from supabackup_pipeline.core.discovery_cache import update_catalog
    from supabackup_pipeline.dev.postgres_cluster import free_port

    # the list an earlier backup run cached, before the new table existed
    state_dir = BackupStore(Path(env["BACKUP_PATH"])).state_dir
    cache = state_dir / "catalog.json"
    update_catalog(state_dir, tables=[["public", "customers"], ["public", "orders"]], buckets=["avatars"])
    with psycopg.connect(seeded, autocommit=True) as db:
        db.execute("CREATE TABLE public.refreshed_late (id int)")
    try:
        done = _cli(["refresh-tables"], env)
        assert done.returncode == 0, done.stderr[-2000:]
        cached = json.loads(cache.read_text())
        assert ["public", "refreshed_late"] in cached["tables"]
        assert {("public", "customers"), ("public", "orders")} <= {tuple(t) for t in cached["tables"]}
        assert cached["buckets"] == ["avatars"]  # refreshing tables leaves the cached buckets alone
        assert f"{len(cached['tables'])} tables cached" in done.stdout

        # the definitions come from the cache alone: no database (nor any configuration) at load time
        for var in ("SUPABASE_DB_URL", "SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY"):
            monkeypatch.delenv(var, raising=False)
        keys = build_definitions(env["BACKUP_PATH"]).resolve_asset_graph().get_all_asset_keys()
        assert table_key("public", "refreshed_late") in keys
        assert bucket_key("avatars") in keys

        # an unreachable database: a one-line error naming the variable, exit 1, the cache untouched
        with psycopg.connect(seeded, autocommit=True) as db:
            db.execute("CREATE TABLE public.never_cached (id int)")
        kept = cache.read_bytes()
        password = "N0t-L0gged-9f2e"
        bad_url = f"postgresql://postgres:{password}@127.0.0.1:{free_port()}/postgres"
        done = _cli(["refresh-tables"], {**env, "SUPABASE_DB_URL": bad_url})
        assert done.returncode == 1, done.stderr[-2000:]
        assert done.stderr.startswith("error: cannot connect to the database (SUPABASE_DB_URL)"), done.stderr
        assert "Traceback" not in done.stderr and password not in done.stderr + done.stdout
        assert cache.read_bytes() == kept
        assert not list(state_dir.glob("catalog.json*.tmp"))
    finally:
        with psycopg.connect(seeded, autocommit=True) as db:
            db.execute("DROP TABLE IF EXISTS public.refreshed_late; DROP TABLE IF EXISTS public.never_cached")


def test_cli_show_rejects_unknown_and_malformed_ids(env):
    Path(env["BACKUP_PATH"]).mkdir(parents=True, exist_ok=True)  # (a missing folder is its own error)
    done = _cli(["show", "../etc"], env)
    assert done.returncode == 2 and "invalid backup ID" in done.stderr
    done = _cli(["show", "20200101T000000Z"], env)
    assert done.returncode == 2 and "unknown backup ID 20200101T000000Z" in done.stderr


def test_cli_backup_list_show_json(env):
    done = _cli(["backup", "--components", "database,users", "--description", "from cli", "--json"], env)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    assert out["status"] == "valid" and out["total_size"] > 0
    listed = json.loads(_cli(["list", "--json"], env).stdout)
    assert out["backup_id"] in [b["backup_id"] for b in listed]
    shown = json.loads(_cli(["show", out["backup_id"], "--json"], env).stdout)
    assert shown["description"] == "from cli"


def test_kill_9_mid_backup_leaves_no_backup_folder_and_the_next_backup_works(env, seeded):
    import psycopg

    with psycopg.connect(seeded, autocommit=True) as db:
        db.execute("CREATE TABLE public.bulk AS SELECT g AS id, repeat(md5(g::text), 8) AS payload"
                   " FROM generate_series(1, 1500000) g")
    try:
        store = BackupStore(Path(env["BACKUP_PATH"]))
        before = set(store.backup_ids())
        proc = subprocess.Popen([sys.executable, "-m", "supabackup_pipeline", "backup", "--components", "database"],
                                env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list(store.staging_root.glob("*/database/public.bulk.parquet")):
            time.sleep(0.05)
        assert proc.poll() is None, "the backup finished before it could be killed; make the table bigger"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        assert set(store.backup_ids()) == before  # nothing half-written under a backup ID
        assert not any((store.root / p.name).exists() for p in store.staging_root.iterdir())
        left = store.staging_ids()
        assert len(left) == 1 and store.stale_staging() == left  # its owner (the CLI process) is gone
        result = run_backup(components=["database"])
        assert result["status"] == "valid"
        assert len(set(store.backup_ids()) - before) == 1
    finally:
        with psycopg.connect(seeded, autocommit=True) as db:
            db.execute("DROP TABLE public.bulk")


def test_full_backup_includes_storage_and_the_second_one_links_unchanged_objects(env, supabase_client, storage_server):
    import uuid as _uuid

    bucket = f"e2e-{_uuid.uuid4().hex[:8]}"
    supabase_client.storage.create_bucket(bucket, options={"public": False})
    files = {"docs/readme.txt": b"hello", "img/a b&c.png": os.urandom(50_000), "empty": b""}
    for name, data in files.items():
        supabase_client.storage.from_(bucket).upload(name, data)
    try:
        first = run_backup(description="all")
        assert first["status"] == "valid", first
        assert first["components"] == ["database", "users", "storage"]
        root = Path(first["path"])
        manifest = json.loads((root / "metadata.json").read_text())
        assert "storage" in manifest["components"] and "storage/manifest.json" in manifest["files"]
        for name, data in files.items():
            assert (root / "storage" / bucket / name).read_bytes() == data
            assert f"storage/{bucket}/{name}" in manifest["files"]

        downloads = storage_server.faults.download_count
        second = run_backup(components=["storage"])
        assert second["status"] == "valid", second
        assert storage_server.faults.download_count == downloads  # nothing downloaded again
        again = Path(second["path"]) / "storage" / bucket / "img/a b&c.png"
        assert again.stat().st_ino == (root / "storage" / bucket / "img/a b&c.png").stat().st_ino
    finally:
        supabase_client.storage.empty_bucket(bucket)
        supabase_client.storage.delete_bucket(bucket)


def test_one_backup_id_is_written_by_one_run(tmp_path):
    """Materialize clicked twice (or a backfill over a running partition) made two runs write one
    staging folder, and the backup published a mix of both. A folder another live run holds is
    refused; the holding run's own steps go on; one a dead run left is taken over as it is."""
    from supabackup_pipeline.core.staging import StagingHeld, _process_start

    store = BackupStore(tmp_path)
    backup_id = "20261130T120000Z"
    store.start(backup_id)
    (store.staging(backup_id) / "written-by-this-run").write_text("x")
    store.start(backup_id)  # a later step of the same run
    other = subprocess.Popen(["sleep", "60"])
    try:
        store.owner_file(backup_id).write_text(json.dumps(
            {"host": socket.gethostname(), "pid": other.pid, "started": _process_start(other.pid), "since": 0}))
        with pytest.raises(StagingHeld, match=rf"backup {backup_id} is being written by another run \(pid {other.pid}"):
            store.start(backup_id)
    finally:
        other.kill()
        other.wait()
    store.start(backup_id)  # its holder is gone: taken over, files kept (a re-execution reuses them)
    assert (store.staging(backup_id) / "written-by-this-run").exists()
    assert json.loads(store.owner_file(backup_id).read_text())["pid"] == os.getpid()


def test_a_malformed_backup_cron_is_named():
    """Dagster refuses the schedule with "Found invalid cron schedule", naming no variable; the code
    location cannot load without it, so the message says which setting and what it should be."""
    from supabackup_pipeline.core.errors import ConfigError
    from supabackup_pipeline.jobs.backup import _backup_schedule

    assert _backup_schedule("15 4 * * 1").cron_schedule == "15 4 * * 1"
    with pytest.raises(ConfigError, match=r"SUPABACKUP_BACKUP_CRON='every day' is not a cron schedule: five fields,"
                                          r" e.g. '0 3 \* \* \*'"):
        _backup_schedule("every day")


def test_a_table_asset_whose_table_was_dropped_is_reported_gone_not_a_failed_run(seeded, tmp_path):
    """The asset list is cached when the code location loads; selecting a table dropped since
    failed the whole run ("tables not found"). It now says the table is gone, and the others in
    the run are backed up."""
    import psycopg

    from supabackup_pipeline.assets.database import build_database_dump
    from supabackup_pipeline.core.catalog import TableRef
    from supabackup_pipeline.partitions import BACKUP_PARTITIONS_NAME
    from supabackup_pipeline.resources import BackupStorage, SupabaseDatabase

    with psycopg.connect(seeded, autocommit=True) as db:
        db.execute("CREATE TABLE public.dropped_soon (id int); CREATE TABLE public.stays (id int);"
                   " INSERT INTO public.stays VALUES (1), (2)")
    try:
        asset = build_database_dump([TableRef("public", "dropped_soon"), TableRef("public", "stays")])
        with psycopg.connect(seeded, autocommit=True) as db:
            db.execute("DROP TABLE public.dropped_soon")
        instance = dg.DagsterInstance.ephemeral()
        backup_id = "20260105T000000Z"
        instance.add_dynamic_partitions(BACKUP_PARTITIONS_NAME, [backup_id])
        result = dg.materialize(
            [asset], partition_key=backup_id, instance=instance,
            selection=[table_key("public", "dropped_soon"), table_key("public", "stays")],
            resources={"database": SupabaseDatabase(db_url=seeded), "backups": BackupStorage(backup_path=str(tmp_path))})
        assert result.success
        meta = {e.materialization.asset_key: e.materialization.metadata for e in result.get_asset_materialization_events()}
        assert meta[table_key("public", "dropped_soon")]["status"].value.startswith("gone: the table no longer exists")
        assert meta[table_key("public", "stays")]["rows"].value == 2
    finally:
        with psycopg.connect(seeded, autocommit=True) as db:
            db.execute("DROP TABLE IF EXISTS public.dropped_soon; DROP TABLE IF EXISTS public.stays")
