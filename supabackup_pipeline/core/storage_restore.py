"""Storage rollback: make the live buckets equal to a backup's `storage/` mirror again.

    plan = plan_storage_restore(api, backup / "storage")          # read only: what would change
    print(plan.describe())                                          # --dry-run stops here
    result = apply_storage_restore(api, plan, backup / "storage")
    assert validate_storage(api, backup / "storage") == []          # post-validation

`api` is the project's Storage API (core/storage_api.StorageApi), as for the mirror.

What "equal" means, per backed-up bucket:
- The bucket exists with the backup's `public`, `file_size_limit` and `allowed_mime_types`
  (a missing bucket is created, changed settings are put back).
- Every object of the backup exists with the same bytes, compared by hash, never by date: the
  live listing's size and eTag (an MD5) against the backup's size and MD5. The backup's MD5 is
  its recorded eTag, or computed from its file when only the SHA-256 is usable. A live eTag that
  is not a plain MD5 (S3 multipart "<hex>-<n>") is checked by downloading and hashing the object.
- Same content type, cache control and user metadata. User metadata is not in the listing: it is
  read with one `info` request per object, except when the live object still has the backup's id
  and `updated_at` (never written since the backup; the mirror trusts the same rule).
- No other objects: live objects missing from the backup are deleted, through the Storage API
  (`remove`, 1,000 names a request); a direct SQL DELETE is refused by storage's trigger.

Decisions:
- Objects the backup records as `missing: true` (listed, then gone before their download) have
  no bytes in the backup: the live object, if any, is left alone (neither deleted nor changed)
  and listed in `plan.missing_in_backup`. It existed when the backup started, and deleting
  something we hold no copy of cannot be undone.
- Live buckets the backup does not know are left alone and listed in `plan.extra_buckets`;
  whole buckets are only deleted when asked for explicitly (`delete_extra_buckets=True`).
- Order: buckets are created or updated first, so that settings tightened since the backup do
  not reject the objects being restored; then uploads; then deletions; then final settings.
  When the backup's own settings reject an object it holds (a limit tightened after the object
  was written), the limit is lifted while the bucket is restored and put back at the end (also
  when the restore fails half-way); the plan says so (`relax`).
- Uploads are raw bodies with `upsert`, the file given by path, so the bytes are streamed from
  disk (httpx sends an open file in 64 KiB chunks) whatever the size; the content type, cache
  control and user metadata go in headers (`content-type`, `cache-control`, `x-metadata`), which
  storage-api stores as sent, so each comes back exactly as recorded.
  Before an upload the backup file's size and SHA-256 are checked against the manifest: a
  damaged backup is never restored. File locations come from the manifest's `path` (objects `a`
  and `a/b` are stored as `a~1` and `a/b`), never from the object's name.
- User metadata too large for a header (over 4 KB as base64 JSON) goes with the official client's
  multipart form instead, which takes cache control as a number of seconds (stored "max-age=<n>";
  an empty field gives "no-cache"): for such an object a recorded value of another shape is
  restored as its max-age (or "no-cache") and the plan has a warning.

Idempotent and resumable: the plan is computed from the live project, so planning again after a
crash gives only what is left. `apply_storage_restore` re-checks its plan against the live
project first (`recheck=True`), so re-running it with a stale plan (a retried step) also transfers
only what is left; it never does anything its plan does not list. Uploads run in a bounded pool
with the mirror's retries (5xx, 429, timeouts, connection errors; `upsert` makes a retried upload
harmless); the first failure stops the apply, naming the object.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from supabackup_pipeline.core.errors import SupabackupError, UnsafeName
from supabackup_pipeline.core.files import HASH_CHUNK
from supabackup_pipeline.core.storage_api import (
    Log,
    Retry,
    StorageApi,
    error_status,
    etag_md5,
    fits_header,
    is_not_found,
    retrying,
)
from supabackup_pipeline.core.storage_mirror import BucketGone, list_buckets, list_objects
from supabackup_pipeline.core.storage_paths import (
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    check_bucket_name,
    check_folder_name,
    check_object_name,
    inside,
)

SETTINGS = ("public", "file_size_limit", "allowed_mime_types")
REMOVE_BATCH = 1000  # storage-api's maximum of names per DELETE /object/<bucket>
UPLOAD_REASONS = ("missing", "content", "metadata")
_MAX_AGE = re.compile(r"max-age=(\d+)")


class StorageRestoreError(SupabackupError):
    """The storage restore could not be planned or applied (the message names bucket and object)."""

    result: StorageRestoreResult | None = None  # what was done before the failure (apply only)


# ------------------------------------------------------------------ the plan

@dataclass(frozen=True)
class BucketChange:
    """A bucket to create or whose settings to put back."""

    bucket: str
    settings: dict  # the backup's: name, public, file_size_limit, allowed_mime_types
    changes: dict = field(default_factory=dict)  # setting -> [live, backup] (empty for a creation)
    relax: tuple[str, ...] = ()  # settings lifted (None) while restoring, because the backup's reject objects

    def describe(self) -> str:
        if self.changes:
            text = ", ".join(f"{k} {live!r} -> {want!r}" for k, (live, want) in self.changes.items())
        else:
            text = ", ".join(f"{k}={self.settings.get(k)!r}" for k in SETTINGS)
        if self.relax:
            text += f" (lifting {', '.join(self.relax)} while restoring objects the backup's limits reject)"
        return f"{self.bucket}: {text}"


@dataclass(frozen=True)
class ObjectChange:
    """An object to upload (reason missing/content/metadata), delete (extra) or leave (missing-in-backup)."""

    bucket: str
    name: str
    reason: str
    size: int | None = None  # the backup's size (uploads), the live size (deletes)
    path: str | None = None  # the backup's file, relative to the backup's storage/ folder
    detail: str = ""

    def describe(self) -> str:
        extra = f": {self.detail}" if self.detail else ""
        return f"{self.bucket}/{self.name} ({self.reason}{extra})"


@dataclass
class StorageRestorePlan:
    backup_storage_dir: str
    buckets: list[str]  # the backed-up buckets in scope
    create_buckets: list[BucketChange] = field(default_factory=list)
    update_buckets: list[BucketChange] = field(default_factory=list)  # settings differ, or only `relax`
    uploads: list[ObjectChange] = field(default_factory=list)
    deletes: list[ObjectChange] = field(default_factory=list)
    missing_in_backup: list[ObjectChange] = field(default_factory=list)  # left alone
    extra_buckets: list[str] = field(default_factory=list)  # live, not in the backup: left alone
    delete_buckets: list[str] = field(default_factory=list)  # only with delete_extra_buckets=True
    unchanged: int = 0  # backed-up objects already equal
    checked: dict = field(default_factory=lambda: {"info": 0, "live_hashed": 0, "backup_hashed": 0})
    warnings: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """Nothing to do (buckets left alone and objects missing in the backup do not count)."""
        return not (self.create_buckets or self.update_buckets or self.uploads or self.deletes or self.delete_buckets)

    @property
    def upload_bytes(self) -> int:
        return sum(o.size or 0 for o in self.uploads)

    def counts(self) -> dict:
        reasons = {r: sum(1 for o in self.uploads if o.reason == r) for r in UPLOAD_REASONS}
        return {"buckets_to_create": len(self.create_buckets),
                "buckets_to_update": sum(1 for b in self.update_buckets if b.changes),
                "uploads": len(self.uploads), "upload_bytes": self.upload_bytes, "uploads_by_reason": reasons,
                "deletes": len(self.deletes), "missing_in_backup": len(self.missing_in_backup),
                "extra_buckets": len(self.extra_buckets), "buckets_to_delete": len(self.delete_buckets),
                "unchanged": self.unchanged}

    def mismatches(self) -> list[str]:
        """How the live project differs from the backup, one line each (empty: equal)."""
        out = [f"bucket {b.bucket!r} does not exist" for b in self.create_buckets]
        out += [f"bucket {b.bucket!r}: {k} is {live!r}, the backup has {want!r}"
                for b in self.update_buckets for k, (live, want) in b.changes.items()]
        for o in self.uploads:
            what = {"missing": "is missing", "content": "content differs", "metadata": "metadata differs"}[o.reason]
            out.append(f"bucket {o.bucket!r} object {o.name!r} {what}" + (f": {o.detail}" if o.detail else ""))
        out += [f"bucket {o.bucket!r} object {o.name!r} is not in the backup" for o in self.deletes]
        return out

    def to_dict(self) -> dict:
        return {**asdict(self), "counts": self.counts()}

    @classmethod
    def from_dict(cls, data: dict) -> StorageRestorePlan:
        data = {k: v for k, v in data.items() if k != "counts"}
        for key in ("create_buckets", "update_buckets"):
            data[key] = [BucketChange(**{**b, "relax": tuple(b.get("relax") or ())}) for b in data.get(key, [])]
        for key in ("uploads", "deletes", "missing_in_backup"):
            data[key] = [ObjectChange(**o) for o in data.get(key, [])]
        return cls(**data)

    def describe(self, limit: int | None = None) -> str:
        """The plan for people (--dry-run): counts, then names (at most `limit` per section)."""
        def section(title: str, items: list[str]) -> list[str]:
            if not items:
                return [f"  {title}: none"]
            shown = items if limit is None else items[:limit]
            more = [f"    ... and {len(items) - len(shown)} more"] if len(shown) < len(items) else []
            return [f"  {title} ({len(items)}):", *(f"    {line}" for line in shown), *more]

        reasons = ", ".join(f"{n} {r}" for r, n in self.counts()["uploads_by_reason"].items() if n)
        lines = [f"Storage restore from {self.backup_storage_dir}: {len(self.buckets)} bucket(s) in the backup,"
                 f" {self.unchanged} object(s) already equal" + ("; nothing to do" if self.empty else "")]
        lines += section("buckets to create", [b.describe() for b in self.create_buckets])
        lines += section("bucket settings to restore", [b.describe() for b in self.update_buckets])
        lines += section(f"objects to upload, {_mb(self.upload_bytes)}" + (f" [{reasons}]" if reasons else ""),
                         [o.describe() for o in self.uploads])
        lines += section("objects to delete (not in the backup)", [o.describe() for o in self.deletes])
        lines += section("objects the backup recorded as missing (left alone)",
                         [o.describe() for o in self.missing_in_backup])
        lines += section("live buckets not in the backup (left alone)", self.extra_buckets)
        if self.delete_buckets:
            lines += section("live buckets not in the backup to DELETE", self.delete_buckets)
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


@dataclass
class StorageRestoreResult:
    buckets_created: list[str] = field(default_factory=list)
    buckets_updated: list[str] = field(default_factory=list)
    buckets_deleted: list[str] = field(default_factory=list)
    uploaded: list[str] = field(default_factory=list)  # "bucket/name"
    uploaded_bytes: int = 0
    deleted: list[str] = field(default_factory=list)  # "bucket/name"
    already_done: int = 0  # planned actions the re-check found done (a resumed apply)
    seconds: float = 0.0

    def summary(self) -> dict:
        return {"buckets_created": len(self.buckets_created), "buckets_updated": len(self.buckets_updated),
                "buckets_deleted": len(self.buckets_deleted), "uploaded": len(self.uploaded),
                "uploaded_bytes": self.uploaded_bytes, "deleted": len(self.deleted),
                "already_done": self.already_done, "seconds": round(self.seconds, 3)}


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n} bytes"


# ------------------------------------------------------------------ the backup

def _read_manifest(root: Path) -> dict:
    try:
        data = json.loads((root / MANIFEST_NAME).read_text())
    except (OSError, ValueError) as exc:
        raise StorageRestoreError(f"cannot read the storage manifest {root / MANIFEST_NAME}: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT or not isinstance(data.get("buckets"), dict):
        raise StorageRestoreError(f"{root / MANIFEST_NAME}: not a storage manifest of format {MANIFEST_FORMAT}")
    return data["buckets"]


def _backup_file(root: Path, entry: dict, obj: dict) -> tuple[str, Path]:
    """(path relative to root, absolute path) of an object's file, from the manifest's `path`."""
    bucket_folder = entry["dir"]
    check_folder_name(bucket_folder)
    check_object_name(entry["dir"], obj["path"])  # our own file, still checked: no .., no absolute paths
    rel = f"{bucket_folder}/{obj['path']}"
    return rel, inside(root, rel)


def _hash_file(path: Path) -> tuple[int, str, str]:
    """(size, MD5, SHA-256) of a file, read once."""
    md5, sha, size = hashlib.md5(), hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            md5.update(chunk)
            sha.update(chunk)
            size += len(chunk)
    return size, md5.hexdigest(), sha.hexdigest()


# ------------------------------------------------------------------ comparing

def _mime_allowed(mime: str | None, allowed: list[str] | None) -> bool:
    """storage-api's rule: exact types or `type/*`, parameters ignored, case-insensitive."""
    if not allowed:
        return True
    wanted = (mime or "").split(";", 1)[0].strip().lower()
    for entry in allowed:
        entry = entry.strip().lower()
        if entry == wanted or (entry.endswith("/*") and entry[:-2] == wanted.split("/", 1)[0]):
            return True
    return False


