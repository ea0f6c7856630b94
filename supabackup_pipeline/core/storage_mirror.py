"""Storage bucket mirrors: every object of a bucket, copied byte for byte into the backup.

    <backup>/storage/manifest.json          per bucket: settings and every object (name, path, size,
                                            sha256, eTag, mime type, cache control, user metadata, ...)
    <backup>/storage/<bucket>/<object name> the bytes, folders kept (files 0600, folders 0700)

Listing uses list v2 without a delimiter: one recursive, case-exact, cursor-paginated walk. List v1
matches prefixes case-insensitively and merges folders that differ only in case, so a walk over
it can miss objects or invent paths; it is never used.

Names come from the server and are untrusted: a name that is absolute, has empty, `.` or `..`
segments, a backslash or a NUL is refused (UnsafeName) before anything of the bucket is written.
Mapping names to paths, deliberately:
- Case: `Case/A.txt` and `case/b.txt` are different objects and stay different paths; the backup
  folder must live on a case-sensitive file system (Linux) for such buckets.
- File vs folder: objects `a` and `a/b` can both exist in Storage, but not on disk. The folder
  wins; the file `a` is stored as `a~1` (the first `~n` free in that folder), and the manifest
  entry's `path` says where each object is. Restores must read `path`, never derive it.
- A path segment longer than 255 bytes is shortened to a prefix plus `~` and a hash.
- A bucket whose id is `manifest.json` is stored in the folder `manifest.json~bucket`.

Downloads run in a bounded thread pool over the storage3 client's own HTTP session. They are
streamed to disk (memory stays flat whatever the object size), hashed on the way (MD5 to verify
against the listed eTag, SHA-256 for the manifest), and retried with exponential backoff on 5xx,
429, timeouts and connection errors. A 404 means the object was deleted after the listing: it is
recorded as missing, not a failure. An object whose bytes keep disagreeing with its listed size
or eTag fails the mirror, naming the object.

Incremental: when the previous backup holds an object with the same size and eTag, its file
(after its SHA-256 is re-checked) is hard-linked instead of downloaded. Backups then share
inodes, so an unchanged bucket costs no bytes, and deleting one backup never touches another.
Published backups are never modified in place, which is what makes sharing inodes safe.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from supabackup_pipeline.core.errors import SupabackupError, UnsafeName
from supabackup_pipeline.core.files import make_private_dir, open_private, sha256_file, write_json
from supabackup_pipeline.core.store import BackupStore

STORAGE_DIR = "storage"
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
PAGE_SIZE = 1000  # list-v2's maximum page
CHUNK = 1 << 20
MAX_SEGMENT_BYTES = 255
_MD5_HEX = re.compile(r"[0-9a-f]{32}")

Log = Callable[[str], Any]


class MirrorError(SupabackupError):
    """A bucket could not be mirrored completely (the message names the bucket and object)."""


class BucketGone(MirrorError):
    """The bucket was deleted after the bucket list was read (nothing to back up)."""


@dataclass(frozen=True)
class Retry:
    """Exponential backoff: attempt n waits base_delay * 2**(n-1) (capped, with jitter)."""

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0

    def delay(self, attempt: int) -> float:
        return min(self.max_delay, self.base_delay * 2 ** (attempt - 1)) * random.uniform(0.8, 1.2)


class _HttpError(Exception):
    """A failed response: `status` is the real one (storage-api puts it in the body of an HTTP 400)."""

    def __init__(self, status: int, http_status: int, message: str) -> None:
        super().__init__(f"HTTP {http_status} (status {status}): {message}")
        self.status, self.http_status = status, http_status


class _Mismatch(Exception):
    """The downloaded bytes disagree with the listed size or eTag (retried, then fatal)."""


def _status(exc: BaseException) -> int | None:
    """The storage status of a storage3 StorageApiError or our _HttpError (None if not an HTTP error)."""
    status = getattr(exc, "status", None)
    try:
        return int(status) if status is not None else None
    except (TypeError, ValueError):
        return None


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, (httpx.TimeoutException, httpx.TransportError, _Mismatch)):
        return True
    status = _status(exc)
    http_status = getattr(exc, "http_status", None)
    return status is not None and (status >= 500 or status in (408, 429) or (http_status or 0) >= 500)


def _not_found(exc: BaseException) -> bool:
    return _status(exc) == 404


def _retrying(what: str, fn: Callable[[], Any], retry: Retry, log: Log):
    """Run fn, retrying transient failures; the last failure propagates."""
    for attempt in range(1, retry.attempts + 1):
        try:
            return fn()
        except Exception as exc:
            if attempt == retry.attempts or not _transient(exc):
                raise
            delay = retry.delay(attempt)
            log(f"{what}: {type(exc).__name__}: {exc}; retry {attempt}/{retry.attempts - 1} in {delay:.2f}s")
            time.sleep(delay)
    raise AssertionError("unreachable")


# ------------------------------------------------------------------ names and paths

def check_bucket_name(bucket: object) -> str:
    if not isinstance(bucket, str) or bucket in ("", ".", "..") or any(c in bucket for c in "/\\\x00"):
        raise UnsafeName(f"refusing bucket name {bucket!r}: it cannot be a folder name inside the backup")
    return bucket


def bucket_dir(bucket: str) -> str:
    """The bucket's folder under storage/ (only `manifest.json` needs escaping: it is our manifest)."""
    check_bucket_name(bucket)
    return bucket + "~bucket" if bucket == MANIFEST_NAME else bucket


