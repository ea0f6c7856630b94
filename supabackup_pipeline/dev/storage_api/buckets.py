"""Bucket routes: list, create, get, update, delete, empty."""

from __future__ import annotations

from typing import TYPE_CHECKING

import psycopg
from starlette.responses import JSONResponse

from supabackup_pipeline.dev.storage_api import errors
from supabackup_pipeline.dev.storage_api.db import allow_deletes, jsonable
from supabackup_pipeline.dev.storage_api.keys import check_bucket_name, parse_size_limit

if TYPE_CHECKING:
    from supabackup_pipeline.dev.storage_api.app import Call, Ctx

_COLUMNS = "id, name, owner, public, file_size_limit, allowed_mime_types, created_at, updated_at"


def _render(row: dict) -> dict:
    out = jsonable(row)
    # storage-api's response schema types owner as a string, so a NULL owner goes out as ""
    # (and storage3's Bucket model requires a string).
    out["owner"] = out["owner"] or ""
    return out


def list_buckets(ctx: Ctx, call: Call) -> JSONResponse:
    with ctx.pool.transaction() as conn:
        rows = conn.execute(f"SELECT {_COLUMNS}, 'STANDARD' AS type FROM storage.buckets ORDER BY name").fetchall()
    return JSONResponse([_render(row) for row in rows])


def get_bucket(ctx: Ctx, call: Call) -> JSONResponse:
    with ctx.pool.transaction() as conn:
        row = conn.execute(f"SELECT {_COLUMNS} FROM storage.buckets WHERE id = %s", (call.params["bucket"],)).fetchone()
    if row is None:
        raise errors.bucket_not_found()
    return JSONResponse(_render(row))


def create_bucket(ctx: Ctx, call: Call) -> JSONResponse:
    """Body {id?, name, public, file_size_limit, allowed_mime_types}; the id defaults to the name."""
    body = call.json()
    if "name" not in body:
        raise errors.bad_request("body must have required property 'name'")
    name = check_bucket_name(body["name"])
    bucket_id = check_bucket_name(body.get("id") or name)
    owner = call.claims.get("sub")
    try:
        with ctx.pool.transaction() as conn:
            conn.execute(
                "INSERT INTO storage.buckets (id, name, owner_id, public, file_size_limit, allowed_mime_types)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                (bucket_id, name, owner, bool(body.get("public", False)),
                 parse_size_limit(body.get("file_size_limit")), body.get("allowed_mime_types")),
            )
    except psycopg.errors.UniqueViolation:
        raise errors.duplicate() from None
    return JSONResponse({"name": name})


def update_bucket(ctx: Ctx, call: Call) -> JSONResponse:
    """Only the fields present in the body change (storage3 sends id and name too; ignored)."""
    body = call.json()
    changes = {key: body[key] for key in ("public", "file_size_limit", "allowed_mime_types") if key in body}
    if "file_size_limit" in changes:
        changes["file_size_limit"] = parse_size_limit(changes["file_size_limit"])
    sets = ", ".join([f"{key} = %({key})s" for key in changes] + ["updated_at = now()"])
    with ctx.pool.transaction() as conn:
        updated = conn.execute(f"UPDATE storage.buckets SET {sets} WHERE id = %(id)s",
                               {**changes, "id": call.params["bucket"]}).rowcount
    if not updated:
        raise errors.bucket_not_found()
    return JSONResponse({"message": "Successfully updated"})


def delete_bucket(ctx: Ctx, call: Call) -> JSONResponse:
    bucket_id = call.params["bucket"]
    with ctx.pool.transaction() as conn:
        if conn.execute("SELECT 1 FROM storage.buckets WHERE id = %s FOR UPDATE", (bucket_id,)).fetchone() is None:
            raise errors.bucket_not_found()
        if conn.execute("SELECT 1 FROM storage.objects WHERE bucket_id = %s LIMIT 1", (bucket_id,)).fetchone():
            raise errors.bucket_not_empty()
        allow_deletes(conn)
        conn.execute("DELETE FROM storage.buckets WHERE id = %s", (bucket_id,))
    return JSONResponse({"message": "Successfully deleted"})


def empty_bucket(ctx: Ctx, call: Call) -> JSONResponse:
    bucket_id = call.params["bucket"]
    with ctx.pool.transaction() as conn:
        if conn.execute("SELECT 1 FROM storage.buckets WHERE id = %s", (bucket_id,)).fetchone() is None:
            raise errors.bucket_not_found()
        allow_deletes(conn)
        gone = conn.execute("DELETE FROM storage.objects WHERE bucket_id = %s RETURNING id, version",
                            (bucket_id,)).fetchall()
    for row in gone:
        ctx.blobs.discard(row["id"], row["version"])
    return JSONResponse({"message": "Successfully emptied"})
