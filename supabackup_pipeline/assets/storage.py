"""Storage bucket mirrors: one asset per bucket (from the discovery cache) plus `storage_buckets`, all one step.

One step mirrors every selected bucket so that they share one HTTP client, one thread pool budget and
one look-up of the previous backup (whose unchanged objects are hard-linked, not downloaded).
Selecting `storage_buckets` means "every bucket that exists at run time": a bucket created since the
code location loaded is still backed up, and gets its own asset after a reload.
"""

import shutil
import time
from pathlib import Path

import dagster as dg
from pydantic import Field

from supabackup_pipeline.settings import Group
from supabackup_pipeline.assets.keys import STORAGE_BUCKETS_KEY, bucket_key
from supabackup_pipeline.assets.refusal import refusal_cancels_run
from supabackup_pipeline.core.backup_id import validate_backup_id
from supabackup_pipeline.core.discovery_cache import RELOAD_HINT, update_catalog
from supabackup_pipeline.core.files import disk_full_named
from supabackup_pipeline.core.parts import Component, StoragePart
from supabackup_pipeline.core.storage_api import StorageApi
from supabackup_pipeline.core.storage_mirror import (
    STORAGE_DIR,
    BucketGone,
    BucketMirror,
    list_buckets,
    mirror_bucket,
    previous_storage,
    write_storage_manifest,
)
from supabackup_pipeline.core.store import BackupStore
from supabackup_pipeline.partitions import PROJECT_POOL, backup_partitions
from supabackup_pipeline.resources import BackupStorage, SupabaseStorage


class StorageMirrorConfig(dg.Config):
    workers: int = Field(default=8, ge=1, le=64, description="parallel downloads per bucket")


def _mirror_metadata(backup_id: str, mirrors: list[BucketMirror], seconds: float) -> dict:
    missing = sorted(f"{m.bucket['id']}/{name}" for m in mirrors for name in m.missing)
    return {
        "backup_id": backup_id,
        "objects": dg.MetadataValue.int(sum(len(m.objects) - len(m.missing) for m in mirrors)),
        "bytes": dg.MetadataValue.int(sum(m.bytes for m in mirrors)),
        "downloaded_bytes": dg.MetadataValue.int(sum(m.downloaded_bytes for m in mirrors)),
        "linked": dg.MetadataValue.int(sum(m.linked for m in mirrors)),
        "duration_s": dg.MetadataValue.float(round(seconds, 3)),
        "missing": dg.MetadataValue.json(missing[:200]),
    }


def _mirror_selected(api: StorageApi, context: dg.AssetExecutionContext, complete: bool, by_key: dict,
                     store: BackupStore, backup_id: str, out: Path,
                     workers: int) -> tuple[list[BucketMirror], list[str], tuple[str, Path] | None]:
    """Mirror the selected buckets that exist now: (mirrors, selected buckets gone, previous backup linked from)."""
    selected = context.selected_asset_keys
    live = list_buckets(api, log=context.log.info)
    wanted = live if complete else [b for b in live if bucket_key(b["id"]) in selected]
    gone = sorted(name for key, name in by_key.items() if key in selected and name not in {b["id"] for b in live})
    if gone:
        context.log.warning(f"buckets no longer in the project (nothing to back up): {gone}")

    previous = previous_storage(store, exclude=backup_id)
    if previous:
        context.log.info(f"unchanged objects are hard-linked from backup {previous[0]}")
    shutil.rmtree(out, ignore_errors=True)  # a retried step starts clean
    mirrors: list[BucketMirror] = []
    for b in wanted:
        try:
            mirrors.append(mirror_bucket(api, b, out, previous[1] if previous else None, workers=workers,
                                         log=context.log.info))
        except BucketGone as exc:
            context.log.warning(str(exc))
            gone.append(b["id"])
    return mirrors, gone, previous


