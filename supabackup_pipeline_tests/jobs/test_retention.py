"""Retention and deletion: the policy keeps what it should, deleting never damages another backup."""

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import dagster as dg
import pytest

from supabackup_pipeline.core.retention import RetentionPolicy, plan_retention
from supabackup_pipeline.core.store import BackupStore
from supabackup_pipeline.core.verify import seal_manifest, verify_backup
from supabackup_pipeline.jobs.retention import prune_after_backup
from supabackup_pipeline.operations import run_backup
from supabackup_pipeline.partitions import BACKUP_PARTITIONS_NAME


def fake_backup(store: BackupStore, backup_id: str, status: str = "valid", description: str = "",
                components: tuple[str, ...] = ("database",), partial: tuple[str, ...] = ()) -> None:
    """A published backup's manifest; `partial`: components of which only some assets were made."""
    root = store.published(backup_id)
    root.mkdir(parents=True)
    parts = {c: {"complete": c not in partial} for c in components if c != "users"}
    seal_manifest(root, {"backup_id": backup_id, "status": status, "description": description, "files": {},
                         "total_size": 0, "components": list(components), "parts": parts})


def test_policy_keeps_last_daily_weekly_monthly_and_never_counts_invalid(tmp_path):
    store = BackupStore(tmp_path)
    ids = ["20260105T030000Z", "20260112T030000Z", "20260119T030000Z", "20260126T030000Z",  # Mondays, 4 ISO weeks
           "20260201T030000Z", "20260201T150000Z",  # two on one day
           "20260202T030000Z", "20260203T030000Z", "20260204T030000Z"]
    for backup_id in ids:
        fake_backup(store, backup_id)
    fake_backup(store, "20260205T030000Z", status="invalid")

    kept, forget = plan_retention(store, RetentionPolicy(keep_last=2, keep_daily=0, keep_weekly=0, keep_monthly=0))
    assert sorted(kept) == ["20260203T030000Z", "20260204T030000Z"]  # the invalid newest one does not count
    assert forget["20260205T030000Z"].startswith("invalid")

    kept, _ = plan_retention(store, RetentionPolicy(keep_last=0, keep_daily=3, keep_weekly=0, keep_monthly=0))
    assert sorted(kept) == ["20260202T030000Z", "20260203T030000Z", "20260204T030000Z"]

    kept, _ = plan_retention(store, RetentionPolicy(keep_last=1, keep_daily=0, keep_weekly=3, keep_monthly=2))
    # weekly: newest of ISO weeks W06 (Feb 4), W05 (Sunday Feb 1 15:00), W04 (Jan 19);
    # monthly: newest of February (Feb 4) and January (Jan 26); last: Feb 4
    assert sorted(kept) == ["20260119T030000Z", "20260126T030000Z", "20260201T150000Z", "20260204T030000Z"]
    assert "monthly 2026-01" in kept["20260126T030000Z"] and "weekly 2026-W05" in kept["20260201T150000Z"]

    with pytest.raises(Exception, match="keeps nothing"):
        plan_retention(store, RetentionPolicy(0, 0, 0, 0))


def test_the_policy_counts_each_component_and_never_a_partial_backup(tmp_path):
    """Seven backups of one bucket after the only whole backup (the prune after each backup) made
    keep-last 7 delete the whole one; so would seven database-only backups for its Storage."""
    store = BackupStore(tmp_path)
    whole = "20260101T000000Z"
    fake_backup(store, whole, components=("database", "users", "storage"))
    partial = [f"202601{d:02d}T000000Z" for d in range(2, 9)]
    for backup_id in partial:
        fake_backup(store, backup_id, components=("storage",), partial=("storage",))
    database_only = [f"202601{d:02d}T000000Z" for d in range(10, 17)]
    for backup_id in database_only:
        fake_backup(store, backup_id, components=("database", "users"))

    kept, forget = plan_retention(store, RetentionPolicy(keep_last=3, keep_daily=0, keep_weekly=0, keep_monthly=0))

    assert kept[whole] == ["last"]  # the newest whole storage
    assert set(kept) == {whole, *partial, *database_only[-3:]}
    assert kept[partial[0]][0].startswith("partial (storage: some tables or buckets)")
    assert set(forget) == set(database_only[:-3])


def test_a_safety_backup_lives_as_long_as_the_backups_around_it(tmp_path):
    store = BackupStore(tmp_path)
    for backup_id in ("20260101T000000Z", "20260102T000000Z", "20260103T000000Z"):
        fake_backup(store, backup_id)
    fake_backup(store, "20260102T120000Z", description="pre-rollback of 20260101T000000Z")
    kept, _ = plan_retention(store, RetentionPolicy(keep_last=2, keep_daily=0, keep_weekly=0, keep_monthly=0))
    assert "20260102T120000Z" in kept  # newer than the oldest kept backup
    kept, _ = plan_retention(store, RetentionPolicy(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0))
    assert "20260102T120000Z" not in kept


