"""Backups a running rollback reads from, so that nothing deletes them under it.

A rollback reads its backup from its first step (verification, safety backup) to its last
(storage restore, post-validation). Meanwhile `delete` could remove it, and so could the
retention policy, which the rollback's own safety backup sets off (a newer backup pushes an older
one out of "keep last N"): the database restored, the storage restore then finds no files. While
a rollback runs, `BACKUP_PATH/.state/in-use/<backup id>.<run id>.json` records its holder (host,
PID, start time: `core/staging`), and a backup with a live holder is neither deleted nor pruned.
A holder that is gone (a killed run) holds nothing.
"""

from __future__ import annotations

from pathlib import Path

from supabackup_pipeline.core.files import write_json
from supabackup_pipeline.core.staging import owner_alive, owner_record
from supabackup_pipeline.core.store import BackupStore


def _folder(store: BackupStore) -> Path:
    return store.state_dir / "in-use"


def hold(store: BackupStore, backup_id: str, run_id: str) -> str | None:
    """Mark the backup as read by this run (until `release`, or until the run's process is gone).
    A BACKUP_PATH that cannot take the mark (read-only, full) does not stop the rollback: returns
    the warning to log instead."""
    folder = _folder(store)
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_json(folder / f"{backup_id}.{run_id}.json", owner_record())
    except OSError as exc:
        return f"{backup_id} could not be marked as in use ({exc}): do not delete or prune it while this rollback runs"
    return None


def release(store: BackupStore, backup_id: str, run_id: str) -> None:
    try:
        (_folder(store) / f"{backup_id}.{run_id}.json").unlink(missing_ok=True)
    except OSError:
        pass  # a holder that is gone holds nothing


def in_use(store: BackupStore, backup_id: str) -> bool:
    """Whether a rollback that is still running reads this backup."""
    folder = _folder(store)
    return any(owner_alive(marker, marker) for marker in folder.glob(f"{backup_id}.*.json")) if folder.is_dir() else False