def check_object_name(bucket: str, name: object) -> list[str]:
    """The name's path segments, or UnsafeName if it could write anywhere but inside the bucket's folder."""
    def refuse(reason: str) -> UnsafeName:
        return UnsafeName(f"bucket {bucket!r}: refusing object name {name!r} from the server: {reason};"
                          " nothing of this bucket was written")

    if not isinstance(name, str) or not name:
        raise refuse("empty name")
    if name.startswith("/"):
        raise refuse("absolute path")
    if "\\" in name:
        raise refuse("backslash")
    if "\x00" in name:
        raise refuse("NUL character")
    segments = name.split("/")
    if any(s in ("", ".", "..") for s in segments):
        raise refuse("empty, '.' or '..' path segment")
    return segments


def _fit(segment: str) -> str:
    """A segment the file system accepts (NAME_MAX is 255 bytes): long ones become prefix~hash."""
    raw = segment.encode()
    if len(raw) <= MAX_SEGMENT_BYTES:
        return segment
    digest = hashlib.sha256(raw).hexdigest()[:16]
    return raw[:200].decode(errors="ignore") + "~" + digest


def plan_paths(bucket: str, names: Iterable[str]) -> dict[str, str]:
    """Object name -> path inside the bucket folder. Refuses unsafe names; resolves file/folder clashes."""
    paths = {name: tuple(_fit(s) for s in check_object_name(bucket, name)) for name in names}
    taken = set(paths.values())
    folders = {p[:i] for p in taken for i in range(1, len(p))}
    for name in sorted(paths):
        path = paths[name]
        if path in folders:  # object `a` next to `a/b`: the folder keeps the plain name
            n = 1
            while (candidate := (*path[:-1], f"{path[-1]}~{n}")) in taken or candidate in folders:
                n += 1
            taken.add(candidate)
            paths[name] = candidate
    return {name: "/".join(path) for name, path in paths.items()}


def _inside(root: Path, rel: str) -> Path:
    """root/rel, after checking that it resolves inside root (belt and braces after plan_paths)."""
    target = root / rel
    if not target.resolve().is_relative_to(root.resolve()):
        raise UnsafeName(f"object path {rel!r} resolves outside {root}")
    return target


# ------------------------------------------------------------------ listing

def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def list_buckets(client, retry: Retry = Retry(), log: Log = print) -> list[dict]:
    """Every bucket with its settings (id, name, public, file_size_limit, allowed_mime_types, ...)."""
    buckets = _retrying("list buckets", client.list_buckets, retry, log)
    out = []
    for b in buckets:
        out.append({"id": check_bucket_name(b.id), "name": b.name, "public": b.public,
                    "file_size_limit": b.file_size_limit, "allowed_mime_types": b.allowed_mime_types,
                    "owner": b.owner or None, "type": getattr(b, "type", None),
                    "created_at": _iso(b.created_at), "updated_at": _iso(b.updated_at)})
    return sorted(out, key=lambda b: b["id"])


