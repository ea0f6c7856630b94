"""Blocking integrity checks on every backup asset: re-read the written files, recompute SHA-256.

All checks are one multi-asset check *step* of their own, after the dumps and mirrors: every
table, the users export and every bucket get their own result, so one bad table cannot hide
which others are fine. A failed check (severity ERROR, blocking) stops the manifest step; this
step then publishes the backup with status `invalid`, so nothing is lost but it never counts as
a good backup (list, rollback, incremental base).
"""

import dagster as dg

from supabackup_pipeline.settings import Tag
from supabackup_pipeline.assets.refusal import refusal_cancels_run
from supabackup_pipeline.assets.keys import DATABASE_SCHEMA_KEY, STORAGE_BUCKETS_KEY, USERS_KEY, bucket_key, table_key
from supabackup_pipeline.core.backup_id import validate_backup_id
from supabackup_pipeline.core.catalog import TableRef
from supabackup_pipeline.core.manifest import write_manifest_and_publish
from supabackup_pipeline.core.parts import BackupStatus, Parts, TableEntry
from supabackup_pipeline.core.snapshot import utc_now
from supabackup_pipeline.core.verify import FileCheck, check_files, check_storage_manifest, check_table_dump
from supabackup_pipeline.resources import BackupStorage

CHECK_NAME = "integrity"


def _files_of(parts: Parts, key: dg.AssetKey) -> tuple[dict[str, dict], list[TableEntry]] | None:
    """The files an asset wrote in this backup, and its table dumps; None if it wrote none."""
    database, users, storage = parts.database, parts.users, parts.storage
    if key == USERS_KEY and users:
        return users.files, users.tables
    if key == STORAGE_BUCKETS_KEY and storage:
        return {p: f for p, f in storage.files.items() if p == "storage/manifest.json"}, []
    for t in database.tables if database else []:
        if table_key(t.schema, t.name) == key:
            return {p: database.files[p] for p in (t.parquet, t.sidecar)}, [t]
    if key == DATABASE_SCHEMA_KEY and database:
        table_files = {p for t in database.tables for p in (t.parquet, t.sidecar)}
        return {p: f for p, f in database.files.items() if p not in table_files}, []
    for b in storage.buckets if storage else []:
        if bucket_key(b.bucket) == key:
            prefix = f"storage/{b.dir}/"
            return {p: f for p, f in storage.files.items() if p.startswith(prefix)}, []
    return None


def check_asset(root, parts: Parts, key: dg.AssetKey) -> FileCheck | None:
    found = _files_of(parts, key)
    if found is None:
        return None
    files, dumps = found
    result = check_files(root, files)
    broken = {p.file for p in result.problems}
    for dump in dumps:
        if dump.parquet not in broken and dump.sidecar not in broken:
            result.problems += check_table_dump(root, dump.parquet, dump.sidecar)
    if key == STORAGE_BUCKETS_KEY and not result.problems:
        result.problems += check_storage_manifest(root, parts.storage.files)
    return result


def build_integrity_checks(tables: list[TableRef], buckets: list[str]) -> dg.AssetChecksDefinition:
    keys = [DATABASE_SCHEMA_KEY, *(table_key(t.schema, t.name) for t in tables), USERS_KEY,
            STORAGE_BUCKETS_KEY, *(bucket_key(b) for b in buckets)]
    specs = [
        dg.AssetCheckSpec(CHECK_NAME, asset=key, blocking=True,
                          description="Re-reads the backup's files for this asset: SHA-256, size, Parquet rows and columns.")
        for key in dict.fromkeys(keys)
    ]

    @dg.multi_asset_check(name="backup_integrity", specs=specs, can_subset=True)
    def backup_integrity(context: dg.AssetCheckExecutionContext, backups: BackupStorage):
        backup_id = validate_backup_id(context.op_execution_context.partition_key)
        store = backups.store()
        with refusal_cancels_run(context.op_execution_context):  # a published ID: canceled, not failed
            store.refuse_published(backup_id)
        root = store.staging(backup_id)
        parts = Parts.from_json(store.read_parts(backup_id))
        outcome = {}
        for check_key in context.selected_asset_check_keys:
            result = check_asset(root, parts, check_key.asset_key)
            if result is None:
                outcome[check_key.asset_key.to_user_string()] = {"passed": True, "note": "nothing written in this run"}
                yield dg.AssetCheckResult(asset_key=check_key.asset_key, check_name=CHECK_NAME, passed=True,
                                          metadata={"backup_id": backup_id, "note": "nothing written in this run"})
                continue
            passed = not result.problems
            outcome[check_key.asset_key.to_user_string()] = {"passed": passed, "problems": [str(p) for p in result.problems]}
            yield dg.AssetCheckResult(
                asset_key=check_key.asset_key, check_name=CHECK_NAME, passed=passed,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={
                    "backup_id": backup_id,
                    "files_checked": dg.MetadataValue.int(result.files_checked),
                    "bytes_read": dg.MetadataValue.int(result.bytes_read),
                    "mismatches": dg.MetadataValue.json({p.file: p.problem for p in result.problems}),
                },
            )
        record = {"checked_at": utc_now(), "passed": all(o["passed"] for o in outcome.values()), "assets": outcome}
        store.write_check_record(backup_id, record)
        if not record["passed"]:
            failed = sorted(k for k, o in outcome.items() if not o["passed"])
            context.log.error(f"backup {backup_id} failed its integrity checks ({', '.join(failed)}): published as invalid")
            write_manifest_and_publish(store, backup_id, context.run.tags.get(Tag.DESCRIPTION, ""),
                                       status=BackupStatus.INVALID.value, checks=record)

    return backup_integrity
