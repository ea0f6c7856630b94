"""A tiny psycopg connection pool, and JSON rendering of database rows.

Handlers run in Starlette's thread pool (up to 40 at once), so each takes a connection for one
transaction and gives it back; idle connections are kept for reuse.
"""

from __future__ import annotations

import queue
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

import psycopg
from psycopg.rows import dict_row

MAX_IDLE = 16


class Pool:
    def __init__(self, db_url: str) -> None:
        self._url = db_url
        self._idle: queue.LifoQueue[psycopg.Connection] = queue.LifoQueue()

    def _connect(self) -> psycopg.Connection:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            return psycopg.connect(self._url, autocommit=True, row_factory=dict_row,
                                   application_name="storage-api-standin")

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection]:
        """One transaction on a pooled connection: committed on success, rolled back on error."""
        conn = self._connect()
        try:
            with conn.transaction():
                yield conn
        finally:
            if conn.closed or conn.broken or self._idle.qsize() >= MAX_IDLE:
                conn.close()
            else:
                self._idle.put(conn)

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


def allow_deletes(conn: psycopg.Connection) -> None:
    """storage.objects/buckets refuse SQL DELETEs unless this is set: we are the Storage API."""
    conn.execute("SELECT set_config('storage.allow_delete_query', 'true', true)")


def iso(value: datetime | None) -> str | None:
    """Timestamps as storage-api (Node's Date#toJSON) renders them: 2024-01-02T03:04:05.678Z."""
    if value is None:
        return None
    return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def jsonable(row: dict[str, Any]) -> dict[str, Any]:
    """A row with uuids and timestamps as JSON strings."""
    out = {}
    for key, value in row.items():
        if isinstance(value, datetime):
            value = iso(value)
        elif isinstance(value, uuid.UUID):
            value = str(value)
        out[key] = value
    return out
