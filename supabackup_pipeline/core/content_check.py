"""Has a table's content changed since the backup? For the dry-run plan, which row counts alone
cannot tell (an UPDATE keeps the count).

The live table is read with the backup's own COPY and hashed (`fingerprint.live_copy_sha256`);
equal to the sidecar's `copy_sha256` means the table holds exactly the rows the backup read. A
different digest means the content changed — or only the rows' physical order did (e.g. an
UPDATE that wrote the same values, VACUUM FULL), which this cheap check cannot tell apart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Protocol

import psycopg

from supabackup_pipeline.core.parts import Parts
from supabackup_pipeline.core.catalog import TableRef
from supabackup_pipeline.core.fingerprint import live_copy_sha256


class TableStepLike(Protocol):
    ref: TableRef
    sidecar: dict
    exists: bool


@dataclass
class TableProbe:
    """The three facts the check needs about one planned table (a plan's TableStep has them too)."""

    ref: TableRef
    sidecar: dict
    exists: bool


def probes_from_plan(root: Path, manifest: dict, planned: list[dict]) -> list[TableProbe]:
    """Probes for the tables of a plan's JSON (`plan["database"]["tables"]`), sidecars read from the backup."""
    sidecars = {t.qualified: t.sidecar for t in Parts.from_manifest(manifest).table_dumps()}
    return [TableProbe(TableRef(*t["table"].split(".", 1)), json.loads((root / sidecars[t["table"]]).read_text()),
                       bool(t["exists"])) for t in planned if t["table"] in sidecars]


def content_changed(conn: psycopg.Connection, step: TableStepLike) -> bool | None:
    """True if the live table differs from the backup, False if identical, None if unknown
    (no digest in the backup, or the live table no longer reads with the backup's columns)."""
    if not step.exists:
        return True  # dropped since the backup: its rows are gone
    expected = step.sidecar.get("copy_sha256")
    if not expected:
        return None
    try:
        with conn.transaction():
            _, digest = live_copy_sha256(conn, step.sidecar)
    except psycopg.Error:  # a column the backup had is gone or changed type: the drift says which
        return None
    return digest != expected


def content_changes(conn: psycopg.Connection, root: Path, steps: Iterable[TableStepLike]) -> dict[str, bool | None]:
    """{schema.table: changed?} for every planned table of the backup at `root` (see `content_changed`);
    a step without its sidecar loaded gets it from the backup (`sidecar_path`)."""
    out = {}
    for step in steps:
        if not step.sidecar and getattr(step, "sidecar_path", None):
            step = TableProbe(step.ref, json.loads((root / step.sidecar_path).read_text()), step.exists)
        out[step.ref.qualified] = content_changed(conn, step)
    return out
