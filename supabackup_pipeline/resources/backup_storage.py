"""Where backups are kept (BACKUP_PATH) and scratch space (TEMP_PATH)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import Field

from supabackup_pipeline.core.store import BackupStore


class BackupStorage(dg.ConfigurableResource):
    backup_path: str = Field(default="./backups", description="BACKUP_PATH: folder holding all backups")
    temp_path: str = Field(default="", description="TEMP_PATH: scratch space (default: BACKUP_PATH/.tmp)")

    def store(self) -> BackupStore:
        return BackupStore(Path(self.backup_path).expanduser().resolve())

    def scratch(self) -> Path:
        return Path(self.temp_path).expanduser().resolve() if self.temp_path else self.store().root / ".tmp"