def _norm_setting(key: str, value: Any) -> Any:
    if key == "allowed_mime_types":
        return sorted(value) if value else None  # [] and null both mean "any type"
    if key == "public":
        return bool(value)
    return value


def _expected_cache(obj: dict) -> tuple[str | None, bool]:
    """(the cache control the restored object gets, exact?): as recorded, sent in a header; through
    the form (user metadata too large for a header) as `_cache_field` maps it. None: nothing
    recorded, nothing compared."""
    value = obj.get("cacheControl")
    if value is None or fits_header(obj.get("user_metadata")):
        return value, True
    _, stored, exact = _cache_field(value)
    return stored, exact


def _cache_field(value: str | None) -> tuple[str | None, str | None, bool]:
    """(the form upload's `cacheControl` seconds, the value the server will then store, exact?) for
    a recorded value: storage-api stores "max-age=<field>", or "no-cache" when the field is empty."""
    if value is None:
        return None, None, True
    if value == "no-cache":
        return "", "no-cache", True
    if match := _MAX_AGE.fullmatch(value.strip()):
        return match.group(1), f"max-age={match.group(1)}", True
    if match := _MAX_AGE.search(value):
        return match.group(1), f"max-age={match.group(1)}", False
    return "", "no-cache", False


def _same_user_metadata(a: Any, b: Any) -> bool:
    return (a or {}) == (b or {})