def list_objects(client, bucket: str, retry: Retry = Retry(), log: Log = print) -> list[dict]:
    """Every object of the bucket, via list v2: recursive (no delimiter), case-exact, cursor pages."""
    api = client.from_(bucket)
    objects: list[dict] = []
    seen: set[str] = set()
    cursor: str | None = None
    while True:
        options: dict[str, Any] = {"limit": PAGE_SIZE, "prefix": ""}
        if cursor:
            options["cursor"] = cursor
        try:
            page = _retrying(f"list bucket {bucket!r}", lambda: api.list_v2(options), retry, log)
        except Exception as exc:
            if _not_found(exc):
                raise BucketGone(f"bucket {bucket!r} no longer exists: {exc}") from exc
            raise
        for o in page.objects:
            if o.name in seen:
                raise MirrorError(f"bucket {bucket!r}: the listing returned {o.name!r} twice (broken pagination)")
            seen.add(o.name)
            objects.append({"id": o.id, "name": o.name, "metadata": o.metadata or {},
                            "created_at": _iso(o.created_at), "updated_at": _iso(o.updated_at)})
        if not page.hasNext:
            return objects
        if not page.nextCursor or page.nextCursor == cursor:
            raise MirrorError(f"bucket {bucket!r}: list v2 says there is more but gave no new cursor")
        cursor = page.nextCursor


# ------------------------------------------------------------------ HTTP (over storage3's own session)

def _http_error(response: httpx.Response) -> _HttpError:
    status, message = response.status_code, response.text[:200]
    try:
        body = json.loads(response.content)
        status = int(body.get("statusCode", status))
        message = str(body.get("message") or body.get("error") or message)
    except (ValueError, TypeError, AttributeError):
        pass
    return _HttpError(status, response.status_code, message)


class _Objects:
    """GET object bytes and info for one bucket.

    storage3's `download()` returns the whole object as bytes and un-percent-decodes names, so we
    send the same request through the same client session, base URL and auth headers, streamed
    and with every name segment quoted exactly. If storage3's internals ever change shape, we fall
    back to its public `download()` / `info()`.
    """

    def __init__(self, client, bucket: str) -> None:
        self.bucket = bucket
        self.api = client.from_(bucket)
        self.http = getattr(self.api, "_client", None)
        self.base = getattr(self.api, "_base_url", None)
        self.headers = getattr(self.api, "_headers", None)
        self.raw = isinstance(self.http, httpx.Client) and self.base is not None and hasattr(self.base, "joinpath")

    def _url(self, *parts: str, name: str) -> str:
        return str(self.base.joinpath(*parts, self.bucket, *name.split("/")))

    def info(self, name: str) -> dict:
        if not self.raw:
            return self.api.info(name)
        response = self.http.get(self._url("object", "info", name=name), headers=self.headers)
        if response.status_code >= 400:
            raise _http_error(response)
        return response.json()

    def download(self, name: str, sink: Callable[[bytes], None]) -> None:
        if not self.raw:
            sink(self.api.download(name))
            return
        with self.http.stream("GET", self._url("object", name=name), headers=self.headers) as response:
            if response.status_code >= 400:
                response.read()
                raise _http_error(response)
            for chunk in response.iter_bytes(CHUNK):
                sink(chunk)


# ------------------------------------------------------------------ mirroring

@dataclass
class BucketMirror:
    bucket: dict  # settings, as list_buckets gives them
    dir: str  # folder under storage/
    objects: list[dict] = field(default_factory=list)  # manifest entries, sorted by name
    missing: list[str] = field(default_factory=list)  # listed, then gone (404) before download
    bytes: int = 0
    downloaded_bytes: int = 0  # bytes received, retries included
    linked: int = 0
    seconds: float = 0.0

    @property
    def files(self) -> dict[str, dict]:
        """Backup-relative path -> {bytes, sha256}, for the backup manifest."""
        return {f"{STORAGE_DIR}/{self.dir}/{o['path']}": {"bytes": o["size"], "sha256": o["sha256"]}
                for o in self.objects if not o.get("missing")}

    def summary(self) -> dict:
        return {"bucket": self.bucket["id"], "dir": self.dir, "public": self.bucket.get("public"),
                "objects": len(self.objects) - len(self.missing), "bytes": self.bytes,
                "downloaded_bytes": self.downloaded_bytes, "linked": self.linked, "missing": self.missing,
                "seconds": round(self.seconds, 3)}


