"""validate_backup_job: re-verify a published backup, on demand, from the UI or `supabackup verify`."""

import dagster as dg

from supabackup_pipeline.code_location import ONE_STEP_AFTER_ANOTHER
from supabackup_pipeline.settings import Tag
from supabackup_pipeline.assets.keys import MANIFEST_KEY
from supabackup_pipeline.core.backup_id import validate_backup_id
from supabackup_pipeline.core.errors import BackupNotFound
from supabackup_pipeline.core.verify import record_verification, verify_backup
from supabackup_pipeline.partitions import backup_partitions
from supabackup_pipeline.resources import BackupStorage


class VerifyConfig(dg.Config):
    quick: bool = False  # sizes and presence only, no hashing: never reports the backup valid


@dg.op(description="Re-read every file of the backup and check it against the manifest (and the manifest itself).")
def verify_backup_files(context: dg.OpExecutionContext, config: VerifyConfig, backups: BackupStorage):
    backup_id = validate_backup_id(context.partition_key)
    store = backups.store()
    if not store.exists(backup_id):
        raise BackupNotFound(f"unknown backup ID {backup_id}: no backup with that ID in {store.root}")
    root = store.published(backup_id)
    report = verify_backup(root, quick=config.quick)
    unkept = record_verification(root, report)
    if unkept:
        context.log.warning(unkept)
    metadata = {
        "backup_id": backup_id,
        "status": report.status,
        "quick": report.quick,
        "verified_at": report.verified_at,
        "files_checked": dg.MetadataValue.int(report.files_checked),
        "bytes_read": dg.MetadataValue.int(report.bytes_read),
        "problems": dg.MetadataValue.json({p.file: p.problem for p in report.problems}),
        "report": dg.MetadataValue.json(report.to_json()),  # whole, for the CLI when the backup's folder could not keep it
    }
    context.log_event(dg.AssetObservation(asset_key=MANIFEST_KEY, partition=backup_id, metadata=metadata))
    if report.problems:
        raise dg.Failure(
            description=f"backup {backup_id} is NOT valid: " + "; ".join(str(p) for p in report.problems[:20]),
            metadata=metadata,
        )
    outcome = "has every file with its size (quick: content not read, so not called valid)" if report.quick else "is valid"
    context.log.info(f"backup {backup_id} {outcome} ({report.files_checked} files, {report.bytes_read} bytes read)")


@dg.job(partitions_def=backup_partitions, tags={Tag.KIND: "verify"}, executor_def=ONE_STEP_AFTER_ANOTHER,
        description="Verify one backup (choose its ID as the partition): every file against the manifest.")
def validate_backup_job():
    verify_backup_files()