@dataclass
class _BucketDiff:
    uploads: list[ObjectChange] = field(default_factory=list)
    deletes: list[ObjectChange] = field(default_factory=list)
    missing_in_backup: list[ObjectChange] = field(default_factory=list)
    unchanged: int = 0


@dataclass
class _PlanContext:
    """What comparing buckets needs besides the bucket: the API, the backup, and the plan's tallies."""

    api: StorageApi
    root: Path  # the backup's storage/ folder
    pool: ThreadPoolExecutor
    plan: StorageRestorePlan  # its `checked` counts and `warnings` are filled in
    retry: Retry
    log: Log
    user_metadata: bool
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, what: str) -> None:
        with self.lock:
            self.plan.checked[what] += 1


@dataclass
class _ObjectComparison:
    """Compares the objects of one backed-up bucket with their live copies, by hash, never by date."""

    ctx: _PlanContext
    bucket: str
    entry: dict  # the bucket's manifest entry
    live_by_name: dict[str, dict]

    def compare(self, obj: dict) -> ObjectChange | None:
        """The upload the object needs (None: the live object is already equal)."""
        name = obj["name"]
        rel, path = _backup_file(self.ctx.root, self.entry, obj)
        if not path.is_file():
            raise StorageRestoreError(f"bucket {self.bucket!r} object {name!r}: the backup's file {rel!r} is missing")
        live = self.live_by_name.get(name)
        reason, detail = ("missing", "") if live is None else self._difference(obj, live)
        return ObjectChange(self.bucket, name, reason, obj.get("size"), rel, detail) if reason else None

    def _difference(self, obj: dict, live: dict) -> tuple[str | None, str]:
        """(reason, detail) of how the live object differs: content first, then metadata."""
        meta = live["metadata"] or {}
        if meta.get("size") != obj.get("size"):
            return "content", f"size {meta.get('size')} != backup {obj.get('size')}"
        want_md5 = self._backup_md5(obj)
        have_md5 = self._live_md5(obj["name"], meta)
        if have_md5 is None:
            return "missing", ""
        if have_md5 != want_md5:
            return "content", f"MD5 {have_md5} != backup {want_md5}"
        details = _listed_metadata_differences(obj, meta)
        if self.ctx.user_metadata and "user_metadata" in obj and not details and not _untouched(obj, live):
            exists, have = self._live_user_metadata(obj["name"])
            if not exists:
                return "missing", ""
            if not _same_user_metadata(have, obj["user_metadata"]):
                details.append(f"user metadata {have!r} != backup {obj['user_metadata']!r}")
        return ("metadata", "; ".join(details)) if details else (None, "")

    def _backup_md5(self, obj: dict) -> str:
        """The backup's MD5: its recorded eTag, or its file hashed."""
        md5 = etag_md5(obj.get("etag"))
        if md5:
            return md5
        _, path = _backup_file(self.ctx.root, self.entry, obj)
        self.ctx.count("backup_hashed")
        try:
            return _hash_file(path)[1]
        except OSError as exc:
            raise StorageRestoreError(f"bucket {self.bucket!r} object {obj['name']!r}: backup file unreadable:"
                                      f" {exc}") from exc

    def _live_md5(self, name: str, meta: dict) -> str | None:
        """The live object's MD5: its eTag, or its bytes hashed (None: gone meanwhile)."""
        md5 = etag_md5(meta.get("eTag"))
        if md5:
            return md5
        self.ctx.count("live_hashed")

        def hash_download() -> str:
            digest = hashlib.md5()
            self.ctx.api.download(self.bucket, name, digest.update)
            return digest.hexdigest()
        try:
            return retrying(f"bucket {self.bucket!r} object {name!r}: download to hash", hash_download,
                            self.ctx.retry, self.ctx.log)
        except Exception as exc:
            if is_not_found(exc):
                return None
            raise

    def _live_user_metadata(self, name: str) -> tuple[bool, Any]:
        """(exists, user metadata) of the live object: the listing does not carry it."""
        self.ctx.count("info")
        try:
            info = retrying(f"bucket {self.bucket!r} object {name!r}: info",
                            lambda: self.ctx.api.info(self.bucket, name), self.ctx.retry, self.ctx.log)
        except Exception as exc:
            if is_not_found(exc):
                return False, None
            raise
        return True, info.get("metadata")