class _Progress:
    def __init__(self, bucket: str, objects: int, total: int, log: Log, every: float) -> None:
        self.bucket, self.objects, self.total, self.log, self.every = bucket, objects, total, log, every
        self.done = self.bytes = 0
        self.lock = threading.Lock()
        self.started = self.last = time.monotonic()

    def add_bytes(self, n: int) -> None:
        with self.lock:
            self.bytes += n

    def object_done(self) -> None:
        with self.lock:
            self.done += 1

    def report(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last >= self.every:
            self.last = now
            mb = self.bytes / 1e6
            self.log(f"bucket {self.bucket!r}: {self.done}/{self.objects} objects, {mb:.1f}/{self.total / 1e6:.1f} MB"
                     f" ({mb / max(now - self.started, 1e-9):.1f} MB/s)")


def _etag_md5(etag: Any) -> str | None:
    """The MD5 an eTag stands for, or None (S3 multipart eTags look like "<hex>-<parts>": not an MD5)."""
    if not isinstance(etag, str):
        return None
    value = etag.removeprefix("W/").strip('"').lower()
    return value if _MD5_HEX.fullmatch(value) else None


def _previous_objects(previous: Path | None, bucket: str, log: Log) -> tuple[Path, dict[str, dict]]:
    """The previous backup's bucket folder and its entries by name (empty when unusable)."""
    if previous is None:
        return Path(), {}
    try:
        data = json.loads((previous / MANIFEST_NAME).read_text())
        entry = data["buckets"][bucket]
        return previous / entry["dir"], {o["name"]: o for o in entry["objects"] if not o.get("missing")}
    except KeyError:
        return Path(), {}
    except (OSError, ValueError, TypeError) as exc:
        log(f"bucket {bucket!r}: previous storage manifest in {previous} unusable ({exc}); downloading everything")
        return Path(), {}


def mirror_bucket(client, bucket: dict, out_dir: Path, previous: Path | None = None, workers: int = 8,
                  log: Log = print, retry: Retry = Retry(), user_metadata: bool = True,
                  progress_every: float = 10.0) -> BucketMirror:
    """Mirror one bucket into out_dir/<bucket dir>/ (out_dir: the backup's storage/ folder).

    `previous` is the storage/ folder of the previous valid backup: unchanged objects are
    hard-linked from it. `user_metadata` costs one info request per object not linked.
    """
    started = time.monotonic()
    bucket_id = check_bucket_name(bucket["id"])
    mirror = BucketMirror(bucket=dict(bucket), dir=bucket_dir(bucket_id))
    listed = list_objects(client, bucket_id, retry, log)
    paths = plan_paths(bucket_id, (o["name"] for o in listed))  # refuses before anything is written
    prev_dir, prev_objects = _previous_objects(previous, bucket_id, log)

    root = make_private_dir(Path(out_dir)) / mirror.dir
    if root.exists():
        shutil.rmtree(root)  # a retried step: start from an empty folder
    make_private_dir(root)
    targets = {o["name"]: _inside(root, paths[o["name"]]) for o in listed}
    folders = {parent for t in targets.values() for parent in t.relative_to(root).parents if parent != Path(".")}
    for folder in sorted(folders, key=lambda p: len(p.parts)):
        make_private_dir(root / folder)  # every level 0700 (mkdir(parents=True) would use the umask)

    fetch = _Objects(client, bucket_id)
    progress = _Progress(bucket_id, len(listed), sum(int((o["metadata"] or {}).get("size") or 0) for o in listed),
                         log, progress_every)
    counters = {"downloaded": 0}
    count_lock = threading.Lock()

    def received(n: int) -> None:
        progress.add_bytes(n)
        with count_lock:
            counters["downloaded"] += n

    def entry_for(o: dict, sha256: str, size: int, linked: bool, extra: dict) -> dict:
        meta = o["metadata"] or {}
        return {"name": o["name"], "path": paths[o["name"]], "id": o["id"], "size": size, "sha256": sha256,
                "etag": meta.get("eTag"), "mimetype": meta.get("mimetype"), "cacheControl": meta.get("cacheControl"),
                "last_modified": meta.get("lastModified"), "created_at": o["created_at"],
                "updated_at": o["updated_at"], "linked": linked, **extra}

    def link(o: dict, target: Path) -> dict | None:
        prev = prev_objects.get(o["name"])
        meta = o["metadata"] or {}
        if not prev or meta.get("eTag") is None or prev.get("etag") != meta.get("eTag") \
                or prev.get("size") != meta.get("size"):
            return None
        try:
            source = prev_dir / "/".join(check_object_name(bucket_id, prev["path"]))  # our file, still checked
        except (UnsafeName, KeyError):
            return None
        try:
            if sha256_file(source) != prev["sha256"]:
                log(f"bucket {bucket_id!r}: previous copy of {o['name']!r} fails its SHA-256; downloading it")
                return None
            target.unlink(missing_ok=True)
            os.link(source, target)
        except OSError as exc:
            log(f"bucket {bucket_id!r}: cannot hard-link {o['name']!r} from the previous backup ({exc});"
                " downloading it")
            return None
        extra = {"user_metadata": prev.get("user_metadata"), "owner": prev.get("owner")}
        if user_metadata and prev.get("updated_at") != o["updated_at"]:
            extra = None  # same bytes, but re-uploaded: its user metadata may have changed
        progress.add_bytes(prev["size"])
        return entry_for(o, prev["sha256"], prev["size"], True, extra or {})

    def download(o: dict, target: Path) -> tuple[str, int]:
        meta = o["metadata"] or {}
        size, md5_expected = meta.get("size"), _etag_md5(meta.get("eTag"))
        md5, sha = hashlib.md5(), hashlib.sha256()
        written = 0
        with open_private(target) as out:
            def sink(chunk: bytes) -> None:
                nonlocal written
                md5.update(chunk)
                sha.update(chunk)
                out.write(chunk)
                written += len(chunk)
                received(len(chunk))
            fetch.download(o["name"], sink)
            out.flush()
            os.fsync(out.fileno())
        if size is not None and written != size:
            raise _Mismatch(f"got {written} bytes, the listing says {size}")
        if md5_expected and md5.hexdigest() != md5_expected:
            raise _Mismatch(f"MD5 {md5.hexdigest()} differs from the listed eTag {meta.get('eTag')}")
        return sha.hexdigest(), written

    def one(o: dict) -> dict:
        name, target = o["name"], targets[o["name"]]
        what = f"bucket {bucket_id!r} object {name!r}"
        try:
            entry = link(o, target) if prev_objects else None
            if entry is not None and "user_metadata" in entry:
                return entry
            info = _retrying(f"{what}: info", lambda: fetch.info(name), retry, log) if user_metadata else {}
            extra = {"user_metadata": info.get("metadata"), "owner": info.get("owner") or info.get("owner_id")}
            if entry is not None:
                return {**entry, **extra}
            sha256, size = _retrying(what, lambda: download(o, target), retry, log)
            return entry_for(o, sha256, size, False, extra)
        except Exception as exc:
            if _not_found(exc):
                target.unlink(missing_ok=True)
                log(f"{what}: gone since the listing (404); recorded as missing")
                return {"name": name, "path": paths[name], "missing": True,
                        "size": (o["metadata"] or {}).get("size"), "etag": (o["metadata"] or {}).get("eTag")}
            if isinstance(exc, _Mismatch):
                raise MirrorError(f"{what}: download does not match the listing after {retry.attempts} attempts:"
                                  f" {exc}") from None
            raise MirrorError(f"{what}: download failed: {type(exc).__name__}: {exc}") from exc
        finally:
            progress.object_done()

    entries: list[dict] = []
    if listed:
        pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix=f"mirror-{bucket_id[:20]}")
        try:
            pending: set[Future] = {pool.submit(one, o) for o in listed}
            while pending:
                done, pending = wait(pending, timeout=progress_every, return_when=FIRST_COMPLETED)
                for future in done:
                    entries.append(future.result())  # the first failure stops the mirror
                progress.report()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    progress.report(force=True)

    mirror.objects = sorted(entries, key=lambda e: e["name"])
    mirror.missing = [e["name"] for e in mirror.objects if e.get("missing")]
    mirror.bytes = sum(e["size"] for e in mirror.objects if not e.get("missing"))
    mirror.linked = sum(1 for e in mirror.objects if e.get("linked"))
    mirror.downloaded_bytes = counters["downloaded"]
    mirror.seconds = time.monotonic() - started
    return mirror


