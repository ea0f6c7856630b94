"""The backup folder: where each backup lives, how it is staged and published atomically.

    BACKUP_PATH/
      <backup-id>/            a published backup: always complete (one rename publishes it)
        metadata.json         the manifest: every file with its size and SHA-256
        database/             <schema>.<table>.parquet + .json, schema.sql, sequences.json
        users/                auth.users, auth.identities, ... as Parquet + JSON
        storage/              manifest.json and <bucket>/<object name> mirrors
      .staging/<backup-id>/   a backup being written (same layout, plus parts/)
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

from supabackup_pipeline.core.backup_id import validate_backup_id
from supabackup_pipeline.core.errors import BackupNotFound, SupabackupError
from supabackup_pipeline.core.files import make_private_dir, write_json

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

    def start(self, backup_id: str) -> Path:
        """The staging folder of a backup being made (created 0700). Refuses a published ID."""
        if self.published(backup_id).exists():
            raise SupabackupError(f"backup {backup_id} already exists in {self.root}; it is never overwritten")
        make_private_dir(self.root)
        make_private_dir(self.staging_root)
        return make_private_dir(self.staging(backup_id))

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
        _fsync_dir(self.root)
        return target

    def manifest(self, backup_id: str) -> dict:
        path = self.published(backup_id) / MANIFEST
        if not path.is_file():
            raise BackupNotFound(f"unknown backup ID {backup_id}: no backup with that ID in {self.root}")
        return json.loads(path.read_text())

    def backup_ids(self) -> list[str]:
        """Published backups, oldest first (IDs sort by time)."""
        if not self.root.is_dir():
            return []
        ids = []
        for child in self.root.iterdir():
            try:
                validate_backup_id(child.name)
            except ValueError:
                continue
            if (child / MANIFEST).is_file():
                ids.append(child.name)
        return sorted(ids)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
