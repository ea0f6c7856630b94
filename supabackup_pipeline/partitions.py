"""One dynamic partition per backup: a partition key IS a backup ID. A partition is added when a
backup starts and removed when the backup does not publish, so a partition always names a backup
(or one being taken)."""

from collections.abc import Iterable
from datetime import datetime

import dagster as dg

from supabackup_pipeline.core.backup_id import unique_backup_id
from supabackup_pipeline.core.store import BackupStore

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


def discard_unpublished(instance: dg.DagsterInstance, store: BackupStore, backup_id: str) -> bool:
    """A backup that never published: remove its staging folder and its partition. True if it was one."""
    if store.exists(backup_id):
        return False
    store.discard(backup_id)
    forget_partition(instance, backup_id)
    return True


def forget_partition(instance: dg.DagsterInstance, key: str) -> None:
    """Remove one partition of `backup_ids` (if it is there)."""
    if instance.has_dynamic_partition(BACKUP_PARTITIONS_NAME, key):
        instance.delete_dynamic_partition(BACKUP_PARTITIONS_NAME, key)
