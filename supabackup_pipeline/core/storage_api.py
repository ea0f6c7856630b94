"""The Supabase Storage API over HTTP: one `httpx.Client`, the routes the mirror and the restore use.

    api = StorageApi(url, service_role_key)         # what the SupabaseStorage resource holds
    page = api.list_page(bucket, cursor)              # list v2, no delimiter: every object, cursor paged
    api.download(bucket, name, sink)                  # streamed: `sink` gets 1 MiB chunks
    api.upload(bucket, name, path, content_type=..)   # streamed from disk (multipart, as the official client)

Why our own layer and not storage3: storage3's `download()` returns whole objects as bytes (memory
grows with the object) and its paths are un-percent-decoded; reaching into its private session to
stream would break silently on any release. Here every name segment is quoted exactly, bodies are
streamed both ways, and errors carry the status storage-api meant (it often sends HTTP 400 with the
real status in the body's `statusCode`).

The requests are the ones the official client sends (same routes, bodies, `apikey` and Bearer
headers, `/storage/v1` under the project URL), so the code does not know whether it talks to a
hosted project or the local stand-in (`dev/storage_api`, whose contract tests pin the shapes).

`retrying` retries what is worth retrying (5xx, 408, 429, timeouts, connection errors), with
exponential backoff.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

API_PREFIX = "/storage/v1"
PAGE_SIZE = 1000  # list-v2's maximum page
CHUNK = 1 << 20
TIMEOUT = 20.0  # seconds per network operation, as the official client
DEFAULT_CACHE_SECONDS = "3600"  # what the official client sends when no cache control is given
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


def retrying(what: str, fn: Callable[[], Any], retry: Retry, log: Log):
    """Run fn, retrying transient failures; the last failure propagates."""
    for attempt in range(1, retry.attempts + 1):
        try:
            return fn()
        except Exception as exc:
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
        """/segment/.../name-segments, each quoted exactly (a name's `/` separates folders, nothing else)."""
        parts = [*segments, *(name.split("/") if name is not None else ())]
        return "/" + "/".join(quote(part, safe="") for part in parts)

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

    def list_page(self, bucket: str, cursor: str | None = None, limit: int = PAGE_SIZE) -> ObjectPage:
        """One page of list v2 without a delimiter: recursive, case-exact, full names."""
        body: dict[str, Any] = {"limit": limit, "prefix": ""}
        if cursor:
            body["cursor"] = cursor
        data = self.send("POST", self.path("object", "list-v2", bucket), json=body).json()
        return ObjectPage(data.get("objects") or [], bool(data.get("hasNext")), data.get("nextCursor"))

    def info(self, bucket: str, name: str) -> dict:
        """The object's record, user metadata (`metadata`) and owner included."""
        return self.send("GET", self.path("object", "info", bucket, name=name)).json()

    def download(self, bucket: str, name: str, sink: Callable[[bytes], None]) -> None:
        """The object's bytes, streamed into `sink` in chunks (memory stays flat whatever the size)."""
        with self.http.stream("GET", self.path("object", bucket, name=name)) as response:
            if response.status_code >= 400:
                response.read()
                raise StorageApiError.from_response(response)
            for chunk in response.iter_bytes(CHUNK):
                sink(chunk)

    def upload(self, bucket: str, name: str, file: Path, *, content_type: str, cache_control: str | None = None,
               user_metadata: Any = None, upsert: bool = True) -> None:
        """Upload a file, streamed from disk, as the official client's multipart form.

        `cache_control` is a number of seconds (the server stores "max-age=<n>"; "" gives "no-cache");
        None sends the official client's default.
        """
        form = {"cacheControl": DEFAULT_CACHE_SECONDS if cache_control is None else cache_control}
        if user_metadata is not None:
            form["metadata"] = json.dumps(user_metadata)
        with open(file, "rb") as f:
            self.send("POST", self.path("object", bucket, name=name), data=form,
                      files={"file": (name.rsplit("/", 1)[-1], f, content_type)},
                      headers={"x-upsert": "true" if upsert else "false"})

    def remove(self, bucket: str, names: list[str]) -> None:
        """Delete objects by name (storage-api takes at most 1,000 a request)."""
        self.send("DELETE", self.path("object", bucket), json={"prefixes": names})