def _listed_metadata_differences(obj: dict, meta: dict) -> list[str]:
    """Content type and cache control: what the listing shows besides the bytes."""
    details = []
    if obj.get("mimetype") is not None and meta.get("mimetype") != obj["mimetype"]:
        details.append(f"content type {meta.get('mimetype')!r} != backup {obj['mimetype']!r}")
    cache_expected, _ = _expected_cache(obj)
    if cache_expected is not None and meta.get("cacheControl") != cache_expected:
        details.append(f"cache control {meta.get('cacheControl')!r} != backup {cache_expected!r}")
    return details


def _untouched(obj: dict, live: dict) -> bool:
    """Never written since the backup (same id and updated_at): its user metadata is the backup's."""
    return bool(obj.get("id") and live.get("id") == obj.get("id") and live.get("updated_at") == obj.get("updated_at"))


def _diff_objects(ctx: _PlanContext, bucket: str, entry: dict, live: list[dict] | None) -> _BucketDiff:
    """Compare one bucket's backup entries with its live listing (None: the bucket does not exist)."""
    diff = _BucketDiff()
    live_by_name = {o["name"]: o for o in live or []}
    present = []
    for obj in entry["objects"]:
        if obj.get("missing"):
            there = obj["name"] in live_by_name
            diff.missing_in_backup.append(ObjectChange(
                bucket, obj["name"], "missing-in-backup", obj.get("size"), None,
                "exists live, left alone" if there else "absent live too"))
            continue
        _warn_unrestorable_cache_control(ctx.plan.warnings, bucket, obj)
        present.append(obj)

    comparison = _ObjectComparison(ctx, bucket, entry, live_by_name)
    for change in ctx.pool.map(comparison.compare, present):
        if change is None:
            diff.unchanged += 1
        else:
            diff.uploads.append(change)
    backed_up = {o["name"] for o in entry["objects"]}
    for name, o in sorted(live_by_name.items()):
        if name not in backed_up:
            diff.deletes.append(ObjectChange(bucket, name, "extra", (o["metadata"] or {}).get("size")))
    return diff


