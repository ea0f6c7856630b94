"""The production instance (deploy/dagster.yaml) on PostgreSQL: a backup and a rollback run through it.

The instance is loaded exactly as `dagster-webserver`, `dagster-daemon` and the CLI load it: from
DAGSTER_HOME, with the connection settings in environment variables. Its storage is a database of
its own on the test cluster; the tests read runs, materializations, checks, partitions and the
pool limit back both through Dagster and straight from PostgreSQL's tables, and run queued runs
through the daemon's run queue and the run launcher as a deployment does.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import psycopg
import pytest

from supabackup_pipeline.assets.keys import DATABASE_SCHEMA_KEY, MANIFEST_KEY, USERS_KEY, live_table_key, table_key
from supabackup_pipeline.checks.integrity import CHECK_NAME
from supabackup_pipeline.operations import refresh_tables, rollback, run_backup
from supabackup_pipeline.partitions import BACKUP_PARTITIONS_NAME, PROJECT_POOL

pytestmark = pytest.mark.e2e  # a running Dagster (webserver, daemon or instance database): left out of the fast subset

DEPLOY_YAML = Path(__file__).resolve().parents[2] / "deploy" / "dagster.yaml"
COMPONENTS = ["database", "users"]
FINISHED = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


def _connections_to(stack, dbname: str) -> int:
    with psycopg.connect(stack.superuser_url, autocommit=True) as admin:
        return admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (dbname,)).fetchone()[0]


@pytest.fixture
def dagster_db(stack):
    """A plain database for Dagster's own tables, owned by the non-superuser `postgres` role."""
    name = f"dagster_storage_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(stack.superuser_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name} OWNER postgres")
    port = urlsplit(stack.superuser_url).port
    yield {"name": name, "url": f"postgresql://postgres:postgres@127.0.0.1:{port}/{name}", "port": port}
    # every engine was disposed: nothing may still be connected (a leak would show here)
    deadline = time.monotonic() + 10
    while _connections_to(stack, name) and time.monotonic() < deadline:
        time.sleep(0.1)
    leaked = _connections_to(stack, name)
    with psycopg.connect(stack.superuser_url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    assert leaked == 0, f"{leaked} connection(s) to Dagster's storage database left open"


@pytest.fixture
def production_home(tmp_path, dagster_db, backup_env, monkeypatch) -> Path:
    """DAGSTER_HOME holding deploy/dagster.yaml unchanged; the connection comes from the environment."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY_YAML, home / "dagster.yaml")
    for key, value in {"DAGSTER_HOME": str(home), "DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": str(dagster_db["port"]),
                       "DAGSTER_PG_USER": "postgres", "DAGSTER_PG_PASSWORD": "postgres",
                       "DAGSTER_PG_DB": dagster_db["name"]}.items():
        monkeypatch.setenv(key, value)
    return home


@pytest.fixture
def instance(production_home):
    inst = dg.DagsterInstance.get()
    yield inst
    inst.dispose()


@pytest.fixture
def seeded(project_db_url):
    with psycopg.connect(project_db_url, autocommit=True) as db:
        db.execute("""
            DROP TABLE IF EXISTS public.orders, public.customers CASCADE;
            DELETE FROM auth.users;
            CREATE TABLE public.customers (id serial PRIMARY KEY, name text NOT NULL);
            CREATE TABLE public.orders (id bigserial PRIMARY KEY, customer_id int NOT NULL REFERENCES public.customers(id),
                                        total numeric(10, 2));
            INSERT INTO public.customers (name) SELECT 'c' || g FROM generate_series(1, 100) g;
            INSERT INTO public.orders (customer_id, total) SELECT 1 + g % 100, g * 1.5 FROM generate_series(1, 400) g;
            INSERT INTO auth.users (id, email, encrypted_password) VALUES
                ('11111111-1111-1111-1111-111111111111', 'ada@x.io', '$2a$10$ada'),
                ('22222222-2222-2222-2222-222222222222', 'bob@x.io', '$2a$10$bob');
        """)
    return project_db_url


def _content(db_url: str) -> dict:
    with psycopg.connect(db_url) as db:
        return {t: sorted(r[0] for r in db.execute(f"SELECT to_jsonb(x)::text FROM {t} x").fetchall())
                for t in ("public.customers", "public.orders", "auth.users")}


def driver_of(storage) -> str:
    """The database driver SQLAlchemy picks for the storage's URL (as dagster-postgres' engine does)."""
    from sqlalchemy.engine import make_url

    return make_url(storage.postgres_url).get_dialect().driver


def test_the_deploy_config_loads_postgres_storage_queue_pools_and_monitoring(instance):
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
    assert driver_of(instance.run_storage) == "psycopg2"  # the driver dagster-postgres is written for
    assert isinstance(instance.run_coordinator, dg.QueuedRunCoordinator)
    assert instance.event_log_storage.supports_global_concurrency_limits

    pools = instance.get_concurrency_config().pool_config
    assert pools.default_pool_limit == 1 and pools.pool_granularity.value == "run"
    assert instance.global_op_concurrency_default_limit == 1
    assert instance.run_monitoring_enabled
    assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] > 0
    assert not instance.telemetry_enabled


def test_backup_and_rollback_run_through_the_postgres_instance(instance, production_home, backup_env, seeded, dagster_db):
    refresh_tables()  # so that every table has its own asset, as after any earlier complete backup
    backup = run_backup(description="production instance", components=COMPONENTS)  # DagsterInstance.get()
    assert backup["status"] == "valid", backup
    backup_id = backup["backup_id"]
    at_backup = _content(seeded)

    with psycopg.connect(seeded, autocommit=True) as db:
        db.execute("""
            DELETE FROM public.orders WHERE id % 2 = 0;
            UPDATE public.customers SET name = 'changed' WHERE id < 10;
            DELETE FROM auth.users WHERE email = 'bob@x.io';
            INSERT INTO auth.users (id, email) VALUES (gen_random_uuid(), 'intruder@x.io');
        """)
    assert _content(seeded) != at_backup
    report = rollback(backup_id, {"components": COMPONENTS, "safety_backup": False})
    assert report["status"] == "restored", report
    assert _content(seeded) == at_backup

    # --- the runs, read back through the instance (PostgresRunStorage)
    runs = {run.run_id: run for run in instance.get_runs()}
    assert set(runs) == {backup["run_id"], report["run_id"]}
    backup_run, rollback_run = runs[backup["run_id"]], runs[report["run_id"]]
    assert backup_run.status == rollback_run.status == dg.DagsterRunStatus.SUCCESS
    assert backup_run.job_name == "backup_job" and rollback_run.job_name == "rollback_job"
    assert backup_run.tags["dagster/partition"] == rollback_run.tags["dagster/partition"] == backup_id
    assert backup_run.tags["supabackup/description"] == "production instance"
    assert backup_run.tags["supabackup/source"] == rollback_run.tags["supabackup/source"] == "cli"

    # --- the backup's materializations and checks, and the rollback's, in the event log storage
    backed_up = [DATABASE_SCHEMA_KEY, USERS_KEY, MANIFEST_KEY, table_key("public", "customers"), table_key("public", "orders")]
    for key in backed_up:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=[backup_id]), limit=5).records
        assert [r.run_id for r in records] == [backup["run_id"]], key
    for table in ("customers", "orders"):
        records = instance.fetch_materializations(live_table_key("public", table), limit=5).records
        assert [r.run_id for r in records] == [report["run_id"]]
        assert records[0].asset_materialization.metadata["restored_from"].value == backup_id
    for key in (USERS_KEY, table_key("public", "orders")):
        check = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(key, CHECK_NAME)])[dg.AssetCheckKey(key, CHECK_NAME)]
        assert check.run_id == backup["run_id"] and check.status.value == "SUCCEEDED", check

    # --- the backup ID is a dynamic partition kept in PostgreSQL
    assert instance.get_dynamic_partitions(BACKUP_PARTITIONS_NAME) == [backup_id]

    # --- and all of it really is in PostgreSQL's tables, read with a client of our own
    with psycopg.connect(dagster_db["url"]) as pg:
        rows = pg.execute("SELECT run_id, pipeline_name, status, partition FROM runs ORDER BY create_timestamp").fetchall()
        assert rows == [(backup["run_id"], "backup_job", "SUCCESS", backup_id),
                        (report["run_id"], "rollback_job", "SUCCESS", backup_id)]
        tags = set(pg.execute("SELECT run_id, key, value FROM run_tags WHERE key LIKE 'supabackup/%%'").fetchall())
        assert (backup["run_id"], "supabackup/description", "production instance") in tags
        assert (report["run_id"], "supabackup/source", "cli") in tags
        events = "SELECT asset_key, partition FROM event_logs WHERE run_id = %s AND dagster_event_type = %s"
        materialized = pg.execute(events, (backup["run_id"], dg.DagsterEventType.ASSET_MATERIALIZATION.value)).fetchall()
        assert {(k.to_string(), backup_id) for k in backed_up} <= set(materialized)
        assert len(pg.execute(events, (report["run_id"], dg.DagsterEventType.RUN_SUCCESS.value)).fetchall()) == 1
        assert pg.execute("SELECT partition FROM dynamic_partitions WHERE partitions_def_name = %s",
                          (BACKUP_PARTITIONS_NAME,)).fetchall() == [(backup_id,)]
    # and nothing went to a local SQLite storage beside dagster.yaml
    assert not list(production_home.rglob("*.db")) and not (production_home / "history").exists()


def test_the_queue_runs_one_run_of_the_project_pool_at_a_time(instance, backup_env, seeded, dagster_db):
    """Production path: runs queued as from the UI, dequeued by the daemon's run queue, launched by
    the run launcher into run workers (multiprocess executor) that load this same instance."""
    from dagster._core.definitions.selector import JobSubsetSelector
    from dagster._core.remote_representation.grpc_server_registry import GrpcServerRegistry
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import ModuleTarget
    from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon
    from dagster._grpc.constants import GrpcServerCommand

    # the deploy step (deploy/README.md, `dagster instance concurrency set supabackup_project 1`): the
    # queue's very first pass would start every queued run before it initialises the pool from default_limit
    instance.event_log_storage.set_concurrency_slots(PROJECT_POOL, 1)
    backup_id = run_backup(components=COMPONENTS)["backup_id"]
    # two dry-run rollbacks: their restore step is in pool supabackup_project, and a dry run changes nothing
    run_config = {"ops": {"verify_and_protect": {"config": {"dry_run": True, "components": COMPONENTS}}}}
    target = ModuleTarget(module_name="supabackup_pipeline.definitions", attribute=None,
                          working_directory=str(DEPLOY_YAML.parent.parent), location_name="supabackup")
    # the code server the run launcher starts runs through; waited for at the end, so that it never
    # outlives the test (it reads the instance until its last run worker has exited)
    registry = GrpcServerRegistry(instance_ref=instance.get_ref(), server_command=GrpcServerCommand.API_GRPC,
                                  heartbeat_ttl=45, startup_timeout=60, wait_for_processes_on_shutdown=True)
    with registry, WorkspaceProcessContext(instance, target, grpc_server_registry=registry) as process_context:
        workspace = process_context.create_request_context()
        location = workspace.get_code_location("supabackup")
        (repo,) = location.get_repositories().values()
        job = location.get_job(JobSubsetSelector(location_name="supabackup", repository_name=repo.name,
                                                 job_name="rollback_job", op_selection=None))
        plan = location.get_execution_plan(job, run_config, step_keys_to_execute=None, known_state=None,
                                           instance=instance).execution_plan_snapshot
        run_ids = []
        for _ in range(2):
            run = instance.create_run(
                job_name=job.name, run_id=None, run_config=run_config, resolved_op_selection=None,
                step_keys_to_execute=plan.step_keys_to_execute, op_selection=None, status=None, root_run_id=None,
                parent_run_id=None, tags={**job.tags, "dagster/partition": backup_id}, job_snapshot=job.job_snapshot,
                execution_plan_snapshot=plan, parent_job_snapshot=job.parent_job_snapshot,
                remote_job_origin=job.get_remote_origin(), job_code_origin=job.get_python_origin(),
                asset_selection=None, asset_check_selection=None, asset_graph=repo.asset_graph)
            instance.submit_run(run.run_id, workspace)
            run_ids.append(run.run_id)
        assert [instance.get_run_by_id(r).status for r in run_ids] == [dg.DagsterRunStatus.QUEUED] * 2
        daemon = QueuedRunCoordinatorDaemon(interval_seconds=1)

        # a CLI backup in progress (held up by a table lock) uses the pool: the queue starts nothing
        cli: dict = {}
        with psycopg.connect(seeded) as blocker:
            blocker.execute("LOCK TABLE public.orders IN ACCESS EXCLUSIVE MODE")
            worker = threading.Thread(target=lambda: cli.update(run_backup(components=["database"])), daemon=True)
            worker.start()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
                time.sleep(0.2)
            for _ in range(2):
                list(daemon.run_iteration(process_context))
                assert [instance.get_run_by_id(r).status for r in run_ids] == [dg.DagsterRunStatus.QUEUED] * 2
                time.sleep(0.5)
            assert worker.is_alive()
        worker.join(timeout=60)
        assert cli["status"] == "valid", cli

        both_active = False
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            list(daemon.run_iteration(process_context))
            statuses = [instance.get_run_by_id(r).status for r in run_ids]
            both_active |= all(s not in (dg.DagsterRunStatus.QUEUED, *FINISHED) for s in statuses)
            if all(s in FINISHED for s in statuses):
                break
            time.sleep(0.5)
        assert not both_active, "the queue started the second run while the first was in progress"

    first, second = sorted(instance.get_run_records(dg.RunsFilter(run_ids=run_ids)), key=lambda r: r.create_timestamp)
    assert first.dagster_run.status == second.dagster_run.status == dg.DagsterRunStatus.SUCCESS
    assert first.end_time <= second.start_time  # one after the other
    # the pool's limit is kept in PostgreSQL
    with psycopg.connect(dagster_db["url"]) as pg:
        assert pg.execute('SELECT "limit" FROM concurrency_limits WHERE concurrency_key = %s',
                          (PROJECT_POOL,)).fetchall() == [(1,)]


def test_a_rollback_with_its_safety_backup_completes(instance, backup_env, seeded):
    """The rollback op runs its safety backup as a nested backup_job run: the pool must not make it
    wait for the slot the rollback itself holds (as it would forever at `granularity: op`)."""
    backup = run_backup(components=COMPONENTS)
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(rollback(backup["backup_id"], {"components": COMPONENTS})),
                              daemon=True)
    worker.start()
    worker.join(timeout=90)
    if worker.is_alive():  # deadlocked: hand the slots back so the thread can end, then fail
        storage = instance.event_log_storage
        blocked = storage.get_concurrency_info(PROJECT_POOL)
        for run_id in blocked.active_run_ids:
            storage.free_concurrency_slots_for_run(run_id)
        worker.join(timeout=60)
        pytest.fail(f"the rollback waited for its own pool slot: {blocked}")
    assert result["status"] == "restored" and result["safety_backup"], result
    safety = [r for r in instance.get_runs() if r.tags.get("supabackup/pre_rollback_of") == backup["backup_id"]]
    assert [r.status for r in safety] == [dg.DagsterRunStatus.SUCCESS]


def test_the_documented_url_form_loads_with_psycopg2(production_home, dagster_db, monkeypatch):
    """The alternative in the file's comments: one `postgres_url` from DAGSTER_PG_URL, driver written in."""
    config = (production_home / "dagster.yaml").read_text()
    start, end = config.index("    postgres_db:\n"), config.index("      scheme: postgresql+psycopg2\n")
    (production_home / "dagster.yaml").write_text(
        config[:start] + "    postgres_url:\n      env: DAGSTER_PG_URL\n"
        + config[end + len("      scheme: postgresql+psycopg2\n"):])
    monkeypatch.setenv("DAGSTER_PG_URL", dagster_db["url"].replace("postgresql://", "postgresql+psycopg2://"))
    inst = dg.DagsterInstance.get()
    try:
        assert driver_of(inst.run_storage) == "psycopg2"
        assert inst.get_runs() == [] and inst.get_dynamic_partitions(BACKUP_PARTITIONS_NAME) == []
    finally:
        inst.dispose()
