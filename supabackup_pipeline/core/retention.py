"""Which backups to keep, like restic's `forget`, and deleting one backup safely.

Policy (each rule keeps backups the others may also keep; a backup is kept if any rule keeps it):
- keep_last N: the N newest valid backups;
- keep_daily / keep_weekly / keep_monthly N: the newest valid backup of each of the last N days /
  ISO weeks / months that have one.
The rules count, for each component (database, users, storage), the backups that hold it whole:
a database-only backup is no reason to forget the last one with Storage, and a backup of some
assets (a few tables or buckets) counts for nothing. Invalid backups never count as kept. A
pre-rollback safety backup, or a partial backup, is kept as long as any backup at least as old
as it is kept (so it lives at least as long as the backups around it, and always while it is
the newest). A backup a running rollback reads from is kept, and refused by `delete`
(core/in_use). Deleting removes only the backup's own folder: objects shared with other backups
are hard links, so the other backups keep their copy.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from supabackup_pipeline.core.parts import COMPONENTS, GOOD_STATUSES
from supabackup_pipeline.core.backup_id import backup_id_time, validate_backup_id
from supabackup_pipeline.core.errors import Refused, SupabackupError
from supabackup_pipeline.core.in_use import in_use
from supabackup_pipeline.core.store import BackupStore

SAFETY_PREFIX = "pre-rollback of "


@dataclass(frozen=True)
class RetentionPolicy:
    keep_last: int = 7
    keep_daily: int = 0
    keep_weekly: int = 4
    keep_monthly: int = 0

    def check(self) -> None:
        values = (self.keep_last, self.keep_daily, self.keep_weekly, self.keep_monthly)
        if any(v < 0 for v in values):
            raise SupabackupError("keep-* values must be 0 or more")
        if not any(values):
            raise SupabackupError("a policy that keeps nothing would delete every backup: set at least one keep-* value")


def plan_retention(store: BackupStore, policy: RetentionPolicy) -> tuple[dict[str, list[str]], dict[str, str]]:
    """({kept backup: reasons}, {forgotten backup: why}) for every published backup."""
    policy.check()
    infos = []
    for backup_id in store.backup_ids():
        manifest = store.manifest(backup_id)
        whole = restore_points(manifest)
        infos.append((backup_id, manifest.get("status"), (manifest.get("description") or "").startswith(SAFETY_PREFIX),
                      whole, set(manifest.get("components", [])) - whole))
    kept: dict[str, list[str]] = {}
    for component in COMPONENTS:  # the rules count, per component, the backups that hold it whole
        _apply_rules(policy, [b for b, status, _, whole, _ in reversed(infos)
                              if status in GOOD_STATUSES and component in whole], kept)
    for backup_id, *_ in infos:
        if in_use(store, backup_id):
            kept.setdefault(backup_id, []).append("read by a running rollback")
    oldest_kept = min(kept) if kept else None
    for backup_id, status, safety, _, partial in infos:
        if (safety or partial) and status in GOOD_STATUSES and backup_id not in kept \
                and (oldest_kept is None or backup_id >= oldest_kept):
            kept[backup_id] = ["pre-rollback safety backup" if safety else
                               f"partial ({', '.join(sorted(partial))}: some tables or buckets), as old as a kept one"]
    forget = {}
    for backup_id, status, *_ in infos:
        if backup_id not in kept:
            forget[backup_id] = "invalid (never counts as kept)" if status not in GOOD_STATUSES else "not kept by the policy"
    return kept, forget


def restore_points(manifest: dict) -> set[str]:
    """The components a backup holds whole: a part made of some of a component's tables or buckets
    (some of its assets materialized) is no restore point for that component."""
    parts = manifest.get("parts") or {}
    return {c for c in manifest.get("components", [])
            if not (isinstance(parts.get(c), dict) and parts[c].get("complete") is False)}


def _apply_rules(policy: RetentionPolicy, valid: list[str], kept: dict[str, list[str]]) -> None:
    """Mark what keep-last/daily/weekly/monthly keep of `valid` (newest first)."""
    def keep(backup_id: str, reason: str) -> None:
        reasons = kept.setdefault(backup_id, [])
        if reason not in reasons:
            reasons.append(reason)

    for backup_id in valid[: policy.keep_last]:
        keep(backup_id, "last")
    for rule, count, bucket in (("daily", policy.keep_daily, "%Y-%m-%d"), ("weekly", policy.keep_weekly, "%G-W%V"),
                                ("monthly", policy.keep_monthly, "%Y-%m")):
        seen: list[str] = []
        for backup_id in valid:
            period = backup_id_time(backup_id).strftime(bucket)
            if period in seen:
                continue
            if len(seen) >= count:
                break
            seen.append(period)
            keep(backup_id, f"{rule} {period}")


def valid_backups(store: BackupStore) -> list[str]:
    return [b for b in store.backup_ids() if store.manifest(b).get("status") in GOOD_STATUSES]


def delete_backup_files(store: BackupStore, backup_id: str, force: bool = False) -> int:
    """Remove one published backup folder; returns the bytes its manifest listed.

    Refuses the only valid backup unless `force`: deleting it would leave nothing to roll back to.
    """
    validate_backup_id(backup_id)
    manifest = store.manifest(backup_id)  # BackupNotFound for an unknown ID
    if in_use(store, backup_id):
        raise Refused(f"{backup_id} is being restored by a running rollback: it is not deleted (not even with"
                      " --force); delete it after the rollback ends")
    if manifest.get("status") in GOOD_STATUSES and valid_backups(store) == [backup_id] and not force:
        raise Refused(f"{backup_id} is the only valid backup; deleting it leaves nothing to roll back to"
                              " (use --force to delete it anyway)")
    root = store.published(backup_id)
    # move aside first: a crash mid-delete never leaves a half-deleted folder under a backup ID
    trash = store.root / ".trash" / backup_id
    trash.parent.mkdir(mode=0o700, exist_ok=True)
    root.rename(trash)
    shutil.rmtree(trash)
    return manifest.get("total_size", 0)