def _warn_unrestorable_cache_control(warnings: list[str], bucket: str, obj: dict) -> None:
    as_stored, exact = _expected_cache(obj)
    if not exact:
        warnings.append(f"bucket {bucket!r} object {obj['name']!r}: cache control {obj['cacheControl']!r}"
                        " cannot be set by the form upload its large user metadata needs; restored as"
                        f" {as_stored!r}")


def _relax(settings: dict, uploads: list[ObjectChange], objects: dict[str, dict]) -> tuple[str, ...]:
    """The settings that would reject some of the objects being restored."""
    relax = []
    limit = settings.get("file_size_limit")
    if limit is not None and any((o.size or 0) > limit for o in uploads):
        relax.append("file_size_limit")
    allowed = settings.get("allowed_mime_types")
    if allowed and any(not _mime_allowed(objects[o.name].get("mimetype") or "application/octet-stream", allowed)
                       for o in uploads):
        relax.append("allowed_mime_types")
    return tuple(relax)


def plan_storage_restore(api: StorageApi, backup_storage_dir: Path, buckets: list[str] | None = None, *,
                         workers: int = 8, log: Log = print, retry: Retry = Retry(), user_metadata: bool = True,
                         delete_extra_buckets: bool = False) -> StorageRestorePlan:
    """What it takes to make the live buckets equal to the backup (reads only; nothing changes).

    `buckets`: only these backed-up buckets (default: all of the backup, and then live buckets the
    backup does not know are listed as extra). `user_metadata=False` skips the per-object info
    requests (user metadata is then not compared).
    """
    root = Path(backup_storage_dir)
    manifest = _read_manifest(root)
    if buckets is not None:
        unknown = sorted(set(buckets) - set(manifest))
        if unknown:
            raise StorageRestoreError(f"bucket(s) {', '.join(map(repr, unknown))} are not in the backup {root}")
    scope = sorted(manifest if buckets is None else set(buckets))
    live_buckets = {b["id"]: b for b in list_buckets(api, retry, log)}
    plan = StorageRestorePlan(backup_storage_dir=str(root), buckets=scope)
    if buckets is None:
        plan.extra_buckets = sorted(set(live_buckets) - set(manifest))
        if delete_extra_buckets:
            plan.delete_buckets = list(plan.extra_buckets)

    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="restore-plan") as pool:
        ctx = _PlanContext(api, root, pool, plan, retry, log, user_metadata)
        for bucket in scope:
            _plan_bucket(ctx, bucket, manifest[bucket], live_buckets.get(bucket))
    return plan


def _plan_bucket(ctx: _PlanContext, bucket: str, entry: dict, live_settings: dict | None) -> None:
    """Add to the plan what one backed-up bucket needs: its settings, then its objects."""
    check_bucket_name(bucket)
    settings = {"name": entry["settings"].get("name") or bucket, **{k: entry["settings"].get(k) for k in SETTINGS}}
    live = None
    if live_settings is not None:
        try:
            live = list_objects(ctx.api, bucket, ctx.retry, ctx.log)
        except BucketGone:
            live = None
    diff = _diff_objects(ctx, bucket, entry, live)
    relax = _relax(settings, diff.uploads, {o["name"]: o for o in entry["objects"]})
    plan = ctx.plan
    if live is None:
        plan.create_buckets.append(BucketChange(bucket, settings, {}, relax))
    else:
        changes = {k: [live_settings.get(k), settings[k]] for k in SETTINGS
                   if _norm_setting(k, live_settings.get(k)) != _norm_setting(k, settings[k])}
        if changes or relax:
            plan.update_buckets.append(BucketChange(bucket, settings, changes, relax))
    plan.uploads += diff.uploads
    plan.deletes += diff.deletes
    plan.missing_in_backup += diff.missing_in_backup
    plan.unchanged += diff.unchanged


