"""Deleting backups: delete_backup_job (one backup, chosen as the partition), prune_job (the
retention policy, plus what failed runs left behind), the sensor that prunes after every
successful backup, the ones that clean up after a failed or canceled one, and the one that
removes partitions that are not backup IDs."""

from datetime import datetime, timezone

import dagster as dg
from pydantic import Field

from supabackup_pipeline.code_location import ONE_STEP_AFTER_ANOTHER
from supabackup_pipeline.settings import PARTITION_TAG, Tag, retention_policy
from supabackup_pipeline.assets.keys import (
    DATABASE_SCHEMA_KEY, MANIFEST_KEY, STORAGE_BUCKETS_KEY, USERS_KEY, bucket_key, table_key,
)
from supabackup_pipeline.core.parts import Parts
from supabackup_pipeline.core.backup_id import backup_id_time, is_backup_id, validate_backup_id
from supabackup_pipeline.core.retention import RetentionPolicy, delete_backup_files, plan_retention
from supabackup_pipeline.core.staging import StagingHeld
from supabackup_pipeline.core.store import BackupStore
from supabackup_pipeline.jobs.backup import backup_job
from supabackup_pipeline.partitions import BACKUP_PARTITIONS_NAME, backup_partitions, discard_unpublished, forget_partition
from supabackup_pipeline.resources import BackupStorage


def forget_in_dagster(instance: dg.DagsterInstance, asset_keys, backup_id: str) -> bool:
    """Remove the backup's partition and wipe its asset partitions, so the UI no longer offers it.

    Returns False when the instance's event log cannot wipe single partitions (Dagster's SQLite
    storage cannot): the old materializations then stay in the history, the partition is gone.
    """
    wiped = True
    for key in asset_keys:
        try:
            instance.wipe_asset_partitions(key, [backup_id])
        except NotImplementedError:
            wiped = False
            break
    forget_partition(instance, backup_id)
    return wiped


EXAMPLE_ID = "20261127T174302Z"
UNLAUNCHED_GRACE_S = 3600  # a partition with no backup, no staging and no run: kept this long
UNFINISHED = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
              dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


def _has_unfinished_run(instance: dg.DagsterInstance, partition: str) -> bool:
    runs = instance.get_runs(dg.RunsFilter(tags={PARTITION_TAG: partition}, statuses=UNFINISHED), limit=1)
    return bool(runs)


def _orphan_reason(instance: dg.DagsterInstance, store: BackupStore, key: str) -> str | None:
    """Why a partition with no published backup is left over, or None while a run may still use it."""
    if not is_backup_id(key):
        return "not a backup ID"
    if key in store.staging_ids():
        return None if store.staging_alive(key) else "its run died before publishing"
    if _has_unfinished_run(instance, key):
        return None
    age = (datetime.now(timezone.utc) - backup_id_time(key)).total_seconds()
    return "no backup was published" if age > UNLAUNCHED_GRACE_S else None


def find_leftovers(instance: dg.DagsterInstance, store: BackupStore) -> dict:
    """What failed or interrupted runs left: stale staging folders (with bytes) and partitions with no backup."""
    published = set(store.backup_ids())
    staging = {b: store.staging_size(b) for b in store.stale_staging()}
    partitions = {}
    for key in instance.get_dynamic_partitions(BACKUP_PARTITIONS_NAME):
        reason = None if key in published else _orphan_reason(instance, store, key)
        if reason:
            partitions[key] = reason
    return {"stale_staging": staging, "orphan_partitions": partitions}


def clean_leftovers(instance: dg.DagsterInstance, store: BackupStore, leftovers: dict) -> None:
    """Remove the stale staging folders and orphan partitions `find_leftovers` found."""
    for backup_id in leftovers["stale_staging"]:
        store.discard(backup_id)
    for key in leftovers["orphan_partitions"]:
        forget_partition(instance, key)


def _backup_asset_keys(store: BackupStore, backup_id: str) -> list[dg.AssetKey]:
    """The assets that hold a partition for this backup: the ones its manifest records."""
    parts = Parts.from_manifest(store.manifest(backup_id)) if store.exists(backup_id) else Parts()
    keys = [DATABASE_SCHEMA_KEY, USERS_KEY, STORAGE_BUCKETS_KEY, MANIFEST_KEY]
    keys += [table_key(t.schema, t.name) for t in parts.database.tables] if parts.database else []
    keys += [bucket_key(b.bucket) for b in parts.storage.buckets] if parts.storage else []
    return keys


class DeleteConfig(dg.Config):
    force: bool = Field(default=False, description="also delete the only valid backup")


@dg.op(description="Delete the backup's files (shared hard links stay with the other backups), partition and asset partitions.")
def delete_backup(context: dg.OpExecutionContext, config: DeleteConfig, backups: BackupStorage):
    backup_id = validate_backup_id(context.partition_key)
    store = backups.store()
    keys = _backup_asset_keys(store, backup_id)
    size = delete_backup_files(store, backup_id, force=config.force)
    wiped = forget_in_dagster(context.instance, keys, backup_id)
    context.log.info(f"deleted backup {backup_id} ({size} bytes)"
                     + ("" if wiped else "; this instance's storage keeps its past materializations in the history"))
    return dg.Output(None, metadata={"backup_id": backup_id, "bytes": dg.MetadataValue.int(size),
                                     "asset_partitions_wiped": wiped})


