"""backup_job and its daily schedule."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

import dagster as dg

from supabackup_pipeline.assets.keys import MANIFEST_KEY
from supabackup_pipeline.core.errors import ConfigError
from supabackup_pipeline.core.store import BackupStore
from supabackup_pipeline.partitions import add_backup_partition, discard_unpublished
from supabackup_pipeline.settings import BACKUP_GROUPS, COMPONENT_GROUPS, Tag

DEFAULT_BACKUP_CRON = "0 3 * * *"


def backup_selection(asset_graph, components: list[str]) -> list[dg.AssetKey]:
    """The backup assets of the chosen components (by asset group), plus the manifest: what a backup
    of only some components (`--components`, or a rollback's safety backup) materializes."""
    groups = {COMPONENT_GROUPS[c] for c in components}
    keys = {MANIFEST_KEY} | {
        key for key in asset_graph.get_all_asset_keys()
        if asset_graph.get(key).is_materializable and asset_graph.get(key).group_name in groups
    }
    return sorted(keys, key=lambda k: k.to_user_string())


Result = TypeVar("Result")


def take_backup(instance: dg.DagsterInstance, store: BackupStore, launch: Callable[[str], Result]) -> tuple[str, Result]:
    """One backup outside a schedule (the CLI's, a rollback's safety backup): a new partition, the
    run `launch(backup_id)` that fills it, and, when that run did not publish (failed, refused,
    interrupted), its partition and staging folder removed, so nothing half-made stays behind."""
    backup_id = add_backup_partition(instance, also_taken=store.backup_ids())
    try:
        return backup_id, launch(backup_id)
    finally:
        discard_unpublished(instance, store, backup_id)

# partitioned by backup ID: Dagster infers it from the selected assets
backup_job = dg.define_asset_job(
    "backup_job",
    selection=dg.AssetSelection.groups(*BACKUP_GROUPS),
    description="Take one complete backup (tables, users, storage, manifest) into the partition = backup ID.",
    tags={Tag.KIND: "backup"},
)


def _scheduled_backup(context: dg.ScheduleEvaluationContext):
    # Schedules cannot return dynamic-partition requests in Dagster 1.13: add the partition here.
    backup_id = add_backup_partition(context.instance, when=context.scheduled_execution_time)
    return dg.RunRequest(run_key=backup_id, partition_key=backup_id, tags={Tag.DESCRIPTION: "scheduled"})


def _backup_schedule(cron: str) -> dg.ScheduleDefinition:
    """The daily backup; a malformed SUPABACKUP_BACKUP_CRON is named (the code location cannot load
    without its schedule, and Dagster's own message names neither the variable nor the fix)."""
    try:
        return dg.schedule(job=backup_job, cron_schedule=cron, execution_timezone="UTC", name="backup_schedule",
                           description="Daily backup (SUPABACKUP_BACKUP_CRON, default 03:00 UTC).")(_scheduled_backup)
    except dg.DagsterInvalidDefinitionError:
        raise ConfigError(f"SUPABACKUP_BACKUP_CRON={cron!r} is not a cron schedule: five fields, e.g."
                          f" {DEFAULT_BACKUP_CRON!r} (daily at 03:00 UTC)") from None


backup_schedule = _backup_schedule(os.getenv("SUPABACKUP_BACKUP_CRON", DEFAULT_BACKUP_CRON))
