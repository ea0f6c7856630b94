"""backup_job and its daily schedule."""

from __future__ import annotations

import os

import dagster as dg

from supabackup_pipeline.settings import BACKUP_GROUPS, Tag
from supabackup_pipeline.core.backup_id import unique_backup_id
from supabackup_pipeline.partitions import BACKUP_PARTITIONS_NAME

DEFAULT_BACKUP_CRON = "0 3 * * *"

# partitioned by backup ID: Dagster infers it from the selected assets
backup_job = dg.define_asset_job(
    "backup_job",
    selection=dg.AssetSelection.groups(*BACKUP_GROUPS),
    description="Take one complete backup (tables, users, storage, manifest) into the partition = backup ID.",
    tags={Tag.KIND: "backup"},
)


@dg.schedule(
    job=backup_job,
    cron_schedule=os.getenv("SUPABACKUP_BACKUP_CRON", DEFAULT_BACKUP_CRON),
    execution_timezone="UTC",
    description="Daily backup (SUPABACKUP_BACKUP_CRON, default 03:00 UTC).",
)
def backup_schedule(context: dg.ScheduleEvaluationContext):
    # Schedules cannot return dynamic-partition requests in Dagster 1.13: add the partition here.
    existing = set(context.instance.get_dynamic_partitions(BACKUP_PARTITIONS_NAME))
    backup_id = unique_backup_id(existing, context.scheduled_execution_time)
    context.instance.add_dynamic_partitions(BACKUP_PARTITIONS_NAME, [backup_id])
    return dg.RunRequest(run_key=backup_id, partition_key=backup_id, tags={Tag.DESCRIPTION: "scheduled"})
