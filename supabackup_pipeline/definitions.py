"""The Dagster code location: assets, checks, jobs, schedules and resources wired together.

Loading this module never touches the database or Storage: the table and bucket lists come from
the discovery cache in BACKUP_PATH/.state (see core/discovery_cache.py).
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from supabackup_pipeline import settings
from supabackup_pipeline.assets.database import build_database_dump, live_table_specs
from supabackup_pipeline.assets.manifest import build_manifest_asset
from supabackup_pipeline.assets.storage import build_storage_mirror
from supabackup_pipeline.checks.integrity import build_integrity_checks
from supabackup_pipeline.code_location import STEP_PROCESSES
from supabackup_pipeline.console import phase_logger
from supabackup_pipeline.core.catalog import TableRef
from supabackup_pipeline.core.discovery_cache import read_catalog
from supabackup_pipeline.core.store import BackupStore
from supabackup_pipeline.jobs.backup import backup_job, backup_schedule
from supabackup_pipeline.jobs.retention import (
    delete_backup_job, discard_canceled_backup, discard_failed_backup, prune_after_backup, prune_job,
    reject_invalid_partitions,
)
from supabackup_pipeline.jobs.rollback import build_rollback_job
from supabackup_pipeline.jobs.validate import validate_backup_job
from supabackup_pipeline.resources import BackupStorage, SupabaseDatabase, SupabaseStorage


def build_definitions(backup_path: str | None = None) -> dg.Definitions:
    backup_path = backup_path or str(settings.backup_path())
    catalog = read_catalog(BackupStore(Path(backup_path).expanduser().resolve()).state_dir)
    tables = [TableRef(schema, name) for schema, name in catalog["tables"]]
    database_dump = build_database_dump(tables)
    storage_mirror = build_storage_mirror(catalog["buckets"])
    manifest = build_manifest_asset([*database_dump.keys, *storage_mirror.keys])
    defs = dg.Definitions(
        assets=[*live_table_specs(tables), database_dump, storage_mirror, manifest],
        asset_checks=[build_integrity_checks(tables, catalog["buckets"])],
        jobs=[backup_job, validate_backup_job, build_rollback_job(lambda: defs), delete_backup_job, prune_job],
        sensors=[prune_after_backup, discard_failed_backup, discard_canceled_backup, reject_invalid_partitions],
        schedules=[backup_schedule],
        executor=STEP_PROCESSES,  # for the jobs without their own: backup_job, rollback_job
        loggers={"phases": phase_logger},  # the CLI's quiet output, chosen in its runs' config
        resources={
            "database": SupabaseDatabase(
                db_url=dg.EnvVar("SUPABASE_DB_URL"), schemas=settings.schemas_setting()
            ),
            "storage": SupabaseStorage(url=dg.EnvVar("SUPABASE_URL"), service_role_key=dg.EnvVar("SUPABASE_SERVICE_ROLE_KEY")),
            "backups": BackupStorage(backup_path=backup_path, temp_path=settings.temp_path()),
        },
    )
    return defs


defs = build_definitions()
