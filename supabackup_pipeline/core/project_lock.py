"""One backup or rollback per project at a time: a PostgreSQL advisory lock held by each."""

from __future__ import annotations

import psycopg

from supabackup_pipeline.core.errors import SupabackupError

ADVISORY_LOCK_KEY = 0x5B_AC_0F  # "supabackup"


class ProjectBusy(SupabackupError):
    """Another backup or rollback holds the project's lock."""


def lock_project(conn: psycopg.Connection, what: str) -> None:
    """Take the lock for the rest of `conn`'s transaction, or refuse at once with a clear message."""
    if not conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,)).fetchone()[0]:
        raise ProjectBusy(f"another supabackup backup or rollback is running on this project; {what} refused, try again later")