def _cli(args, env):
    return subprocess.run([sys.executable, "-m", "supabackup_pipeline", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=240)


def test_delete_and_prune_never_damage_other_backups(backup_env, supabase_client, tmp_path, monkeypatch, project_db_url):
    import psycopg

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    env = {**backup_env, "DAGSTER_HOME": str(tmp_path / "home")}
    with psycopg.connect(project_db_url, autocommit=True) as db:
        db.execute("CREATE TABLE IF NOT EXISTS public.kept (id int); INSERT INTO public.kept VALUES (1)")
    bucket = f"ret-{uuid.uuid4().hex[:6]}"
    supabase_client.storage.create_bucket(bucket)
    supabase_client.storage.from_(bucket).upload("shared.bin", os.urandom(10_000))
    try:
        first, second, third = (run_backup(description=str(i)) for i in range(3))
        assert {b["status"] for b in (first, second, third)} == {"valid"}
        store = BackupStore(Path(backup_env["BACKUP_PATH"]).resolve())
        shared = Path(second["path"]) / "storage" / bucket / "shared.bin"
        assert shared.stat().st_nlink == 3  # one file, hard-linked into all three backups

        done = _cli(["delete", first["backup_id"]], env)  # no terminal and no --yes
        assert done.returncode == 2 and "--yes" in done.stderr
        done = _cli(["delete", first["backup_id"], "--yes"], env)
        assert done.returncode == 0, done.stderr[-2000:]
        assert first["backup_id"] not in store.backup_ids()
        assert shared.stat().st_nlink == 2 and verify_backup(Path(second["path"])).valid
        instance = dg.DagsterInstance.get()
        assert first["backup_id"] not in instance.get_dynamic_partitions(BACKUP_PARTITIONS_NAME)

        done = _cli(["prune", "--keep-last", "1", "--keep-weekly", "0", "--dry-run", "--json"], env)
        assert json.loads(done.stdout)["forget"] == {second["backup_id"]: "not kept by the policy"}
        assert second["backup_id"] in store.backup_ids()  # a dry run deletes nothing
        done = _cli(["prune", "--keep-last", "1", "--keep-weekly", "0", "--yes", "--json"], env)
        assert done.returncode == 0, done.stderr[-2000:]
        assert store.backup_ids() == [third["backup_id"]]
        assert verify_backup(Path(third["path"])).valid and shared.exists() is False
        assert (Path(third["path"]) / "storage" / bucket / "shared.bin").stat().st_nlink == 1

        done = _cli(["delete", third["backup_id"], "--yes"], env)  # the only valid backup
        assert done.returncode == 2 and "only valid backup" in done.stderr  # refused, said on stderr
        assert store.backup_ids() == [third["backup_id"]]
        assert _cli(["delete", third["backup_id"], "--yes", "--force"], env).returncode == 0
        assert store.backup_ids() == []
        assert _cli(["delete", "20990101T000000Z", "--yes"], env).returncode == 2
    finally:
        supabase_client.storage.empty_bucket(bucket)
        supabase_client.storage.delete_bucket(bucket)


def test_the_sensor_requests_a_prune_after_each_successful_backup():
    with dg.instance_for_test() as instance:
        run = instance.create_run_for_job(dg.JobDefinition(
            graph_def=dg.GraphDefinition(name="backup_job", node_defs=[])), run_id=None)
        context = dg.build_run_status_sensor_context(
            sensor_name="prune_after_backup", dagster_instance=instance, dagster_run=run,
            dagster_event=dg.DagsterEvent(event_type_value="PIPELINE_SUCCESS", job_name="backup_job"),
        )
        request = prune_after_backup(context)
        assert isinstance(request, dg.RunRequest) and request.run_key == f"prune-after-{run.run_id}"


def test_a_backup_taken_with_the_cli_triggers_the_prune_sensor(backup_env, tmp_path, monkeypatch):
    """The daemon evaluates the sensor against the code location; CLI runs are in-process runs
    with no code location, and they must count too (cron + `supabackup backup`). Runs of other jobs
    that ended first must not hold the prune back by a tick each."""
    from supabackup_pipeline.definitions import build_definitions

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    defs = build_definitions(backup_env["BACKUP_PATH"])
    instance = dg.DagsterInstance.get()
    first = prune_after_backup.evaluate_tick(_daemon_sensor_context(instance, defs))
    assert not first.run_requests  # the first tick only sets the cursor
    for _ in range(3):  # e.g. validations and rollbacks, ending before the backup
        assert _a_job_that_is_not_a_backup().execute_in_process(instance=instance).success
    result = run_backup(components=["database"], instance=instance)
    assert result["status"] == "valid"
    tick = prune_after_backup.evaluate_tick(_daemon_sensor_context(instance, defs, first.cursor))
    assert [r.run_key for r in tick.run_requests] == [f"prune-after-{result['run_id']}"]


def _a_job_that_is_not_a_backup() -> dg.JobDefinition:
    @dg.op
    def nothing():
        pass

    @dg.job
    def validate_backup_job():
        nothing()

    return validate_backup_job


def _daemon_sensor_context(instance, defs, cursor=None):
    """A sensor context as the daemon builds it: the sensor lives in a code location. Dagster's public
    `build_sensor_context` has no code-location origin, and without one a run status sensor does not
    filter runs by location at all, so the test could not fail: hence these internals."""
    from dagster._core.definitions.sensor_definition import SensorEvaluationContext
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(python_file=None, module_name="supabackup_pipeline.definitions"),
        location_name="supabackup_pipeline.definitions")
    repository = defs.get_repository_def()
    return SensorEvaluationContext(instance_ref=None, cursor=cursor, repository_name=repository.name,
                                   repository_def=repository, instance=instance, code_location_origin=origin)


def test_partitions_that_are_not_backup_ids_are_removed_early_with_the_expected_format():
    from supabackup_pipeline.jobs.retention import reject_invalid_partitions

    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(BACKUP_PARTITIONS_NAME, ["before-migration", "20261127T174302Z"])
        result = reject_invalid_partitions.evaluate_tick(dg.build_sensor_context(instance=instance))
        assert instance.get_dynamic_partitions(BACKUP_PARTITIONS_NAME) == ["20261127T174302Z"]
        assert "'before-migration'" in result.skip_message and "20261127T174302Z" in result.skip_message
