"""The Supabase Storage API over HTTP: one `httpx.Client`, the routes the mirror and the restore use.

    api = StorageApi(url, service_role_key)         # what the SupabaseStorage resource holds
    page = api.list_page(bucket, cursor)              # list v2, no delimiter: every object, cursor paged
    api.download(bucket, name, sink)                  # streamed: `sink` gets 1 MiB chunks
    api.upload(bucket, name, path, content_type=..)   # streamed from disk, metadata in headers as sent

Why our own layer and not storage3: storage3's `download()` returns whole objects as bytes (memory
grows with the object) and its paths are un-percent-decoded; reaching into its private session to
stream would break silently on any release. Here every name segment is quoted exactly, bodies are
streamed both ways, and errors carry the status storage-api meant (it often sends HTTP 400 with the
real status in the body's `statusCode`).

The requests are the ones the official clients send (same routes, bodies, `apikey` and Bearer
headers, `/storage/v1` under the project URL), so the code does not know whether it talks to a
hosted project or the local stand-in (`dev/storage_api`, whose contract tests pin the shapes).
Downloads and info take the `authenticated` routes: `/object/<bucket>/…` is storage-api's
deprecated spelling, and a bucket named `public`, `authenticated` or `info` there is read as a
route. Uploads send a raw body with the object's metadata in headers, as storage-js does for a
non-form body: storage-api keeps `content-type` and `cache-control` as sent (a form upload stores
"max-age=<seconds>" and drops a content type's parameters unless it has a `contentType` field).

`retrying` retries what is worth retrying (5xx, 408, 429, timeouts, connection errors), with
exponential backoff.
"""

from __future__ import annotations

import base64
import json
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from supabackup_pipeline.core.errors import SupabackupError

API_PREFIX = "/storage/v1"
PAGE_SIZE = 1000  # list-v2's maximum page
CHUNK = 1 << 20
TIMEOUT = 20.0  # seconds per network operation, as the official client
DEFAULT_CACHE_SECONDS = "3600"  # what the official client sends when no cache control is given
METADATA_HEADER_BYTES = 4096  # user metadata sent in a header up to this size (base64); larger goes as a form
_MD5_HEX = re.compile(r"[0-9a-f]{32}")

Log = Callable[[str], Any]


class StorageApiError(Exception):
    """A failed response: `status` is storage's own (from the body when it has one), `http_status` the wire's."""

    def __init__(self, status: int, http_status: int, message: str) -> None:
        super().__init__(f"HTTP {http_status} (status {status}): {message}")
        self.status, self.http_status = status, http_status

    @classmethod
    def from_response(cls, response: httpx.Response) -> StorageApiError:
        status, message = response.status_code, response.text[:200]
        try:
            body = json.loads(response.content)
            status = int(body.get("statusCode", status))
            message = str(body.get("message") or body.get("error") or message)
        except (ValueError, TypeError, AttributeError):
            pass
        return cls(status, response.status_code, message)


class ContentMismatch(Exception):
    """Downloaded bytes disagree with the listing's size or eTag: worth another download, then fatal."""


# ------------------------------------------------------------------ retries

@dataclass(frozen=True)
class Retry:
    """Exponential backoff: attempt n waits base_delay * 2**(n-1) (capped, with jitter)."""

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0

    def delay(self, attempt: int) -> float:
        return min(self.max_delay, self.base_delay * 2 ** (attempt - 1)) * random.uniform(0.8, 1.2)


def error_status(exc: BaseException) -> int | None:
    """Storage's status of a StorageApiError (None for anything that is not an HTTP answer)."""
    return exc.status if isinstance(exc, StorageApiError) else None