def validate_storage(api: StorageApi, backup_storage_dir: Path, buckets: list[str] | None = None, *, workers: int = 8,
                     log: Log = print, retry: Retry = Retry(), user_metadata: bool = True) -> list[str]:
    """Post-validation: how the live buckets differ from the backup (bucket settings, object
    listing, sizes and MD5s, content types, cache control, user metadata); [] when equal.
    Live buckets outside the backup and objects the backup recorded as missing are not differences."""
    plan = plan_storage_restore(api, backup_storage_dir, buckets, workers=workers, log=log, retry=retry,
                                user_metadata=user_metadata)
    return plan.mismatches()


# ------------------------------------------------------------------ applying

def _bucket_options(settings: dict, relax: tuple[str, ...] = ()) -> dict:
    return {k: (None if k in relax else settings.get(k)) for k in SETTINGS}


def _recheck(plan: StorageRestorePlan, fresh: StorageRestorePlan) -> tuple[StorageRestorePlan, int]:
    """The part of `plan` that `fresh` (planned just now) says is still to do, and how much is done."""
    key = lambda o: (o.bucket, o.name)  # noqa: E731
    wanted_up = {key(o) for o in plan.uploads}
    wanted_del = {key(o) for o in plan.deletes}
    planned_buckets = {b.bucket for b in plan.create_buckets + plan.update_buckets}
    todo = StorageRestorePlan(backup_storage_dir=plan.backup_storage_dir, buckets=plan.buckets,
                              missing_in_backup=fresh.missing_in_backup, extra_buckets=fresh.extra_buckets,
                              unchanged=fresh.unchanged, checked=fresh.checked, warnings=fresh.warnings)
    todo.uploads = [o for o in fresh.uploads if key(o) in wanted_up]
    todo.deletes = [o for o in fresh.deletes if key(o) in wanted_del]
    upload_buckets = {o.bucket for o in todo.uploads}
    for b in fresh.create_buckets:
        if b.bucket in planned_buckets or b.bucket in upload_buckets:
            todo.create_buckets.append(b)
    for b in fresh.update_buckets:
        if b.bucket in planned_buckets:
            todo.update_buckets.append(b)
        elif b.relax and b.bucket in upload_buckets:  # only the lifting that our uploads need
            todo.update_buckets.append(BucketChange(b.bucket, b.settings, {}, b.relax))
    todo.delete_buckets = [b for b in plan.delete_buckets if b in set(fresh.extra_buckets)]
    still_buckets = {b.bucket for b in todo.create_buckets + todo.update_buckets} & planned_buckets
    done = (len(plan.uploads) - len(todo.uploads)) + (len(plan.deletes) - len(todo.deletes)) \
        + (len(planned_buckets) - len(still_buckets)) + (len(plan.delete_buckets) - len(todo.delete_buckets))
    return todo, done


