"""The tables (and buckets) last seen in the project, cached on disk for loading definitions.

Loading Dagster definitions must never need the database (every run, step and the UI's code
server imports them), so the asset list is built from this file. Backup runs and
`supabackup refresh-tables` rewrite it; a table created since is still backed up by the next
run, and gets its own asset after the code location reloads.
"""

from __future__ import annotations

import json
from pathlib import Path

from supabackup_pipeline.core.files import make_private_dir, write_json
from supabackup_pipeline.core.snapshot import utc_now

CACHE_FILE = "catalog.json"


def read_catalog(state_dir: Path) -> dict:
    path = state_dir / CACHE_FILE
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError, OSError):
        return {"tables": [], "buckets": []}
    # tables are [schema, name] pairs: names may contain dots
    return {"tables": [list(t) for t in data.get("tables", [])], "buckets": list(data.get("buckets", []))}


RELOAD_HINT = "reload the code location to see their assets (Dagster UI: Deployment → Reload, or restart dagster dev)"


def refresh_catalog(conn, schemas: list[str], state_dir: Path) -> tuple[list[str], bool]:
    """Rediscover the tables of `schemas` that exist now; (their names, whether the list changed)."""
    from supabackup_pipeline.core.catalog import list_tables

    tables = list_tables(conn, schemas)
    changed = update_catalog(state_dir, tables=[[t.schema, t.name] for t in tables])
    return [t.qualified for t in tables], changed


def update_catalog(state_dir: Path, *, tables: list[list[str]] | None = None, buckets: list[str] | None = None) -> bool:
    """Record what a run found; True when the list changed (the code location should reload)."""
    current = read_catalog(state_dir)
    new = dict(current)
    if tables is not None:
        new["tables"] = sorted([list(t) for t in tables])
    if buckets is not None:
        new["buckets"] = sorted(buckets)
    if new == current and (state_dir / CACHE_FILE).exists():
        return False
    make_private_dir(state_dir)
    write_json(state_dir / CACHE_FILE, {**new, "updated_at": utc_now()})
    return new != current