def is_not_found(exc: BaseException) -> bool:
    return error_status(exc) == 404


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: timeouts, connection errors, mismatching bytes, 5xx, 408 and 429."""
    if isinstance(exc, (httpx.TimeoutException, httpx.TransportError, ContentMismatch)):
        return True
    if not isinstance(exc, StorageApiError):
        return False
    return exc.status >= 500 or exc.status in (408, 429) or exc.http_status >= 500


class StorageUnreachable(SupabackupError):
    """The Storage API did not answer (connection refused, TLS, DNS, timeouts), after the retries."""


def retrying(what: str, fn: Callable[[], Any], retry: Retry, log: Log):
    """Run fn, retrying transient failures; the last failure propagates (a network one as
    StorageUnreachable, which names SUPABASE_URL)."""
    for attempt in range(1, retry.attempts + 1):
        try:
            return fn()
        except Exception as exc:
            if attempt == retry.attempts and isinstance(exc, httpx.TransportError):
                raise StorageUnreachable(f"{what}: the Storage API (SUPABASE_URL) could not be reached after"
                                         f" {retry.attempts} attempts: {type(exc).__name__}: {exc}") from exc
            if attempt == retry.attempts or not is_transient(exc):
                raise
            delay = retry.delay(attempt)
            log(f"{what}: {type(exc).__name__}: {exc}; retry {attempt}/{retry.attempts - 1} in {delay:.2f}s")
            time.sleep(delay)
    raise AssertionError("unreachable")


# ------------------------------------------------------------------ response values

def etag_md5(etag: Any) -> str | None:
    """The MD5 an eTag stands for, or None (S3 multipart eTags look like "<hex>-<parts>": not an MD5)."""
    if not isinstance(etag, str):
        return None
    value = etag.removeprefix("W/").strip('"').lower()
    return value if _MD5_HEX.fullmatch(value) else None


def timestamp(value: Any) -> Any:
    """An API timestamp in one spelling (ISO 8601, `+00:00`), so that equal times compare equal."""
    if not isinstance(value, str):
        return value
    try:
        return datetime.fromisoformat(value).isoformat()
    except ValueError:
        return value


@dataclass(frozen=True)
class ObjectPage:
    """One page of list v2: objects as the API gives them ({id, name, metadata, created_at, updated_at, ...})."""

    objects: list[dict]
    has_next: bool
    next_cursor: str | None


# ------------------------------------------------------------------ the client

class StorageApi:
    """The project's Storage API, authenticated with the service role key. Thread-safe; close it when done."""

    def __init__(self, url: str, key: str, *, timeout: float = TIMEOUT) -> None:
        self.project_url = url.rstrip("/")  # recorded in a backup's storage manifest: which project it is
        self.http = httpx.Client(base_url=url.rstrip("/") + API_PREFIX,
                                 headers={"apikey": key, "Authorization": f"Bearer {key}"}, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> StorageApi:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @staticmethod
    def path(*segments: str, name: str | None = None) -> str:
        """/segment/.../name-segments, each quoted exactly (a name's `/` separates folders, nothing else;
        `x/./y` and `photos/` are names of their own, as S3 tools make them)."""
        parts = [*segments, *(name.split("/") if name is not None else ())]
        # `.` and `..` percent-encoded: left as they are, URL normalization would resolve them away
        return "/" + "/".join(quote(part, safe="") if part not in (".", "..") else part.replace(".", "%2E")
                              for part in parts)

    def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request; a 4xx/5xx answer raises StorageApiError."""
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise StorageApiError.from_response(response)
        return response

    # -------------------------------------------------------------- buckets

    def list_buckets(self) -> list[dict]:
        return self.send("GET", "/bucket").json()

    def get_bucket(self, bucket: str) -> dict:
        return self.send("GET", self.path("bucket", bucket)).json()

    def create_bucket(self, bucket: str, name: str, options: dict) -> None:
        """options: public, file_size_limit, allowed_mime_types (absent: the server's default)."""
        self.send("POST", "/bucket", json={"id": bucket, "name": name, **options})

    def update_bucket(self, bucket: str, options: dict) -> None:
        """Only the settings in `options` change (None: no limit)."""
        self.send("PUT", self.path("bucket", bucket), json={"id": bucket, "name": bucket, **options})

    def delete_bucket(self, bucket: str) -> None:
        self.send("DELETE", self.path("bucket", bucket), json={})

    # -------------------------------------------------------------- objects

    def list_page(self, bucket: str, cursor: str | None = None, limit: int = PAGE_SIZE, prefix: str = "") -> ObjectPage:
        """One page of list v2 without a delimiter: recursive, case-exact, full names (those that
        start with `prefix`, where the server takes `_` and `%` as LIKE wildcards)."""
        body: dict[str, Any] = {"limit": limit, "prefix": prefix}
        if cursor:
            body["cursor"] = cursor
        data = self.send("POST", self.path("object", "list-v2", bucket), json=body).json()
        return ObjectPage(data.get("objects") or [], bool(data.get("hasNext")), data.get("nextCursor"))

    def info(self, bucket: str, name: str) -> dict:
        """The object's record, user metadata (`metadata`) and owner included."""
        return self.send("GET", self.path("object", "info", "authenticated", bucket, name=name)).json()

    def download(self, bucket: str, name: str, sink: Callable[[bytes], None]) -> None:
        """The object's bytes, streamed into `sink` in chunks (memory stays flat whatever the size)."""
        with self.http.stream("GET", self.path("object", "authenticated", bucket, name=name)) as response:
            if response.status_code >= 400:
                response.read()
                raise StorageApiError.from_response(response)
            for chunk in response.iter_bytes(CHUNK):
                sink(chunk)

    def upload(self, bucket: str, name: str, file: Path, *, content_type: str, cache_control: str | None = None,
               user_metadata: Any = None, upsert: bool = True) -> None:
        """Upload a file, streamed from disk, as a raw body: storage-api stores `content_type` and
        `cache_control` (None: its "no-cache") as sent, and `user_metadata` from `x-metadata`
        (which must fit in a header: see `fits_header`; else `upload_form`)."""
        headers = {"content-type": content_type, "x-upsert": "true" if upsert else "false"}
        if cache_control is not None:
            headers["cache-control"] = cache_control
        if user_metadata is not None:
            headers["x-metadata"] = metadata_header(user_metadata)
        with open(file, "rb") as f:
            self.send("POST", self.path("object", bucket, name=name), content=f, headers=headers)

    def upload_form(self, bucket: str, name: str, file: Path, *, content_type: str, cache_seconds: str | None = None,
                    user_metadata: Any = None, upsert: bool = True) -> None:
        """Upload a file, streamed from disk, as the official Python client's multipart form (user
        metadata of any size). `cache_seconds`: the server stores "max-age=<n>" ("" gives "no-cache");
        None sends the client's default."""
        form = {"cacheControl": DEFAULT_CACHE_SECONDS if cache_seconds is None else cache_seconds,
                "contentType": content_type}  # else the part's type, without its parameters
        if user_metadata is not None:
            form["metadata"] = json.dumps(user_metadata)
        with open(file, "rb") as f:
            self.send("POST", self.path("object", bucket, name=name), data=form,
                      files={"file": (name.rsplit("/", 1)[-1] or "file", f, content_type)},  # `photos/`: a name
                      headers={"x-upsert": "true" if upsert else "false"})

    def remove(self, bucket: str, names: list[str]) -> None:
        """Delete objects by name (storage-api takes at most 1,000 a request)."""
        self.send("DELETE", self.path("object", bucket), json={"prefixes": names})


def metadata_header(user_metadata: Any) -> str:
    """`x-metadata`: the user metadata as base64 JSON."""
    return base64.b64encode(json.dumps(user_metadata).encode()).decode()


def fits_header(user_metadata: Any) -> bool:
    """Whether an upload can carry this user metadata in its `x-metadata` header."""
    return user_metadata is None or len(metadata_header(user_metadata)) <= METADATA_HEADER_BYTES


def same_project_url(a: str, b: str) -> bool:
    """Whether two SUPABASE_URLs name the same API (scheme, host and port, any case, any trailing /)."""
    first, second = urlsplit(a.rstrip("/")), urlsplit(b.rstrip("/"))
    return (first.scheme.lower(), first.netloc.lower(), first.path) == (second.scheme.lower(), second.netloc.lower(),
                                                                         second.path)