class _Progress:
    def __init__(self, total: int, total_bytes: int, log: Log, every: float) -> None:
        self.total, self.total_bytes, self.log, self.every = total, total_bytes, log, every
        self.done = self.bytes = 0
        self.lock = threading.Lock()
        self.started = self.last = time.monotonic()

    def add(self, n_bytes: int) -> None:
        with self.lock:
            self.done += 1
            self.bytes += n_bytes

    def report(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last >= self.every:
            self.last = now
            self.log(f"storage restore: uploaded {self.done}/{self.total} objects,"
                     f" {self.bytes / 1e6:.1f}/{self.total_bytes / 1e6:.1f} MB")


def apply_storage_restore(api: StorageApi, plan: StorageRestorePlan, backup_storage_dir: Path, workers: int = 8,
                          log: Log = print, retry: Retry = Retry(), *, recheck: bool = True,
                          progress_every: float = 10.0) -> StorageRestoreResult:
    """Carry out the plan: buckets, uploads, deletions, final settings (see the module docstring).

    With `recheck` (default) the plan is first compared with the live project again, and what is
    already done is skipped: re-running after a crash, even with the same plan, transfers only what
    is left. Raises StorageRestoreError on the first failure (its `result` says what was done).
    """
    started = time.monotonic()
    root = Path(backup_storage_dir)
    if Path(plan.backup_storage_dir).resolve() != root.resolve():
        raise StorageRestoreError(f"the plan is for the backup {plan.backup_storage_dir}, not {root}")
    result = StorageRestoreResult()
    if recheck:
        plan, result.already_done = _still_to_do(api, plan, root, workers, retry, log)
        if result.already_done:
            log(f"storage restore: {result.already_done} planned action(s) already done; resuming")
    applier = _Applier(api, root, _read_manifest(root), result, retry, log, started)
    try:
        applier.restore_buckets(plan)  # before any upload: tightened limits must not reject what is restored
        applier.upload(plan, workers, progress_every)
        applier.delete_objects(plan)
        applier.delete_buckets(plan)  # only when asked for
    finally:
        applier.put_back_limits()  # also when the restore failed half-way
    result.seconds = time.monotonic() - started
    log(f"storage restore: done: {result.summary()}")
    return result


def _still_to_do(api: StorageApi, plan: StorageRestorePlan, root: Path, workers: int, retry: Retry,
                 log: Log) -> tuple[StorageRestorePlan, int]:
    """The plan re-checked against the live project: (what is left, how many actions are done)."""
    fresh = plan_storage_restore(api, root, plan.buckets, workers=workers, log=log, retry=retry)
    if plan.delete_buckets:
        live = {b["id"] for b in list_buckets(api, retry, log)}
        fresh.extra_buckets = sorted(live - set(_read_manifest(root)))
    return _recheck(plan, fresh)


@dataclass
class _Applier:
    """Carries out one plan's steps, recording each in `result`; remembers the limits it lifted."""

    api: StorageApi
    root: Path  # the backup's storage/ folder
    manifest: dict  # its buckets
    result: StorageRestoreResult
    retry: Retry
    log: Log
    started: float
    relaxed: dict[str, dict] = field(default_factory=dict)  # bucket -> final settings, limits lifted meanwhile

    def fail(self, message: str) -> StorageRestoreError:
        """The error to raise, carrying what was done so far."""
        self.result.seconds = time.monotonic() - self.started
        error = StorageRestoreError(message)
        error.result = self.result
        return error

    def _attempt(self, what: str, fn, failure: str) -> None:
        """fn, retried; its last failure becomes a StorageRestoreError saying `failure`."""
        try:
            retrying(what, fn, self.retry, self.log)
        except Exception as exc:
            raise self.fail(f"{failure}: {type(exc).__name__}: {exc}") from exc

    def restore_buckets(self, plan: StorageRestorePlan) -> None:
        """Create missing buckets and put settings back (limits the restore needs lifted stay lifted)."""
        for b in plan.create_buckets:
            self.log(f"storage restore: creating bucket {b.describe()}")
            options = _bucket_options(b.settings, b.relax)
            self._attempt(f"create bucket {b.bucket!r}",
                          lambda b=b, options=options: _create_bucket(self.api, b.bucket, b.settings["name"], options),
                          f"bucket {b.bucket!r}: create failed")
            self.result.buckets_created.append(b.bucket)
            if b.relax:
                self.relaxed[b.bucket] = b.settings
        for b in plan.update_buckets:
            self.log(f"storage restore: bucket settings {b.describe()}")
            self._attempt(f"update bucket {b.bucket!r}",
                          lambda b=b: self.api.update_bucket(b.bucket, _bucket_options(b.settings, b.relax)),
                          f"bucket {b.bucket!r}: settings update failed")
            if b.changes:
                self.result.buckets_updated.append(b.bucket)
            if b.relax:
                self.relaxed[b.bucket] = b.settings

    def upload(self, plan: StorageRestorePlan, workers: int, progress_every: float) -> None:
        """The planned uploads, in a bounded pool; the first failure stops them and is raised."""
        if not plan.uploads:
            return
        self.log(f"storage restore: uploading {len(plan.uploads)} object(s), {_mb(plan.upload_bytes)}")
        uploads = _UploadPool(self, plan, progress_every)
        uploads.run(workers)
        if uploads.failures:
            o, exc = uploads.failures[0]  # the first to fail, in time
            if isinstance(exc, StorageRestoreError):
                raise self.fail(str(exc)) from exc
            more = len(uploads.failures) - 1
            raise self.fail(f"bucket {o.bucket!r} object {o.name!r}: upload failed: {type(exc).__name__}: {exc}"
                            + (f" (and {more} more failed uploads)" if more else "")) from exc
        uploads.progress.report(force=True)

    def delete_objects(self, plan: StorageRestorePlan) -> None:
        """Objects that are not in the backup, through the Storage API (SQL deletes are refused)."""
        by_bucket: dict[str, list[str]] = {}
        for o in plan.deletes:
            by_bucket.setdefault(o.bucket, []).append(o.name)
        for bucket, names in by_bucket.items():
            self.log(f"storage restore: deleting {len(names)} object(s) of bucket {bucket!r} that are not in the"
                     " backup")
            for i in range(0, len(names), REMOVE_BATCH):
                batch = names[i:i + REMOVE_BATCH]
                self._attempt(f"bucket {bucket!r}: remove", lambda bucket=bucket, batch=batch: self.api.remove(
                    bucket, batch), f"bucket {bucket!r}: deleting {batch[0]!r}...")
                self.result.deleted += [f"{bucket}/{n}" for n in batch]

    def delete_buckets(self, plan: StorageRestorePlan) -> None:
        for bucket in plan.delete_buckets:
            self.log(f"storage restore: deleting bucket {bucket!r} (not in the backup)")
            try:
                _delete_bucket(self.api, bucket, self.retry, self.log)
            except Exception as exc:
                raise self.fail(f"bucket {bucket!r}: delete failed: {type(exc).__name__}: {exc}") from exc
            self.result.buckets_deleted.append(bucket)

    def put_back_limits(self) -> None:
        """The backup's limits again where they were lifted; a failure is logged (a new plan shows it)."""
        for bucket, settings in self.relaxed.items():
            try:
                retrying(f"update bucket {bucket!r}", lambda: self.api.update_bucket(bucket, _bucket_options(settings)),
                         self.retry, self.log)
            except Exception as exc:
                self.log(f"storage restore: could not put back the limits of bucket {bucket!r}: {exc};"
                         " planning again will show it")
            else:
                self.log(f"storage restore: bucket {bucket!r} limits put back")


class _UploadPool:
    """Uploads in a bounded pool: the first failure stops what has not started; failures are kept in order."""

    def __init__(self, applier: _Applier, plan: StorageRestorePlan, progress_every: float) -> None:
        self.applier, self.uploads, self.every = applier, plan.uploads, progress_every
        self.progress = _Progress(len(plan.uploads), plan.upload_bytes, applier.log, progress_every)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.failures: list[tuple[ObjectChange, BaseException]] = []
        manifest = applier.manifest
        self.index = {b: {x["name"]: x for x in manifest[b]["objects"]} for b in {o.bucket for o in plan.uploads}}

    def run(self, workers: int) -> None:
        pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="restore-upload")
        try:
            pending: set[Future] = {pool.submit(self.upload_one, o) for o in self.uploads}
            while pending and not self.stop.is_set():
                done, pending = wait(pending, timeout=self.every, return_when=FIRST_COMPLETED)
                for future in done:
                    future.result()  # upload_one() keeps its own failures; this only surfaces bugs
                self.progress.report()
        finally:
            self.stop.set()
            pool.shutdown(wait=True, cancel_futures=True)

    def upload_one(self, o: ObjectChange) -> None:
        if self.stop.is_set():
            return
        a, obj = self.applier, self.index[o.bucket][o.name]
        try:
            _upload_one(a.api, a.root, o.bucket, a.manifest[o.bucket], obj, a.retry, a.log)
        except BaseException as exc:
            with self.lock:
                self.failures.append((o, exc))
            self.stop.set()
            return
        with self.lock:
            a.result.uploaded.append(f"{o.bucket}/{o.name}")
            a.result.uploaded_bytes += obj["size"]
        self.progress.add(obj["size"])


