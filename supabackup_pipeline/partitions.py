"""One dynamic partition per backup: a partition key IS a backup ID."""

import dagster as dg

BACKUP_PARTITIONS_NAME = "backup_ids"

backup_partitions = dg.DynamicPartitionsDefinition(name=BACKUP_PARTITIONS_NAME)
