"""Object routes: upload (POST/PUT), download, info, delete, move, copy."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.types.json import Jsonb
from starlette.datastructures import UploadFile
from starlette.responses import FileResponse, JSONResponse, Response

from supabackup_pipeline.dev.storage_api import errors
from supabackup_pipeline.dev.storage_api.blobs import Incoming
from supabackup_pipeline.dev.storage_api.db import allow_deletes, iso, jsonable
from supabackup_pipeline.dev.storage_api.keys import check_key, check_mime_type

if TYPE_CHECKING:
    from supabackup_pipeline.dev.storage_api.app import Call, Ctx

INJECTED_BYTES = b"evil"


def _jsonb(value: Any) -> Jsonb | None:
    """SQL NULL for None (Jsonb(None) would store a JSON null)."""
    return None if value is None else Jsonb(value)


# ------------------------------------------------------------------ upload / update

def upload(ctx: Ctx, call: Call) -> JSONResponse:
    """POST: create; with `x-upsert: true` replace an existing object instead of a 409."""
    upsert = call.headers.get("x-upsert", "").lower() == "true"
    return _write(ctx, call, "upsert" if upsert else "create")


def update(ctx: Ctx, call: Call) -> JSONResponse:
    """PUT: replace an existing object (404 when there is none)."""
    return _write(ctx, call, "update")


def _upload_parts(call: Call) -> tuple[Any, str, str, Any]:
    """(bytes or file, mime type, cache control as stored, user metadata) of an upload, as
    storage-api's Uploader reads them.

    Multipart (what storage3 sends): the file part; form fields `cacheControl` (seconds: stored as
    "max-age=<field>", "no-cache" without one), `contentType` (else the part's type/subtype, its
    parameters dropped, as busboy parses it) and `metadata` or `userMetadata` (JSON). Raw body: the
    `content-type` header as sent, `cache-control` stored as sent ("no-cache" without one), and
    `x-metadata` (base64 JSON).
    """
    try:
        if call.form is not None:
            part = call.form.get("file")
            if not isinstance(part, UploadFile):
                part = next((v for v in call.form.values() if isinstance(v, UploadFile)), None)
            if part is None:
                raise errors.bad_request("No file in the multipart body")
            user_meta = call.form.get("metadata") or call.form.get("userMetadata")
            seconds = call.form.get("cacheControl")
            mime = call.form.get("contentType") or (part.content_type or "").split(";")[0].strip()
            return (part.file, mime or "application/octet-stream", f"max-age={seconds}" if seconds else "no-cache",
                    json.loads(user_meta) if isinstance(user_meta, str) and user_meta else None)
        x_metadata = call.headers.get("x-metadata")
        return (call.body, call.headers.get("content-type") or "application/octet-stream",
                call.headers.get("cache-control") or "no-cache",
                json.loads(base64.b64decode(x_metadata)) if x_metadata else None)
    except ValueError as exc:
        raise errors.StorageError(400, "InvalidRequest", f"Invalid metadata: {exc}") from None


def _write(ctx: Ctx, call: Call, mode: str) -> JSONResponse:
    bucket_id, name = call.params["bucket"], check_key(call.params["key"])
    with ctx.pool.transaction() as conn:
        bucket = conn.execute("SELECT file_size_limit, allowed_mime_types FROM storage.buckets WHERE id = %s",
                              (bucket_id,)).fetchone()
    if bucket is None:
        raise errors.bucket_not_found()
    source, mime, cache_control, user_meta = _upload_parts(call)
    check_mime_type(mime, bucket["allowed_mime_types"])
    incoming = ctx.blobs.receive(source)
    try:
        if bucket["file_size_limit"] is not None and incoming.size > bucket["file_size_limit"]:
            raise errors.too_large()
        object_id, old_version = _store_row(ctx, call, bucket_id, name, incoming, mime, cache_control, user_meta, mode)
    finally:
        ctx.blobs.drop_incoming(incoming)  # a no-op once placed
    if old_version is not None:
        ctx.blobs.discard(object_id, old_version)
    return JSONResponse({"Id": str(object_id), "Key": f"{bucket_id}/{name}"})


def _system_metadata(incoming: Incoming, mime: str, cache_control: str) -> dict[str, Any]:
    """The `metadata` column, as storage-api fills it after a write."""
    return {
        "eTag": f'"{incoming.md5}"',
        "size": incoming.size,
        "mimetype": mime,
        "cacheControl": cache_control,
        "lastModified": iso(datetime.now(timezone.utc)),
        "contentLength": incoming.size,
        "httpStatusCode": 200,
    }


def _store_row(ctx, call, bucket_id, name, incoming, mime, cache_control, user_meta, mode):
    """Insert or replace the row and place the new bytes, in one transaction. Returns (id, old version)."""
    version = str(uuid.uuid4())
    values = {"bucket": bucket_id, "name": name, "version": version, "owner": call.claims.get("sub"),
              "metadata": Jsonb(_system_metadata(incoming, mime, cache_control)),
              "user_metadata": _jsonb(user_meta)}
    try:
        with ctx.pool.transaction() as conn:
            row = conn.execute("SELECT id, version FROM storage.objects WHERE bucket_id = %s AND name = %s FOR UPDATE",
                               (bucket_id, name)).fetchone()
            if row is not None and mode == "create":
                raise errors.duplicate()
            if row is None and mode == "update":
                raise errors.object_not_found()
            if row is not None:
                conn.execute(
                    "UPDATE storage.objects SET metadata = %(metadata)s, user_metadata = %(user_metadata)s,"
                    " version = %(version)s, owner_id = %(owner)s, updated_at = now(), last_accessed_at = now()"
                    " WHERE id = %(id)s", {**values, "id": row["id"]})
                object_id, old_version = row["id"], row["version"]
            else:
                object_id = conn.execute(
                    "INSERT INTO storage.objects (bucket_id, name, owner_id, metadata, user_metadata, version)"
                    " VALUES (%(bucket)s, %(name)s, %(owner)s, %(metadata)s, %(user_metadata)s, %(version)s)"
                    " RETURNING id", values).fetchone()["id"]
                old_version = None
            ctx.blobs.place(incoming, object_id, version)
    except psycopg.errors.UniqueViolation:  # a concurrent upload of the same name won
        raise errors.duplicate() from None
    return object_id, old_version


# ------------------------------------------------------------------ download / info

def download(ctx: Ctx, call: Call) -> Response:
    return _serve(ctx, call, public=False)


def download_public(ctx: Ctx, call: Call) -> Response:
    """/object/public/...: no JWT needed, only for buckets marked public."""
    return _serve(ctx, call, public=True)


def _find(ctx: Ctx, bucket_id: str, name: str, public: bool) -> dict:
    with ctx.pool.transaction() as conn:
        if public:
            bucket = conn.execute("SELECT public FROM storage.buckets WHERE id = %s", (bucket_id,)).fetchone()
            if bucket is None or not bucket["public"]:
                raise errors.bucket_not_found()
        row = conn.execute("SELECT * FROM storage.objects WHERE bucket_id = %s AND name = %s",
                           (bucket_id, name)).fetchone()
    if row is None:
        raise errors.object_not_found()
    return row


def _http_date(value: str | None, fallback: datetime) -> str:
    try:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        when = fallback
    return format_datetime(when.astimezone(timezone.utc), usegmt=True)


def _serve(ctx: Ctx, call: Call, public: bool) -> Response:
    """The bytes, with storage-api's headers; `Range` gives a 206 (handled by FileResponse)."""
    bucket_id, name = call.params["bucket"], call.params["key"]
    if name in ctx.faults.injected(bucket_id):
        ctx.faults.record_download(bucket_id, name)
        return Response(INJECTED_BYTES, media_type="application/octet-stream")
    row = _find(ctx, bucket_id, name, public)
    path = ctx.blobs.path(row["id"], row["version"])
    if not path.is_file():
        raise errors.object_not_found()
    meta = row["metadata"] or {}
    headers = {
        "content-type": meta.get("mimetype") or "application/octet-stream",
        "cache-control": meta.get("cacheControl") or "no-cache",
        "last-modified": _http_date(meta.get("lastModified"), row["updated_at"]),
    }
    if meta.get("eTag"):
        headers["etag"] = meta["eTag"]
    if "download" in call.request.query_params:
        filename = call.request.query_params["download"] or name.rsplit("/", 1)[-1]
        headers["content-disposition"] = f'attachment; filename="{filename}"'
    ctx.faults.record_download(bucket_id, name)
    return FileResponse(path, headers=headers)


