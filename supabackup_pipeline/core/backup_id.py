"""Backup IDs: sortable UTC timestamps, e.g. `20261127T174302Z` or `20261127T174302Z-a3f9`.

An ID names a Dagster partition *and* a folder, so every ID that enters from outside (CLI, run
config, partition keys, paths) is checked against one strict pattern before anything is touched.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timezone

from supabackup_pipeline.core.errors import SupabackupError

BACKUP_ID_PATTERN = re.compile(r"^\d{8}T\d{6}Z(-[0-9a-f]{4})?$")


class InvalidBackupId(SupabackupError, ValueError):
    """The text is not a backup ID (wrong shape, or an impossible date)."""

    exit_code = 2


def new_backup_id(now: datetime | None = None, suffix: bool = False) -> str:
    """A fresh ID for `now` (UTC); `suffix` adds 4 random hex digits when the plain one is taken."""
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    backup_id = now.strftime("%Y%m%dT%H%M%SZ")
    return f"{backup_id}-{secrets.token_hex(2)}" if suffix else backup_id


def unique_backup_id(existing: set[str] | frozenset[str], now: datetime | None = None) -> str:
    """A new ID not in `existing` (two backups started in the same second get a suffix)."""
    backup_id = new_backup_id(now)
    while backup_id in existing:
        backup_id = new_backup_id(now, suffix=True)
    return backup_id


def validate_backup_id(value: object) -> str:
    """Return `value` if it is a well-formed backup ID, else raise InvalidBackupId naming it."""
    if not isinstance(value, str) or not BACKUP_ID_PATTERN.fullmatch(value):
        raise InvalidBackupId(
            f"invalid backup ID {value!r}: expected a UTC timestamp like 20261127T174302Z "
            "(optionally with a -xxxx hex suffix)"
        )
    try:
        datetime.strptime(value[:16], "%Y%m%dT%H%M%SZ")
    except ValueError:
        raise InvalidBackupId(f"invalid backup ID {value!r}: not a real date and time") from None
    return value


def backup_id_time(backup_id: str) -> datetime:
    return datetime.strptime(validate_backup_id(backup_id)[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)


def is_backup_id(value: object) -> bool:
    """True if `value` is a well-formed backup ID (see `validate_backup_id`)."""
    try:
        validate_backup_id(value)
    except InvalidBackupId:
        return False
    return True
