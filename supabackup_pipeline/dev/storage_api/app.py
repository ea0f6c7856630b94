"""Routes, authentication and request plumbing of the Storage API stand-in.

Each handler is a plain function `handler(ctx, call) -> Response` run in Starlette's thread pool
(it does blocking database and disk work); `_endpoint` reads the body first, checks the JWT, and
turns `StorageError`s into storage-api's error bodies.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from supabackup_pipeline.dev.storage_api import buckets, errors, listing, objects
from supabackup_pipeline.dev.storage_api.blobs import BlobStore
from supabackup_pipeline.dev.storage_api.db import Pool
from supabackup_pipeline.dev.storage_api.faults import API_PREFIX, FaultMiddleware, Faults

log = logging.getLogger(__name__)


@dataclass
class Ctx:
    """What every handler needs: the database, the bytes on disk, the test hooks."""

    pool: Pool
    blobs: BlobStore
    faults: Faults
    jwt_secret: str


@dataclass
class Call:
    """One request, with its body already read (handlers run outside the event loop)."""

    request: Request
    body: bytes = b""
    form: FormData | None = None
    claims: dict[str, Any] = field(default_factory=dict)

    @property
    def params(self) -> dict[str, str]:
        return self.request.path_params

    @property
    def headers(self):
        return self.request.headers

    def json(self) -> dict[str, Any]:
        if not self.body:
            return {}
        try:
            value = json.loads(self.body)
        except ValueError as exc:
            raise errors.bad_request(f"Body is not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise errors.bad_request("body must be object")
        return value


def check_jwt(request: Request, secret: str) -> dict[str, Any]:
    """`Authorization: Bearer <HS256 JWT>` with role service_role; `apikey` is accepted and ignored.

    Messages are jsonwebtoken's, as the real server passes them through. Other roles would be
    subject to RLS policies on the real server; the stand-in does not model RLS and refuses them.
    """
    header = request.headers.get("authorization", "")
    token = header[len("Bearer "):].strip() if header[:7].lower() == "bearer " else ""
    if not token:
        raise errors.unauthorized("jwt must be provided")
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], options={"verify_aud": False})
    except jwt.ExpiredSignatureError:
        raise errors.unauthorized("jwt expired") from None
    except jwt.InvalidSignatureError:
        raise errors.unauthorized("invalid signature") from None
    except jwt.PyJWTError:
        raise errors.unauthorized("jwt malformed") from None
    if claims.get("role") != "service_role":
        raise errors.unauthorized(f"role {claims.get('role')!r} is not served by this stand-in (service_role only)")
    return claims


def _endpoint(ctx: Ctx, handler: Callable[[Ctx, Call], Response], public: bool = False):
    async def endpoint(request: Request) -> Response:
        form = None
        try:
            claims = {} if public else check_jwt(request, ctx.jwt_secret)
            if request.headers.get("content-type", "").startswith("multipart/form-data"):
                form = await request.form()
                call = Call(request, form=form, claims=claims)
            else:
                call = Call(request, body=await request.body(), claims=claims)
            return await run_in_threadpool(handler, ctx, call)
        except errors.StorageError as exc:
            return exc.response()
        except Exception as exc:  # the real server answers 500s in the same JSON shape
            log.exception("storage stand-in: %s %s failed", request.method, request.url.path)
            return JSONResponse({"statusCode": "500", "error": "internal", "message": str(exc)}, status_code=500)
        finally:
            if form is not None:
                await form.close()

    return endpoint


def _routes(ctx: Ctx) -> list[Route]:
    def r(path: str, handler, method: str, public: bool = False) -> Route:
        return Route(path, _endpoint(ctx, handler, public), methods=[method])

    obj = "/object/{bucket}/{key:path}"
    # Order matters: the specific routes must come before the catch-all object routes.
    return [
        r("/bucket", buckets.list_buckets, "GET"),
        r("/bucket", buckets.create_bucket, "POST"),
        r("/bucket/{bucket}/empty", buckets.empty_bucket, "POST"),
        r("/bucket/{bucket}", buckets.get_bucket, "GET"),
        r("/bucket/{bucket}", buckets.update_bucket, "PUT"),
        r("/bucket/{bucket}", buckets.delete_bucket, "DELETE"),
        r("/object/list/{bucket}", listing.list_v1, "POST"),
        r("/object/list-v2/{bucket}", listing.list_v2, "POST"),
        r("/object/move", objects.move, "POST"),
        r("/object/copy", objects.copy, "POST"),
        r("/object/info/public/{bucket}/{key:path}", objects.info_public, "GET", public=True),
        r("/object/info/authenticated/{bucket}/{key:path}", objects.info, "GET"),
        r("/object/info/{bucket}/{key:path}", objects.info, "GET"),
        r("/object/public/{bucket}/{key:path}", objects.download_public, "GET", public=True),
        r("/object/authenticated/{bucket}/{key:path}", objects.download, "GET"),
        r(obj, objects.download, "GET"),
        r(obj, objects.upload, "POST"),
        r(obj, objects.update, "PUT"),
        r(obj, objects.delete_one, "DELETE"),
        r("/object/{bucket}", objects.delete_many, "DELETE"),
    ]


async def _not_found(request: Request, exc: Exception) -> JSONResponse:
    """Unknown routes, in fastify's words."""
    message = f"Route {request.method}:{request.url.path} not found"
    return JSONResponse({"message": message, "error": "Not Found", "statusCode": 404}, status_code=404)


def create_app(db_url: str, data_dir: Path, jwt_secret: str, faults: Faults | None = None) -> Starlette:
    """The ASGI app; the API lives under /storage/v1, as behind Supabase's gateway."""
    ctx = Ctx(pool=Pool(db_url), blobs=BlobStore(Path(data_dir)), faults=faults or Faults(), jwt_secret=jwt_secret)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        ctx.pool.close()

    app = Starlette(
        routes=[Mount(API_PREFIX, routes=_routes(ctx)),
                Route("/status", lambda request: Response(status_code=200), methods=["GET"])],
        middleware=[Middleware(FaultMiddleware, faults=ctx.faults)],
        exception_handlers={404: _not_found, 405: _not_found},
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    return app
