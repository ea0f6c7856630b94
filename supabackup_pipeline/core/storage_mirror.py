"""Storage bucket mirrors: every object of a bucket, copied byte for byte into the backup.

    <backup>/storage/manifest.json          per bucket: settings and every object (name, path, size,
                                            sha256, eTag, mime type, cache control, user metadata, ...)
    <backup>/storage/<bucket>/<object name> the bytes, folders kept (files 0600, folders 0700)

Listing uses list v2 without a delimiter: one recursive, case-exact, cursor-paginated walk. List v1
matches prefixes case-insensitively and merges folders that differ only in case, so a walk over
it can miss objects or invent paths; it is never used.

Names come from the server and are untrusted. Storage keeps any key S3 tools make, and each gets a
path inside the bucket's folder: the empty, `.` and `..` segments of `photos/` (a folder marker),
`a//b`, `/lead.txt` or `x/../y` become `~empty`, `~dot` and `~dotdot`; a bucket named `.` or `..`
gets the folder `.~bucket` or `..~bucket`. A backslash or a NUL, which Storage's key check
refuses, is refused (UnsafeName) before anything of the bucket is written. Deliberately:
- Case: `Case/A.txt` and `case/b.txt` are different objects and stay different paths; the backup
  folder must live on a case-sensitive file system (Linux) for such buckets.
- File vs folder: objects `a` and `a/b` can both exist in Storage, but not on disk. The folder
  wins; the file `a` is stored as `a~1` (the first `~n` free in that folder), and the manifest
  entry's `path` says where each object is. Restores must read `path`, never derive it.
- A path segment longer than 255 bytes is shortened to a prefix plus `~` and a hash.
- A bucket whose id is `manifest.json` is stored in the folder `manifest.json~bucket`.
- Two names mapped to one path (`a//b` next to a real `a/~empty/b`): the first in name order keeps
  it, the other gets `~n` like a file next to a folder.
(These rules live in core/storage_paths.py, which the restore reads paths with.)

Downloads run in a bounded thread pool over one HTTP client (core/storage_api.py). They are
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
import shutil
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from supabackup_pipeline.core.parts import GOOD_STATUSES, BucketEntry, Component
from supabackup_pipeline.core.errors import SupabackupError, UnsafeName
from supabackup_pipeline.core.files import make_private_dir, open_private, sha256_file, write_json
from supabackup_pipeline.core.storage_api import (
    ContentMismatch,
    Log,
    Retry,
    StorageApi,
    etag_md5,
    is_not_found,
    retrying,
    timestamp,
)
from supabackup_pipeline.core.storage_paths import (
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    STORAGE_DIR,
    bucket_dir,
    check_bucket_name,
    check_object_name,
    inside,
    plan_paths,
)
from supabackup_pipeline.core.store import BackupStore

__all__ = ["MANIFEST_FORMAT", "MANIFEST_NAME", "STORAGE_DIR", "BucketGone", "BucketMirror", "MirrorError", "Retry",
           "bucket_dir", "check_bucket_name", "check_object_name", "list_buckets", "list_objects", "mirror_bucket",
           "plan_paths", "previous_storage", "write_storage_manifest"]


class MirrorError(SupabackupError):
    """A bucket could not be mirrored completely (the message names the bucket and object)."""


class BucketGone(MirrorError):
    """The bucket was deleted after the bucket list was read (nothing to back up)."""


# ------------------------------------------------------------------ listing

def list_buckets(api: StorageApi, retry: Retry = Retry(), log: Log = print) -> list[dict]:
    """Every bucket with its settings (id, name, public, file_size_limit, allowed_mime_types, ...)."""
    buckets = retrying("list buckets", api.list_buckets, retry, log)
    return sorted((_bucket_settings(b) for b in buckets), key=lambda b: b["id"])


def _bucket_settings(b: dict) -> dict:
    """The settings recorded in the manifest (an empty owner is the API's spelling of none)."""
    return {"id": b.get("id"), "name": b.get("name"), "public": b.get("public"),
            "file_size_limit": b.get("file_size_limit"), "allowed_mime_types": b.get("allowed_mime_types"),
            "owner": b.get("owner") or None, "type": b.get("type"),
            "created_at": timestamp(b.get("created_at")), "updated_at": timestamp(b.get("updated_at"))}


def list_objects(api: StorageApi, bucket: str, retry: Retry = Retry(), log: Log = print) -> list[dict]:
    """Every object of the bucket, via list v2: recursive (no delimiter), case-exact, cursor pages."""
    objects: list[dict] = []
    seen: set[str] = set()
    cursor: str | None = None
    while True:
        try:
            page = retrying(f"list bucket {bucket!r}", lambda: api.list_page(bucket, cursor), retry, log)
        except Exception as exc:
            if is_not_found(exc):
                raise BucketGone(f"bucket {bucket!r} no longer exists: {exc}") from exc
            raise
        for o in page.objects:
            if o["name"] in seen:
                raise MirrorError(f"bucket {bucket!r}: the listing returned {o['name']!r} twice (broken pagination)")
            seen.add(o["name"])
            objects.append(_listed(o))
        if not page.has_next:
            return objects
        if not page.next_cursor or page.next_cursor == cursor:
            raise MirrorError(f"bucket {bucket!r}: list v2 says there is more but gave no new cursor")
        cursor = page.next_cursor


def _listed(o: dict) -> dict:
    return {"id": o.get("id"), "name": o["name"], "metadata": o.get("metadata") or {},
            "created_at": timestamp(o.get("created_at")), "updated_at": timestamp(o.get("updated_at"))}


def listed_now(api: StorageApi, bucket: str, name: str, retry: Retry = Retry(), log: Log = print) -> dict | None:
    """One object's listing entry as it is now (None: gone), by a listing of its name as prefix."""
    cursor: str | None = None
    while True:
        page = retrying(f"list bucket {bucket!r} for {name!r}", lambda: api.list_page(bucket, cursor, prefix=name),
                        retry, log)
        for o in page.objects:
            if o["name"] == name:
                return _listed(o)
        if not page.has_next or not page.next_cursor or page.next_cursor == cursor:
            return None
        cursor = page.next_cursor


# ------------------------------------------------------------------ results and progress

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

    def summary(self) -> BucketEntry:
        return BucketEntry(bucket=self.bucket["id"], dir=self.dir, public=self.bucket.get("public"),
                           objects=len(self.objects) - len(self.missing), bytes=self.bytes,
                           downloaded_bytes=self.downloaded_bytes, linked=self.linked, missing=self.missing,
                           seconds=round(self.seconds, 3))

    def record(self, entries: list[dict], downloaded_bytes: int, seconds: float) -> None:
        """Take the objects' manifest entries and the totals they add up to."""
        self.objects = sorted(entries, key=lambda e: e["name"])
        self.missing = [e["name"] for e in self.objects if e.get("missing")]
        self.bytes = sum(e["size"] for e in self.objects if not e.get("missing"))
        self.linked = sum(1 for e in self.objects if e.get("linked"))
        self.downloaded_bytes = downloaded_bytes
        self.seconds = seconds


class MirrorProgress:
    """Objects and bytes done so far, logged every `every` seconds (shared by the download threads)."""

    def __init__(self, bucket: str, objects: int, total: int, log: Log, every: float) -> None:
        self.bucket, self.objects, self.total, self.log, self.every = bucket, objects, total, log, every
        self.done = self.bytes = self.downloaded = 0
        self.lock = threading.Lock()
        self.started = self.last = time.monotonic()

    def add_bytes(self, n: int, downloaded: bool = False) -> None:
        with self.lock:
            self.bytes += n
            if downloaded:
                self.downloaded += n

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


# ------------------------------------------------------------------ the previous backup

@dataclass
class PreviousCopies:
    """The previous backup's files of one bucket: unchanged objects are hard-linked from them."""

    folder: Path = field(default_factory=Path)
    entries: dict[str, dict] = field(default_factory=dict)  # manifest entries by object name

    @classmethod
    def load(cls, previous: Path | None, bucket: str, log: Log) -> PreviousCopies:
        """The previous storage/ folder's entries of `bucket` (none when there are none or they are unusable)."""
        if previous is None:
            return cls()
        try:
            data = json.loads((previous / MANIFEST_NAME).read_text())
            entry = data["buckets"][bucket]
            return cls(previous / entry["dir"], {o["name"]: o for o in entry["objects"] if not o.get("missing")})
        except KeyError:
            return cls()
        except (OSError, ValueError, TypeError) as exc:
            log(f"bucket {bucket!r}: previous storage manifest in {previous} unusable ({exc}); downloading everything")
            return cls()

    def same_bytes(self, listed: dict) -> dict | None:
        """The previous entry when it has the listed object's size and eTag (None: download it)."""
        prev = self.entries.get(listed["name"])
        meta = listed["metadata"] or {}
        if not prev or meta.get("eTag") is None or prev.get("etag") != meta.get("eTag") \
                or prev.get("size") != meta.get("size"):
            return None
        return prev

    def source(self, bucket: str, prev: dict) -> Path | None:
        """The previous entry's file (our own, still checked like a server name)."""
        try:
            return self.folder / "/".join(check_object_name(bucket, prev["path"]))
        except (UnsafeName, KeyError):
            return None


# ------------------------------------------------------------------ one bucket

def _fresh_bucket_folder(out_dir: Path, folder: str, paths: dict[str, str]) -> dict[str, Path]:
    """An empty, private bucket folder with every sub-folder made; object name -> target file."""
    root = make_private_dir(Path(out_dir)) / folder
    if root.exists():
        shutil.rmtree(root)  # a retried step: start from an empty folder
    make_private_dir(root)
    targets = {name: inside(root, rel) for name, rel in paths.items()}
    folders = {parent for t in targets.values() for parent in t.relative_to(root).parents if parent != Path(".")}
    for sub in sorted(folders, key=lambda p: len(p.parts)):
        make_private_dir(root / sub)  # every level 0700 (mkdir(parents=True) would use the umask)
    return targets


def mirror_bucket(api: StorageApi, bucket: dict, out_dir: Path, previous: Path | None = None, workers: int = 8,
                  log: Log = print, retry: Retry = Retry(), user_metadata: bool = True,
                  progress_every: float = 10.0) -> BucketMirror:
    """Mirror one bucket into out_dir/<bucket dir>/ (out_dir: the backup's storage/ folder).

    `previous` is the storage/ folder of the previous valid backup: unchanged objects are
    hard-linked from it. `user_metadata` costs one info request per object not linked.
    """
    started = time.monotonic()
    bucket_id = check_bucket_name(bucket["id"])
    mirror = BucketMirror(bucket=dict(bucket), dir=bucket_dir(bucket_id))
    listed = list_objects(api, bucket_id, retry, log)
    paths = plan_paths(bucket_id, (o["name"] for o in listed))  # refuses before anything is written
    copies = PreviousCopies.load(previous, bucket_id, log)
    targets = _fresh_bucket_folder(out_dir, mirror.dir, paths)
    total = sum(int((o["metadata"] or {}).get("size") or 0) for o in listed)
    progress = MirrorProgress(bucket_id, len(listed), total, log, progress_every)
    copier = ObjectCopier(api, bucket_id, paths, targets, copies, progress, retry, log, user_metadata)
    entries = _copy_all(copier, listed, workers, progress, progress_every)
    mirror.record(entries, progress.downloaded, time.monotonic() - started)
    return mirror


def _copy_all(copier: ObjectCopier, listed: list[dict], workers: int, progress: MirrorProgress,
              every: float) -> list[dict]:
    """Every listed object copied in a bounded pool; the first failure stops the mirror."""
    entries: list[dict] = []
    if listed:
        pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix=f"mirror-{copier.bucket[:20]}")
        try:
            pending: set[Future] = {pool.submit(copier.copy, o) for o in listed}
            while pending:
                done, pending = wait(pending, timeout=every, return_when=FIRST_COMPLETED)
                for future in done:
                    entries.append(future.result())
                progress.report()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    progress.report(force=True)
    return entries