@dg.job(partitions_def=backup_partitions, tags={Tag.KIND: "delete"}, executor_def=ONE_STEP_AFTER_ANOTHER,
        description="Delete the backup chosen as the partition (refuses the only valid backup unless force).")
def delete_backup_job():
    delete_backup()


class PruneConfig(dg.Config):
    keep_last: int = Field(default_factory=lambda: retention_policy().keep_last)
    keep_daily: int = Field(default_factory=lambda: retention_policy().keep_daily)
    keep_weekly: int = Field(default_factory=lambda: retention_policy().keep_weekly)
    keep_monthly: int = Field(default_factory=lambda: retention_policy().keep_monthly)
    dry_run: bool = False


@dg.op(description="Apply the retention policy: delete every backup it does not keep.")
def prune_backups(context: dg.OpExecutionContext, config: PruneConfig, backups: BackupStorage):
    store = backups.store()
    policy = RetentionPolicy(config.keep_last, config.keep_daily, config.keep_weekly, config.keep_monthly)
    kept, forget = plan_retention(store, policy)
    leftovers = find_leftovers(context.instance, store)
    deleted = []
    if not config.dry_run:
        for backup_id in sorted(forget):
            keys = _backup_asset_keys(store, backup_id)
            delete_backup_files(store, backup_id, force=True)  # the policy keeps the newest valid ones
            forget_in_dagster(context.instance, keys, backup_id)
            deleted.append(backup_id)
            context.log.info(f"deleted {backup_id}: {forget[backup_id]}")
        clean_leftovers(context.instance, store, leftovers)
    return dg.Output(None, metadata={
        "kept": dg.MetadataValue.json(kept), "forget": dg.MetadataValue.json(forget),
        "deleted": dg.MetadataValue.json(deleted), "dry_run": config.dry_run,
        "leftovers": dg.MetadataValue.json(leftovers),
    })


@dg.job(tags={Tag.KIND: "prune"}, executor_def=ONE_STEP_AFTER_ANOTHER, description="Apply the retention policy (SUPABACKUP_KEEP_* or run config).")
def prune_job():
    prune_backups()


# How often the daemon asks the run-status sensors below for the runs that ended since: a prune or
# a cleanup follows its run within ~10 s instead of Dagster's default 30 s. A tick reads only the
# instance's new run events.
RUN_STATUS_SENSOR_INTERVAL_S = 10


def is_backup_run(run: dg.DagsterRun) -> bool:
    """A backup_job run, launched from anywhere: the UI, a schedule or the CLI. CLI runs carry the
    code location's origin (code_location.py), but a workspace may name the location differently
    from the CLI's, so the sensors below watch every location and pick these by name."""
    return run.job_name == backup_job.name


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS, monitor_all_code_locations=True, request_job=prune_job,
    default_status=dg.DefaultSensorStatus.RUNNING, minimum_interval_seconds=RUN_STATUS_SENSOR_INTERVAL_S,
    description="After each successful backup (UI, schedule or CLI), apply the retention policy.",
)
def prune_after_backup(context: dg.RunStatusSensorContext):
    # None, not a SkipReason, for other runs: Dagster ends the tick at the first run the function
    # returns something for, so a SkipReason per validate or rollback run delayed the prune after a
    # backup by one tick per run that ended before it.
    if is_backup_run(context.dagster_run):
        return dg.RunRequest(run_key=f"prune-after-{context.dagster_run.run_id}")
    return None


def _discard_ended_backup(context: dg.RunStatusSensorContext, backups: BackupStorage) -> None:
    """A backup run that ended without publishing: its staging folder and partition go."""
    partition = context.dagster_run.tags.get(PARTITION_TAG)
    if not is_backup_run(context.dagster_run) or not partition:
        return
    if not is_backup_id(partition):
        forget_partition(context.instance, partition)
    elif StagingHeld.MARK in context.dagster_run.tags.get(Tag.REFUSED, ""):
        return  # refused because another live run writes that ID: its folder and partition are that run's
    elif discard_unpublished(context.instance, backups.store(), partition):
        context.log.info(f"removed the staging folder and partition of backup {partition} (its run ended unpublished)")


@dg.run_failure_sensor(
    monitor_all_code_locations=True, default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=RUN_STATUS_SENSOR_INTERVAL_S,
    description="After a failed backup, remove its staging folder and its partition (nothing was published).",
)
def discard_failed_backup(context: dg.RunFailureSensorContext, backups: BackupStorage):
    _discard_ended_backup(context, backups)


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.CANCELED, monitor_all_code_locations=True,
    default_status=dg.DefaultSensorStatus.RUNNING, minimum_interval_seconds=RUN_STATUS_SENSOR_INTERVAL_S,
    description="After a canceled backup, remove its staging folder and its partition (nothing was published).",
)
def discard_canceled_backup(context: dg.RunStatusSensorContext, backups: BackupStorage):
    _discard_ended_backup(context, backups)


@dg.sensor(minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Remove partitions that are not backup IDs (e.g. typed into the UI's Add partition).")
def reject_invalid_partitions(context: dg.SensorEvaluationContext):
    invalid = [k for k in context.instance.get_dynamic_partitions(BACKUP_PARTITIONS_NAME) if not is_backup_id(k)]
    for key in invalid:
        forget_partition(context.instance, key)
    if invalid:
        return dg.SkipReason(f"removed partition(s) {', '.join(map(repr, invalid))}: a partition is a backup ID,"
                             f" a UTC timestamp like {EXAMPLE_ID} (optionally with a -xxxx hex suffix)")
    return dg.SkipReason("every partition is a backup ID")
