"""Asset keys for the things a backup holds. Live objects sit under `live/`, their backups under `supabase/`."""

from __future__ import annotations

import hashlib
import re

import dagster as dg

DATABASE_SCHEMA_KEY = dg.AssetKey(["supabase", "database", "schema"])
USERS_KEY = dg.AssetKey(["supabase", "auth", "users"])
STORAGE_BUCKETS_KEY = dg.AssetKey(["supabase", "storage_buckets"])  # never a bucket's key
MANIFEST_KEY = dg.AssetKey(["supabase", "backup", "manifest"])


def key_part(name: str) -> str:
    """Asset-key-safe form of a Postgres or bucket name; unique (a hash suffix when altered)."""
    safe = re.sub(r"[^A-Za-z0-9_]", "_", name)
    if safe != name:
        safe += "_" + hashlib.sha256(name.encode()).hexdigest()[:6]
    return safe


def table_key(schema: str, table: str) -> dg.AssetKey:
    return dg.AssetKey(["supabase", key_part(schema), key_part(table)])


def live_table_key(schema: str, table: str) -> dg.AssetKey:
    return dg.AssetKey(["live", key_part(schema), key_part(table)])


def bucket_key(bucket: str) -> dg.AssetKey:
    return dg.AssetKey(["supabase", "storage", key_part(bucket)])
