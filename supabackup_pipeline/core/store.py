"""The backup folder: where each backup lives, how it is staged and published atomically.

    BACKUP_PATH/
      <backup-id>/            a published backup: always complete (one rename publishes it)
        metadata.json         the manifest: every file with its size and SHA-256
        database/             <schema>.<table>.parquet + .json, schema.sql, sequences.json
        users/                auth.users, auth.identities, ... as Parquet + JSON
        storage/              manifest.json and <bucket>/<object name> mirrors
      .staging/<backup-id>/   a backup being written (same layout, plus parts/)
      .staging/<backup-id>.owner.json   host and PID of the run writing it (see core/staging.py)
      .state/catalog.json     tables and buckets last discovered (read when definitions load)

Staging lives on the same file system as the published backups, so publishing is one atomic
rename and storage mirrors can hard-link unchanged objects from earlier backups.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from supabackup_pipeline.core.backup_id import is_backup_id, validate_backup_id
from supabackup_pipeline.core.errors import BackupExists, BackupNotFound, SupabackupError
from supabackup_pipeline.core.files import fsync_path, make_private_dir, write_json
from supabackup_pipeline.core.staging import OWNER_SUFFIX, claim, owner_alive

MANIFEST = "metadata.json"
PARTS = "parts"
CHECKS = "_checks"


@dataclass(frozen=True)
class BackupStore:
    root: Path

    @property
    def staging_root(self) -> Path:
        return self.root / ".staging"

    @property
    def state_dir(self) -> Path:
        return self.root / ".state"

    def published(self, backup_id: str) -> Path:
        return self.root / validate_backup_id(backup_id)

    def staging(self, backup_id: str) -> Path:
        return self.staging_root / validate_backup_id(backup_id)

    def exists(self, backup_id: str) -> bool:
        return (self.published(backup_id) / MANIFEST).is_file()

    def refuse_published(self, backup_id: str) -> None:
        """A backup run may not write under an ID that is already published (or being deleted into it)."""
        if self.published(backup_id).exists():
            raise BackupExists(f"backup {backup_id} already exists in {self.root}; it is never overwritten"
                               " (a new backup needs a new partition, i.e. a new backup ID)")

    def start(self, backup_id: str) -> Path:
        """The staging folder of a backup being made (created 0700). Refuses a published ID."""
        self.refuse_published(backup_id)
        make_private_dir(self.root)
        make_private_dir(self.staging_root)
        claim(self.owner_file(backup_id), self.staging(backup_id))
        return make_private_dir(self.staging(backup_id))

    def owner_file(self, backup_id: str) -> Path:
        return self.staging_root / f"{validate_backup_id(backup_id)}{OWNER_SUFFIX}"

    def staging_ids(self) -> list[str]:
        """Backups being staged (or left behind by runs that died), oldest first."""
        if not self.staging_root.is_dir():
            return []
        return sorted(p.name for p in self.staging_root.iterdir() if p.is_dir() and is_backup_id(p.name))

    def staging_alive(self, backup_id: str) -> bool:
        """True while the run that holds the staging folder may still write it."""
        return owner_alive(self.owner_file(backup_id), self.staging(backup_id))

    def stale_staging(self) -> list[str]:
        """Staging folders no live run holds: nothing will ever publish them."""
        return [b for b in self.staging_ids() if not self.staging_alive(b)]

    def staging_size(self, backup_id: str) -> int:
        return sum(p.stat().st_size for p in self.staging(backup_id).rglob("*") if p.is_file())

    def discard(self, backup_id: str) -> bool:
        """Remove a backup's staging folder and owner file; True if there was a folder."""
        staging = self.staging(backup_id)
        existed = staging.exists()
        shutil.rmtree(staging, ignore_errors=True)
        self.owner_file(backup_id).unlink(missing_ok=True)
        return existed

    def write_part(self, backup_id: str, component: str, part: dict) -> None:
        """Record what one component wrote; the manifest step merges all parts."""
        parts = make_private_dir(self.staging(backup_id) / PARTS)
        write_json(parts / f"{component}.json", part)

    def read_parts(self, backup_id: str) -> dict[str, dict]:
        parts = self.staging(backup_id) / PARTS
        if not parts.is_dir():
            return {}
        return {p.stem: json.loads(p.read_text()) for p in sorted(parts.glob("*.json")) if p.stem != CHECKS}

    def write_check_record(self, backup_id: str, record: dict) -> None:
        """The integrity checks' outcome, for the manifest step (valid only if they all passed)."""
        write_json(make_private_dir(self.staging(backup_id) / PARTS) / f"{CHECKS}.json", record)

    def read_check_record(self, backup_id: str) -> dict | None:
        path = self.staging(backup_id) / PARTS / f"{CHECKS}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def publish(self, backup_id: str) -> Path:
        """Atomically move the staged backup to its final name (the manifest must be written)."""
        staging, target = self.staging(backup_id), self.published(backup_id)
        if not (staging / MANIFEST).is_file():
            raise SupabackupError(f"backup {backup_id} has no manifest yet; not publishing an incomplete backup")
        shutil.rmtree(staging / PARTS, ignore_errors=True)
        os.rename(staging, target)  # fails (never overwrites) if target exists and is not empty
        fsync_path(self.root)
        self.owner_file(backup_id).unlink(missing_ok=True)
        return target

    def manifest(self, backup_id: str) -> dict:
        """The backup's manifest; one that cannot be read stands as an invalid backup's (with the
        reason in `damaged`), so that listing, pruning and deleting still work around it."""
        path = self.published(backup_id) / MANIFEST
        if not path.is_file():
            raise BackupNotFound(f"unknown backup ID {backup_id}: no backup with that ID in {self.root}")
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            return _damaged(backup_id, f"{path} is unreadable ({type(exc).__name__}: {exc})")
        if not isinstance(manifest, dict):
            return _damaged(backup_id, f"{path} is not a manifest (a JSON {type(manifest).__name__})")
        return manifest

    def backup_ids(self) -> list[str]:
        """Published backups, oldest first (IDs sort by time)."""
        if not self.root.is_dir():
            return []
        return sorted(c.name for c in self.root.iterdir() if is_backup_id(c.name) and (c / MANIFEST).is_file())


def _damaged(backup_id: str, reason: str) -> dict:
    return {"backup_id": backup_id, "status": "invalid", "damaged": reason, "files": {}, "components": [],
            "total_size": 0, "description": f"damaged: {reason}"}
