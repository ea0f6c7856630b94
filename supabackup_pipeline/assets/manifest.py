"""The backup's manifest: written after every component, then the backup is published atomically."""


import time
from datetime import datetime

import dagster as dg

from supabackup_pipeline.settings import SCHEDULE_TAG, Group, Tag
from supabackup_pipeline.core.parts import BackupStatus, Parts
from supabackup_pipeline.assets.keys import MANIFEST_KEY
from supabackup_pipeline.assets.refusal import refusal_cancels_run
from supabackup_pipeline.core.backup_id import validate_backup_id
from supabackup_pipeline.core.errors import SupabackupError
from supabackup_pipeline.core.files import disk_full_named
from supabackup_pipeline.core.manifest import write_manifest_and_publish
from supabackup_pipeline.partitions import backup_partitions
from supabackup_pipeline.resources import BackupStorage


TABLES_SCHEMA = dg.TableSchema(columns=[dg.TableColumn("table", "string"), dg.TableColumn("rows", "int"),
                                        dg.TableColumn("bytes", "int")])


class ManifestConfig(dg.Config):
    description: str = ""


def taken_by(tags: dict) -> str:
    """Who took this backup, from its run's tags: a rollback's safety backup, the schedule, the CLI or the UI."""
    if tags.get(Tag.PRE_ROLLBACK_OF):
        return f"safety backup before the rollback to {tags[Tag.PRE_ROLLBACK_OF]}"
    if tags.get(SCHEDULE_TAG):
        return f"schedule {tags[SCHEDULE_TAG]}"
    return "command line" if tags.get(Tag.SOURCE) == "cli" else "Dagster UI (manual)"


def tables_metadata(manifest: dict) -> dg.TableMetadataValue:
    """Rows and bytes (Parquet + sidecar) of every table and users export in the backup."""
    parts = Parts.from_manifest(manifest)
    entries = [*(parts.database.tables if parts.database else []), *(parts.users.tables if parts.users else [])]
    files = manifest["files"]
    records = [dg.TableRecord({"table": t.qualified, "rows": t.rows,
                               "bytes": sum(files.get(p, {}).get("bytes", 0) for p in (t.parquet, t.sidecar))})
               for t in entries]
    return dg.MetadataValue.table(records, schema=TABLES_SCHEMA)


def manifest_metadata(manifest: dict, path, tags: dict, seconds: float) -> dict:
    """What the UI shows per backup (the manifest's partition): status, who took it, when, how long, and per table."""
    return {
        "backup_id": manifest["backup_id"],
        "status": manifest["status"],
        "description": manifest.get("description") or "",
        "taken_by": taken_by(tags),
        "created_at": dg.MetadataValue.timestamp(datetime.fromisoformat(manifest["created_at"])),
        "duration_s": dg.MetadataValue.float(round(seconds, 1)),
        "path": dg.MetadataValue.path(str(path)),
        "components": dg.MetadataValue.json(manifest["components"]),
        "files": dg.MetadataValue.int(len(manifest["files"])),
        "total_size": dg.MetadataValue.int(manifest["total_size"]),
        "tables": tables_metadata(manifest),
    }


def build_manifest_asset(upstream: list[dg.AssetKey]) -> dg.AssetsDefinition:
    @dg.asset(
        key=MANIFEST_KEY, deps=upstream, partitions_def=backup_partitions, group_name=Group.BACKUP,
        kinds={"json"},
        description="metadata.json: id, description, source, snapshot and every file with its SHA-256."
        " Writing it publishes the backup folder in one atomic rename.",
    )
    def backup_manifest(context: dg.AssetExecutionContext, config: ManifestConfig, backups: BackupStorage):
        backup_id = validate_backup_id(context.partition_key)
        store = backups.store()
        with refusal_cancels_run(context):  # a published ID: the run ends canceled, not failed
            store.refuse_published(backup_id)
        if not store.read_parts(backup_id):
            raise SupabackupError(f"backup {backup_id}: no component was written, nothing to publish")
        description = config.description or context.run.tags.get(Tag.DESCRIPTION, "")
        checks = store.read_check_record(backup_id)
        # blocking checks that failed never let this step run; no record means they were not selected
        status = (BackupStatus.VALID if checks and checks["passed"] else BackupStatus.COMPLETE).value
        with disk_full_named(store.root):
            path, manifest = write_manifest_and_publish(store, backup_id, description, status=status, checks=checks)
        context.log.info(f"published backup {backup_id} at {path} ({manifest['total_size']} bytes)")
        started = context.instance.get_run_record_by_id(context.run.run_id).start_time or time.time()
        return dg.MaterializeResult(metadata=manifest_metadata(manifest, path, context.run.tags, time.time() - started))

    return backup_manifest