def _storage_specs(buckets: list[str]) -> list[dg.AssetSpec]:
    """The bucket-list asset, then one asset per bucket (in `buckets`' order)."""
    return [
        dg.AssetSpec(
            STORAGE_BUCKETS_KEY, group_name=Group.STORAGE, kinds={"supabase", "storage"},
            description="The bucket list and storage/manifest.json. Selecting it mirrors every bucket that"
            " exists at run time.",
        ),
        *(dg.AssetSpec(
            bucket_key(name), group_name=Group.STORAGE, kinds={"supabase", "storage"},
            metadata={"bucket": name},
            description=f"Mirror of the Storage bucket {name!r}: every object byte for byte, plus its settings"
            " and object metadata in storage/manifest.json.",
        ) for name in buckets),
    ]


def build_storage_mirror(buckets: list[str]) -> dg.AssetsDefinition:
    specs = _storage_specs(buckets)
    by_key = {spec.key: name for spec, name in zip(specs[1:], buckets)}

    @dg.multi_asset(
        name="storage_mirror", specs=specs, partitions_def=backup_partitions, can_subset=True, pool=PROJECT_POOL,
        description="Mirror Storage buckets in parallel, hard-linking objects unchanged since the previous backup.",
    )
    def storage_mirror(context: dg.AssetExecutionContext, config: StorageMirrorConfig, storage: SupabaseStorage,
                       backups: BackupStorage):
        started = time.monotonic()
        backup_id = validate_backup_id(context.partition_key)
        store = backups.store()
        with refusal_cancels_run(context), disk_full_named(store.root):  # refused: the run ends canceled
            staging = store.start(backup_id)
        selected = context.selected_asset_keys
        complete = STORAGE_BUCKETS_KEY in selected
        out = staging / STORAGE_DIR
        with storage.api() as api, disk_full_named(store.root):  # one HTTP client for the whole step
            mirrors, gone, previous = _mirror_selected(api, context, complete, by_key, store, backup_id, out,
                                                       config.workers)
            manifest_path, manifest_file = write_storage_manifest(out, mirrors, api.project_url)
            files = {path: f for m in mirrors for path, f in m.files.items()}
            files[manifest_path] = manifest_file
            store.write_part(backup_id, Component.STORAGE, StoragePart(
                files=files, complete=complete, previous_backup=previous[0] if previous else None,
                buckets=[m.summary() for m in mirrors], vanished_buckets=gone,
                seconds=round(time.monotonic() - started, 3),
            ).to_json())
        if complete and update_catalog(store.state_dir, buckets=[m.bucket["id"] for m in mirrors]):
            context.log.info(f"the bucket list changed: {RELOAD_HINT}")

        without_asset = sorted(m.bucket["id"] for m in mirrors if bucket_key(m.bucket["id"]) not in by_key)
        if without_asset:
            context.log.info(f"buckets new since the code location loaded (backed up; reload for their assets): {without_asset}")
        if complete:
            yield dg.MaterializeResult(asset_key=STORAGE_BUCKETS_KEY, metadata={
                **_mirror_metadata(backup_id, mirrors, time.monotonic() - started),
                "buckets": dg.MetadataValue.json([m.bucket["id"] for m in mirrors]),
                "buckets_without_asset": dg.MetadataValue.json(without_asset),
                "previous_backup": previous[0] if previous else "",
            })
        for m in mirrors:
            key = bucket_key(m.bucket["id"])
            if key in by_key and key in selected:
                yield dg.MaterializeResult(asset_key=key, metadata={
                    **_mirror_metadata(backup_id, [m], m.seconds),
                    "bucket": m.bucket["id"], "public": m.bucket.get("public", False),
                })
        for key in sorted(k for k in selected if k in by_key and by_key[k] in gone):
            # reported, not skipped: a skipped output would also skip the checks and the manifest
            yield dg.MaterializeResult(asset_key=key, metadata={
                "backup_id": backup_id, "bucket": by_key[key],
                "status": "gone: the bucket no longer exists, nothing was backed up"})

    return storage_mirror