def info(ctx: Ctx, call: Call) -> JSONResponse:
    return _info(ctx, call, public=False)


def info_public(ctx: Ctx, call: Call) -> JSONResponse:
    return _info(ctx, call, public=True)


def _info(ctx: Ctx, call: Call, public: bool) -> JSONResponse:
    row = _find(ctx, call.params["bucket"], call.params["key"], public)
    meta = row["metadata"] or {}
    return JSONResponse({
        "id": str(row["id"]), "name": row["name"], "version": row["version"], "bucket_id": row["bucket_id"],
        "size": meta.get("size"), "content_type": meta.get("mimetype"), "cache_control": meta.get("cacheControl"),
        "etag": meta.get("eTag"), "metadata": row["user_metadata"],
        "last_modified": iso(row["updated_at"]), "created_at": iso(row["created_at"]),
    })


# ------------------------------------------------------------------ delete

def delete_one(ctx: Ctx, call: Call) -> JSONResponse:
    with ctx.pool.transaction() as conn:
        allow_deletes(conn)
        row = conn.execute("DELETE FROM storage.objects WHERE bucket_id = %s AND name = %s RETURNING id, version",
                           (call.params["bucket"], call.params["key"])).fetchone()
    if row is None:
        raise errors.object_not_found()
    ctx.blobs.discard(row["id"], row["version"])
    return JSONResponse({"message": "Successfully deleted"})


