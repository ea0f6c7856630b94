"""The backup manifest (`metadata.json`): what the backup is and every file in it, with SHA-256.

Each component (database, users, storage) records a *part* while the backup is staged; the
manifest step merges the parts, writes metadata.json and publishes the folder in one rename.
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

from supabackup_pipeline.core.parts import BackupStatus, Parts
from supabackup_pipeline.core.snapshot import utc_now
from supabackup_pipeline.core.store import BackupStore
from supabackup_pipeline.core.verify import seal_manifest

MANIFEST_FORMAT = 1


def tool_version() -> str:
    try:
        return version("supabackup_pipeline")
    except Exception:  # running from a source tree that is not installed
        return "unknown"


def build_manifest(backup_id: str, parts: dict[str, dict], description: str = "",
                   status: str = BackupStatus.COMPLETE.value) -> dict:
    files: dict[str, dict] = {}
    for part in parts.values():
        files.update(part.get("files", {}))
    database = Parts.from_json(parts).database
    return {
        "format": MANIFEST_FORMAT,
        "backup_id": backup_id,
        "description": description,
        "created_at": utc_now(),
        "status": status,
        "tool_version": tool_version(),
        "components": sorted(parts),
        "source": database.source if database else {},
        "snapshot": database.snapshot if database else {},
        "parts": {name: {k: v for k, v in part.items() if k != "files"} for name, part in parts.items()},
        "total_size": sum(f["bytes"] for f in files.values()),
        "files": dict(sorted(files.items())),
    }


def write_manifest_and_publish(
    store: BackupStore, backup_id: str, description: str = "", status: str = BackupStatus.COMPLETE.value,
    checks: dict | None = None
) -> tuple[Path, dict]:
    """Seal the manifest (metadata.json + its checksum) and publish the backup in one rename.

    status: "valid" when the integrity checks passed, "invalid" when one failed (the backup is
    still published, so nothing is lost, but it never counts as a good backup), "complete" when
    the checks did not run.
    """
    manifest = build_manifest(backup_id, store.read_parts(backup_id), description, status)
    if checks is not None:
        manifest["checks"] = checks
    seal_manifest(store.staging(backup_id), manifest)
    return store.publish(backup_id), manifest
