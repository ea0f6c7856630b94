"""Object listings: v1 (`/object/list`, one folder level) and v2 (`/object/list-v2`, cursor pages).

Both build their LIKE patterns from the prefix without escaping `_` or `%`, as storage-api does,
so `_` in a prefix matches any character. v1 also matches case-insensitively (ILIKE) and merges
folders whose names differ only in case: a recursive walk over v1 can invent paths that do not
exist. v2 without a delimiter is case-exact and sorted byte-wise (COLLATE "C").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse

from supabackup_pipeline.dev.storage_api import errors
from supabackup_pipeline.dev.storage_api.db import iso, jsonable
from supabackup_pipeline.dev.storage_api.objects import INJECTED_BYTES

if TYPE_CHECKING:
    from supabackup_pipeline.dev.storage_api.app import Call, Ctx

V1_DEFAULT_LIMIT, V1_MAX_LIMIT = 100, 1500
V2_MAX_LIMIT = 1000
_V1_SORT_COLUMNS = ("name", "updated_at", "created_at", "last_accessed_at")
_OBJECT_FIELDS = ("id", "name", "metadata", "updated_at", "created_at", "last_accessed_at")


def _int(value: Any, default: int, name: str) -> int:
    try:
        return default if value is None else int(value)
    except (TypeError, ValueError):
        raise errors.bad_request(f"body/{name} must be integer") from None


def _order(sort_by: Any) -> str:
    return "desc" if isinstance(sort_by, dict) and str(sort_by.get("order", "")).lower() == "desc" else "asc"


def _injected_rows(ctx: Ctx, bucket_id: str, prefix: str) -> list[dict[str, Any]]:
    """Fake rows for `Faults.inject_listing` names under `prefix` (raw: '../evil.txt' stays as is)."""
    now = iso(datetime.now(timezone.utc))
    meta = {"eTag": f'"{hashlib.md5(INJECTED_BYTES).hexdigest()}"', "size": len(INJECTED_BYTES),
            "mimetype": "application/octet-stream", "cacheControl": "no-cache", "lastModified": now,
            "contentLength": len(INJECTED_BYTES), "httpStatusCode": 200}
    return [{"id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{bucket_id}/{name}")), "name": name, "metadata": meta,
             "updated_at": now, "created_at": now, "last_accessed_at": now}
            for name in ctx.faults.injected(bucket_id) if name.startswith(prefix)]


# ------------------------------------------------------------------ v1

def list_v1(ctx: Ctx, call: Call) -> JSONResponse:
    """Body {prefix, limit, offset, sortBy {column, order}, search}: one level below the prefix.

    Folders first (id and metadata null), then files; names are relative to the prefix (the
    prefix is taken as a folder: "a" means "a/"). Mirrors storage.search() of storage-api.
    """
    body = call.json()
    prefix = body.get("prefix")
    if not isinstance(prefix, str):
        raise errors.bad_request("body must have required property 'prefix'")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    level = len(prefix.split("/"))
    limit = min(_int(body.get("limit"), V1_DEFAULT_LIMIT, "limit"), V1_MAX_LIMIT)
    offset = _int(body.get("offset"), 0, "offset")
    sort_by = body.get("sortBy") or {}
    column = sort_by.get("column") if sort_by.get("column") in _V1_SORT_COLUMNS else "name"
    order = _order(sort_by)
    params = {"bucket": call.params["bucket"], "pattern": prefix + str(body.get("search") or "") + "%",
              "level": level, "limit": limit, "offset": offset}
    with ctx.pool.transaction() as conn:
        rows = conn.execute(f"""
            WITH matched AS (
                SELECT * FROM storage.objects WHERE bucket_id = %(bucket)s AND name ILIKE %(pattern)s
            ), folders AS (  -- one entry per case-folded folder name, spelled as the first one sorts
                SELECT min(path_tokens[%(level)s] COLLATE "C") AS name FROM matched
                WHERE array_length(path_tokens, 1) > %(level)s GROUP BY lower(path_tokens[%(level)s])
            )
            (SELECT name, NULL::uuid AS id, NULL::timestamptz AS updated_at, NULL::timestamptz AS created_at,
                    NULL::timestamptz AS last_accessed_at, NULL::jsonb AS metadata
             FROM folders ORDER BY name COLLATE "C" {order})
            UNION ALL
            (SELECT path_tokens[%(level)s], id, updated_at, created_at, last_accessed_at, metadata
             FROM matched WHERE array_length(path_tokens, 1) = %(level)s ORDER BY {column} {order})
            LIMIT %(limit)s OFFSET %(offset)s""", params).fetchall()
    items = [jsonable(row) for row in rows]
    if offset == 0:
        items += [{**row, "name": row["name"][len(prefix):]} for row in _injected_rows(ctx, call.params["bucket"], prefix)]
    return JSONResponse(items)


# ------------------------------------------------------------------ v2

def _encode_cursor(name: str, sort_value: str | None) -> str:
    return base64.urlsafe_b64encode(json.dumps([name, sort_value]).encode()).decode()


def _decode_cursor(cursor: Any) -> tuple[str, str | None] | None:
    if not cursor:
        return None
    try:
        name, sort_value = json.loads(base64.urlsafe_b64decode(str(cursor).encode()))
        return str(name), sort_value
    except (ValueError, TypeError, binascii.Error):
        raise errors.StorageError(400, "InvalidParameter", "Invalid cursor") from None


def list_v2(ctx: Ctx, call: Call) -> JSONResponse:
    """Body {prefix, limit, cursor, with_delimiter, sortBy}.

    Without delimiter: every object under the prefix, full names, pages of at most 1000 in byte
    order (or by updated_at/created_at, name breaking ties). With `with_delimiter: true`: one level,
    sub-folders in `folders` ({key: segment, name: "full/path/"}) and objects with a `key`.
    `nextCursor` (opaque: base64 of the last name and sort value) is present when `hasNext`.
    """
    body = call.json()
    bucket_id, prefix = call.params["bucket"], str(body.get("prefix") or "")
    limit = max(1, min(_int(body.get("limit"), V2_MAX_LIMIT, "limit"), V2_MAX_LIMIT))
    delimiter = bool(body.get("with_delimiter"))
    sort_by = body.get("sortBy") or {}
    column = None if delimiter else {"updated_at": "updated_at", "created_at": "created_at"}.get(sort_by.get("column"))
    cursor = _decode_cursor(body.get("cursor"))
    params: dict[str, Any] = {"bucket": bucket_id, "prefix": prefix, "pattern": prefix + "%", "n": limit + 1}
    if cursor:
        params["after"], params["after_ts"] = cursor
    sql = _v2_sql(prefix, delimiter, column, _order(sort_by), bool(cursor))
    with ctx.pool.transaction() as conn:
        rows = conn.execute(sql, params).fetchall()
    result: dict[str, Any] = {"hasNext": len(rows) > limit, **_v2_page(rows[:limit], delimiter)}
    if cursor is None:
        result["objects"] += _injected_rows(ctx, bucket_id, prefix)
    if result["hasNext"]:
        last = rows[limit - 1]
        result["nextCursor"] = _encode_cursor(last["name"], iso(last[column]) if column else None)
    return JSONResponse(result)


def _v2_sql(prefix: str, delimiter: bool, column: str | None, order: str, after_cursor: bool) -> str:
    """One page of list v2: objects (or, with the delimiter, one level of folders and objects) in
    byte order of the name, or by a date column with the name breaking ties; after the cursor."""
    if column:
        sort_key = f"(date_trunc('milliseconds', {column}), name COLLATE \"C\")"
        order_by = f"date_trunc('milliseconds', {column}) {order}, name COLLATE \"C\" {order}"
        after = "(%(after_ts)s::timestamptz, %(after)s)"
    else:
        sort_key, order_by, after = 'name COLLATE "C"', f'name COLLATE "C" {order}', "%(after)s"
    cmp = "<" if order == "desc" else ">"
    cursor_filter = f"AND {sort_key} {cmp} {after}" if after_cursor else ""
    if not delimiter:
        prefix_filter = "AND name LIKE %(pattern)s" if prefix else ""
        return f"""SELECT id, name, metadata, updated_at, created_at, last_accessed_at FROM storage.objects
                  WHERE bucket_id = %(bucket)s {prefix_filter} {cursor_filter} ORDER BY {order_by} LIMIT %(n)s"""
    return f"""
        WITH matched AS (
            SELECT *, substr(name, char_length(%(prefix)s) + 1) AS rest FROM storage.objects
            WHERE bucket_id = %(bucket)s AND name LIKE %(pattern)s
        ), entries AS (
            SELECT DISTINCT %(prefix)s || split_part(rest, '/', 1) || '/' AS name, NULL::uuid AS id,
                   NULL::jsonb AS metadata, NULL::timestamptz AS updated_at, NULL::timestamptz AS created_at,
                   NULL::timestamptz AS last_accessed_at
            FROM matched WHERE strpos(rest, '/') > 0
            UNION ALL
            SELECT name, id, metadata, updated_at, created_at, last_accessed_at FROM matched
            WHERE strpos(rest, '/') = 0
        )
        SELECT * FROM entries WHERE true {cursor_filter} ORDER BY {order_by} LIMIT %(n)s"""


def _v2_page(rows, delimiter: bool) -> dict[str, Any]:
    """The page's `folders` (rows without an id) and `objects` (with a `key` when listing one level)."""
    folders, objects = [], []
    for row in rows:
        if row["id"] is None:
            folders.append({"key": row["name"].rstrip("/").rsplit("/", 1)[-1], "name": row["name"]})
        else:
            item = {field: row[field] for field in _OBJECT_FIELDS}
            if delimiter:
                item["key"] = row["name"].rsplit("/", 1)[-1]
            objects.append(jsonable(item))
    return {"folders": folders, "objects": objects}
