"""One dynamic partition per backup: a partition key IS a backup ID."""

import dagster as dg

BACKUP_PARTITIONS_NAME = "backup_ids"

backup_partitions = dg.DynamicPartitionsDefinition(name=BACKUP_PARTITIONS_NAME)

# Dagster concurrency pool of every step that touches the live project (backups and rollbacks):
# set its limit to 1 in dagster.yaml so that only one runs at a time.
PROJECT_POOL = "supabackup_project"