def delete_many(ctx: Ctx, call: Call) -> JSONResponse:
    """Body {prefixes: [names]} (exact names, despite the field's name). Returns the deleted rows
    only: names that do not exist are silently skipped."""
    names = call.json().get("prefixes")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise errors.bad_request("body must have required property 'prefixes'")
    if not 1 <= len(names) <= 1000:
        raise errors.bad_request("body/prefixes must NOT have fewer than 1 items or more than 1000 items")
    with ctx.pool.transaction() as conn:
        allow_deletes(conn)
        rows = conn.execute("DELETE FROM storage.objects WHERE bucket_id = %s AND name = ANY(%s) RETURNING *",
                            (call.params["bucket"], names)).fetchall()
    for row in rows:
        ctx.blobs.discard(row["id"], row["version"])
    return JSONResponse([jsonable(row) for row in rows])


# ------------------------------------------------------------------ move / copy

def _move_args(call: Call) -> tuple[str, str, str, str]:
    body = call.json()
    for field in ("bucketId", "sourceKey", "destinationKey"):
        if not isinstance(body.get(field), str):
            raise errors.bad_request(f"body must have required property '{field}'")
    return (body["bucketId"], body["sourceKey"], body.get("destinationBucket") or body["bucketId"],
            check_key(body["destinationKey"]))


def move(ctx: Ctx, call: Call) -> JSONResponse:
    """Body {bucketId, sourceKey, destinationKey, destinationBucket?}: a rename; the bytes stay put."""
    bucket_id, source, dest_bucket, dest = _move_args(call)
    try:
        with ctx.pool.transaction() as conn:
            moved = conn.execute(
                "UPDATE storage.objects SET bucket_id = %s, name = %s, updated_at = now()"
                " WHERE bucket_id = %s AND name = %s", (dest_bucket, dest, bucket_id, source)).rowcount
    except psycopg.errors.UniqueViolation:
        raise errors.duplicate() from None
    except psycopg.errors.ForeignKeyViolation:
        raise errors.bucket_not_found() from None
    if not moved:
        raise errors.object_not_found()
    return JSONResponse({"message": "Successfully moved"})


def copy(ctx: Ctx, call: Call) -> JSONResponse:
    """Body as for move; `x-upsert: true` replaces an existing destination."""
    bucket_id, source, dest_bucket, dest = _move_args(call)
    upsert = call.headers.get("x-upsert", "").lower() == "true"
    version = str(uuid.uuid4())
    try:
        with ctx.pool.transaction() as conn:
            src = conn.execute("SELECT * FROM storage.objects WHERE bucket_id = %s AND name = %s",
                               (bucket_id, source)).fetchone()
            if src is None:
                raise errors.object_not_found()
            old = conn.execute("SELECT id, version FROM storage.objects WHERE bucket_id = %s AND name = %s FOR UPDATE",
                               (dest_bucket, dest)).fetchone()
            if old is not None and not upsert:
                raise errors.duplicate()
            values = {"bucket": dest_bucket, "name": dest, "version": version,
                      "metadata": _jsonb(src["metadata"]), "user_metadata": _jsonb(src["user_metadata"])}
            if old is not None:
                conn.execute("UPDATE storage.objects SET metadata = %(metadata)s, user_metadata = %(user_metadata)s,"
                             " version = %(version)s, updated_at = now() WHERE id = %(id)s", {**values, "id": old["id"]})
                new_id = old["id"]
            else:
                new_id = conn.execute(
                    "INSERT INTO storage.objects (bucket_id, name, metadata, user_metadata, version)"
                    " VALUES (%(bucket)s, %(name)s, %(metadata)s, %(user_metadata)s, %(version)s) RETURNING id",
                    values).fetchone()["id"]
            ctx.blobs.copy(src["id"], src["version"], new_id, version)
    except psycopg.errors.UniqueViolation:
        raise errors.duplicate() from None
    except psycopg.errors.ForeignKeyViolation:
        raise errors.bucket_not_found() from None
    if old is not None:
        ctx.blobs.discard(old["id"], old["version"])
    return JSONResponse({"Id": str(new_id), "Key": f"{dest_bucket}/{dest}"})