@dataclass
class ObjectCopier:
    """Copies one listed object into the backup: a hard link when unchanged, else a checked download."""

    api: StorageApi
    bucket: str
    paths: dict[str, str]  # object name -> path in the bucket folder
    targets: dict[str, Path]  # object name -> file to write
    copies: PreviousCopies
    progress: MirrorProgress
    retry: Retry
    log: Log
    user_metadata: bool

    def copy(self, o: dict) -> dict:
        """The object's manifest entry (a `missing` one when it was deleted since the listing)."""
        what = f"bucket {self.bucket!r} object {o['name']!r}"
        try:
            return self._copy(o, what)
        except Exception as exc:
            if is_not_found(exc):
                return self._missing(o, what)
            if isinstance(exc, ContentMismatch):
                raise MirrorError(f"{what}: download does not match the listing after {self.retry.attempts}"
                                  f" attempts: {exc}") from None
            raise MirrorError(f"{what}: download failed: {type(exc).__name__}: {exc}") from exc
        finally:
            self.progress.object_done()

    def _copy(self, o: dict, what: str) -> dict:
        entry = self._link(o) if self.copies.entries else None
        if entry is not None and "user_metadata" in entry:
            return entry
        extra = self._owner_and_user_metadata(o["name"], what)
        if entry is not None:
            return {**entry, **extra}
        target = self.targets[o["name"]]
        try:
            sha256, size = retrying(what, lambda: self._download(o, target), self.retry, self.log)
        except ContentMismatch:
            # re-uploaded since the listing (a user replacing an avatar): copied as it is now, once
            now = listed_now(self.api, self.bucket, o["name"], self.retry, self.log)
            if now is None:
                return self._missing(o, what)
            if now["metadata"] == o["metadata"]:
                raise
            self.log(f"{what}: replaced since the listing; copying the object as it is now")
            o, extra = now, self._owner_and_user_metadata(o["name"], what)
            sha256, size = retrying(what, lambda: self._download(o, target), self.retry, self.log)
        return self._entry(o, sha256, size, False, extra)

    def _entry(self, o: dict, sha256: str, size: int, linked: bool, extra: dict) -> dict:
        meta = o["metadata"] or {}
        return {"name": o["name"], "path": self.paths[o["name"]], "id": o["id"], "size": size, "sha256": sha256,
                "etag": meta.get("eTag"), "mimetype": meta.get("mimetype"), "cacheControl": meta.get("cacheControl"),
                "last_modified": meta.get("lastModified"), "created_at": o["created_at"],
                "updated_at": o["updated_at"], "linked": linked, **extra}

    def _missing(self, o: dict, what: str) -> dict:
        """Listed, then gone (404): recorded, not a failure."""
        self.targets[o["name"]].unlink(missing_ok=True)
        self.log(f"{what}: gone since the listing (404); recorded as missing")
        meta = o["metadata"] or {}
        return {"name": o["name"], "path": self.paths[o["name"]], "missing": True,
                "size": meta.get("size"), "etag": meta.get("eTag")}

    def _owner_and_user_metadata(self, name: str, what: str) -> dict:
        """What only the info route tells (one request per object; {} when not asked for)."""
        if not self.user_metadata:
            return {"user_metadata": None, "owner": None}
        info = retrying(f"{what}: info", lambda: self.api.info(self.bucket, name), self.retry, self.log)
        return {"user_metadata": info.get("metadata"), "owner": info.get("owner") or info.get("owner_id")}

    def _link(self, o: dict) -> dict | None:
        """The entry of a hard link to the previous backup's copy, or None when it must be downloaded.

        Without `user_metadata` in it, the bytes are the same but the object was re-uploaded: its
        user metadata may have changed, and the caller asks for it again.
        """
        prev = self.copies.same_bytes(o)
        source = self.copies.source(self.bucket, prev) if prev else None
        if source is None or not self._hard_link(o["name"], source, prev["sha256"]):
            return None
        extra = {"user_metadata": prev.get("user_metadata"), "owner": prev.get("owner")}
        if self.user_metadata and prev.get("updated_at") != o["updated_at"]:
            extra = {}
        self.progress.add_bytes(prev["size"])
        return self._entry(o, prev["sha256"], prev["size"], True, extra)

    def _hard_link(self, name: str, source: Path, sha256: str) -> bool:
        """Link the target to `source` if its SHA-256 still holds (False: download instead)."""
        target = self.targets[name]
        try:
            if sha256_file(source) != sha256:
                self.log(f"bucket {self.bucket!r}: previous copy of {name!r} fails its SHA-256; downloading it")
                return False
            target.unlink(missing_ok=True)
            os.link(source, target)
        except OSError as exc:
            self.log(f"bucket {self.bucket!r}: cannot hard-link {name!r} from the previous backup ({exc});"
                     " downloading it")
            return False
        return True

    def _download(self, o: dict, target: Path) -> tuple[str, int]:
        """Stream the object to `target`, checked against the listed size and eTag: (SHA-256, size)."""
        meta = o["metadata"] or {}
        md5, sha = hashlib.md5(), hashlib.sha256()
        written = 0
        with open_private(target) as out:
            def sink(chunk: bytes) -> None:
                nonlocal written
                md5.update(chunk)
                sha.update(chunk)
                out.write(chunk)
                written += len(chunk)
                self.progress.add_bytes(len(chunk), downloaded=True)
            self.api.download(self.bucket, o["name"], sink)
            out.flush()
            os.fsync(out.fileno())
        if meta.get("size") is not None and written != meta["size"]:
            raise ContentMismatch(f"got {written} bytes, the listing says {meta['size']}")
        expected = etag_md5(meta.get("eTag"))
        if expected and md5.hexdigest() != expected:
            raise ContentMismatch(f"MD5 {md5.hexdigest()} differs from the listed eTag {meta.get('eTag')}")
        return sha.hexdigest(), written


# ------------------------------------------------------------------ the storage manifest

def write_storage_manifest(out_dir: Path, mirrors: list[BucketMirror], project_url: str | None = None) -> tuple[str, dict]:
    """storage/manifest.json (settings and objects per bucket, and the SUPABASE_URL they came from,
    which a rollback checks); returns its backup-relative path and {bytes, sha256}."""
    data = {"format": MANIFEST_FORMAT, "source": {"url": project_url}, "buckets": {
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
        if manifest.get("status") in GOOD_STATUSES and Component.STORAGE in manifest.get("components", []) \
                and (folder / MANIFEST_NAME).is_file():
            return backup_id, folder
    return None
