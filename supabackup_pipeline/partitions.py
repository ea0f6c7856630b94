"""One dynamic partition per backup: a partition key IS a backup ID."""

from collections.abc import Iterable
from datetime import datetime

import dagster as dg

from supabackup_pipeline.core.backup_id import unique_backup_id

BACKUP_PARTITIONS_NAME = "backup_ids"

backup_partitions = dg.DynamicPartitionsDefinition(name=BACKUP_PARTITIONS_NAME)

# Dagster concurrency pool of every step that touches the live project (backups and rollbacks):
# set its limit to 1 in dagster.yaml so that only one runs at a time.
PROJECT_POOL = "supabackup_project"


def add_backup_partition(instance: dg.DagsterInstance, also_taken: Iterable[str] = (), when: datetime | None = None) -> str:
    """A new backup ID, added as a partition: unique among the partitions and `also_taken` (IDs of
    backups on disk), so two backups started in the same second never share one."""
    existing = set(instance.get_dynamic_partitions(BACKUP_PARTITIONS_NAME)) | set(also_taken)
    backup_id = unique_backup_id(existing, when)
    instance.add_dynamic_partitions(BACKUP_PARTITIONS_NAME, [backup_id])
    return backup_id
