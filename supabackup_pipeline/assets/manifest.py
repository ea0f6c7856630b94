"""The backup's manifest: written after every component, then the backup is published atomically."""


import dagster as dg

from supabackup_pipeline.settings import Group, Tag
from supabackup_pipeline.core.parts import BackupStatus
from supabackup_pipeline.assets.keys import MANIFEST_KEY
from supabackup_pipeline.assets.refusal import refusal_cancels_run
from supabackup_pipeline.core.backup_id import validate_backup_id
from supabackup_pipeline.core.errors import SupabackupError
from supabackup_pipeline.core.manifest import write_manifest_and_publish
from supabackup_pipeline.partitions import backup_partitions
from supabackup_pipeline.resources import BackupStorage


class ManifestConfig(dg.Config):
    description: str = ""


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
        path, manifest = write_manifest_and_publish(store, backup_id, description, status=status, checks=checks)
        context.log.info(f"published backup {backup_id} at {path} ({manifest['total_size']} bytes)")
        return dg.MaterializeResult(metadata={
            "backup_id": backup_id,
            "path": dg.MetadataValue.path(str(path)),
            "status": manifest["status"],
            "components": dg.MetadataValue.json(manifest["components"]),
            "files": dg.MetadataValue.int(len(manifest["files"])),
            "total_size": dg.MetadataValue.int(manifest["total_size"]),
        })

    return backup_manifest
