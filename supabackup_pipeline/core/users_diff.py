"""How the live auth.users differ from a backup's: the rollback plan's users added / deleted / changed.

Columnar on both sides (the backup's Parquet, the live table through one CSV COPY) and joined in
Arrow (`index_in`, `take`): a Python object per user (uuid, datetime) cost ~2 s at 100k users, a third of the plan.
A user is changed when its password hash, email or updated_at differs (NULL equal to NULL).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from supabackup_pipeline.core.pg_types import OVERFLOW_PREFIX
from supabackup_pipeline.core.table_load import uuid_to_pg_text

_COMPARED = ["encrypted_password", "email", "at_us", "at_text"]
# updated_at as microseconds since 1970, or (±infinity, years outside 1-9999: the backup keeps those
# in its overflow column) as Postgres text; the session's settings pin that text (see snapshot.py)
_LIVE_SQL = """
COPY (SELECT replace(id::text, '-', ''), encrypted_password, email,
             CASE WHEN in_range THEN (extract(epoch FROM updated_at) * 1000000)::int8 END,
             CASE WHEN NOT in_range THEN updated_at::text END
      FROM (SELECT *, isfinite(updated_at) AND updated_at >= '0001-01-01' AND updated_at < '10000-01-01' AS in_range
            FROM auth.users) u) TO STDOUT (FORMAT csv)
"""


def users_diff(conn: psycopg.Connection, parquet_path: Path) -> dict:
    """Counts of users added since the backup (removed by the restore), deleted since (restored),
    changed (reverted), and the users after."""
    backed, live = _backed_users(parquet_path), _live_users(conn)
    at = pc.index_in(live["id"], value_set=backed["id"])  # each live user's row in the backup, or null
    kept = pc.is_valid(at)
    differs = pa.array(np.zeros(live.num_rows, dtype=bool))
    for name in _COMPARED:
        differs = pc.or_(differs, pc.invert(_same(live[name], backed[name].take(at))))
    kept_count = _count(kept)
    return {
        "added_since_backup (removed)": live.num_rows - kept_count,
        "deleted_since_backup (restored)": backed.num_rows - kept_count,  # ids are the primary key
        "changed_since_backup (reverted)": _count(pc.and_(kept, differs)),
        "users_after": backed.num_rows,
    }


def _same(a: pa.ChunkedArray, b: pa.ChunkedArray) -> pa.ChunkedArray:
    """Equal, with NULL equal to NULL (Arrow's `equal` gives NULL there)."""
    both_null = pc.and_(pc.is_null(a), pc.is_null(b))
    return pc.or_(both_null, pc.fill_null(pc.equal(a, b), False))


def _count(mask: pa.ChunkedArray) -> int:
    return int(pc.sum(mask.cast(pa.int64())).as_py() or 0)


def _backed_users(parquet_path: Path) -> pa.Table:
    """The compared columns of the backup, in the live query's forms (hex ids, microseconds)."""
    names = pq.read_schema(parquet_path).names
    overflow = OVERFLOW_PREFIX + "updated_at"
    columns = ["id", "encrypted_password", "email", "updated_at"] + ([overflow] if overflow in names else [])
    table = pq.read_table(parquet_path, columns=columns)
    n = table.num_rows
    return pa.table({
        "id": uuid_to_pg_text(table["id"].combine_chunks()).cast(pa.string()),
        "encrypted_password": table["encrypted_password"].cast(pa.string()),
        "email": table["email"].cast(pa.string()),
        "at_us": table["updated_at"].cast(pa.int64()),
        "at_text": table[overflow].cast(pa.string()) if overflow in names else pa.nulls(n, pa.string()),
    })


def _live_users(conn: psycopg.Connection) -> pa.Table:
    """The live users through one CSV COPY read by pyarrow (single-threaded: it is one small table)."""
    data = io.BytesIO()
    with conn.cursor().copy(_LIVE_SQL) as copy:
        for chunk in copy:
            data.write(chunk)
    types = {"id": pa.string(), "encrypted_password": pa.string(), "email": pa.string(), "at_us": pa.int64(),
             "at_text": pa.string()}
    if not data.tell():  # no users: pyarrow reads no table from an empty file
        return pa.table({k: pa.array([], t) for k, t in types.items()})
    data.seek(0)
    table = pacsv.read_csv(
        data, read_options=pacsv.ReadOptions(column_names=list(types), use_threads=False),
        convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=True,
                                             quoted_strings_can_be_null=False),
    )
    return table