def write_storage_manifest(out_dir: Path, mirrors: list[BucketMirror]) -> tuple[str, dict]:
    """storage/manifest.json (settings and objects per bucket); returns its backup-relative path and {bytes, sha256}."""
    data = {"format": MANIFEST_FORMAT, "buckets": {
        m.bucket["id"]: {"settings": m.bucket, "dir": m.dir, "objects": m.objects, "missing": m.missing}
        for m in mirrors}}
    path = make_private_dir(Path(out_dir)) / MANIFEST_NAME
    sha256 = write_json(path, data)
    return f"{STORAGE_DIR}/{MANIFEST_NAME}", {"bytes": path.stat().st_size, "sha256": sha256}


def previous_storage(store: BackupStore, exclude: str | None = None) -> tuple[str, Path] | None:
    """(id, storage folder) of the newest published backup that is valid and holds storage, if any."""
    for backup_id in reversed(store.backup_ids()):
        if backup_id == exclude:
            continue
        try:
            manifest = store.manifest(backup_id)
        except (SupabackupError, OSError, ValueError):
            continue
        folder = store.published(backup_id) / STORAGE_DIR
        if manifest.get("status") in ("complete", "valid") and "storage" in manifest.get("components", []) \
                and (folder / MANIFEST_NAME).is_file():
            return backup_id, folder
    return None