def _create_bucket(api: StorageApi, bucket: str, name: str, options: dict) -> None:
    """Create the bucket; one that exists already (an earlier attempt's lost answer) gets our settings."""
    try:
        api.create_bucket(bucket, name, {k: v for k, v in options.items() if v is not None})  # null: default
    except Exception as exc:
        if error_status(exc) != 409:
            raise
        api.update_bucket(bucket, options)


def _delete_bucket(api: StorageApi, bucket: str, retry: Retry, log: Log) -> None:
    """Empty the bucket through the API (a listing at a time), then delete it; a gone bucket is done."""
    while True:
        try:
            names = [o["name"] for o in list_objects(api, bucket, retry, log)]
        except BucketGone:
            return
        if not names:
            break
        for i in range(0, len(names), REMOVE_BATCH):
            retrying(f"bucket {bucket!r}: remove", lambda i=i: api.remove(bucket, names[i:i + REMOVE_BATCH]),
                     retry, log)
    retrying(f"delete bucket {bucket!r}", lambda: api.delete_bucket(bucket), retry, log)


def _upload_one(api: StorageApi, root: Path, bucket: str, entry: dict, obj: dict, retry: Retry, log: Log) -> None:
    """Upload one object from the backup (checked against the manifest first), with its metadata."""
    name = obj["name"]
    what = f"bucket {bucket!r} object {name!r}"
    path = _checked_backup_file(root, entry, obj, what)
    content_type = obj.get("mimetype") or "application/octet-stream"
    meta = obj.get("user_metadata")
    # a path, not bytes: the file is opened per attempt and streamed from disk
    if fits_header(meta):
        retrying(what, lambda: api.upload(bucket, name, path, content_type=content_type,
                                          cache_control=obj.get("cacheControl"), user_metadata=meta), retry, log)
    else:
        seconds, _, _ = _cache_field(obj.get("cacheControl"))
        retrying(what, lambda: api.upload_form(bucket, name, path, content_type=content_type, cache_seconds=seconds,
                                               user_metadata=meta), retry, log)


def _checked_backup_file(root: Path, entry: dict, obj: dict, what: str) -> Path:
    """The object's backup file, after checking its size and SHA-256 against the manifest."""
    try:
        rel, path = _backup_file(root, entry, obj)
    except UnsafeName as exc:
        raise StorageRestoreError(f"{what}: {exc}") from exc
    try:
        size, _, sha256 = _hash_file(path)
    except OSError as exc:
        raise StorageRestoreError(f"{what}: backup file {rel!r} unreadable: {exc}") from exc
    if size != obj.get("size") or sha256 != obj.get("sha256"):
        raise StorageRestoreError(f"{what}: the backup's file {rel!r} does not match the manifest"
                                  f" ({size} bytes, SHA-256 {sha256}; recorded {obj.get('size')}, {obj.get('sha256')});"
                                  " not restoring damaged bytes")
    return path
