"""Where a bucket's objects live inside a backup: names from the server, mapped to safe paths.

Shared by the mirror (which writes the files) and the restore (which reads them back). Names come
from the server and are untrusted, and Storage keeps any key S3 tools make: a `photos/` folder
marker, `a//b`, `/lead.txt`, `x/../y`. Such segments get paths of their own (empty → `~empty`,
`.` → `~dot`, `..` → `~dotdot`), so they never leave the bucket's folder; a backslash or NUL, which
Storage's key check refuses, is refused (UnsafeName). The mapping rules are in storage_mirror's
docstring; the manifest records each object's path, which restores read, never derive.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from supabackup_pipeline.core.errors import UnsafeName

STORAGE_DIR = "storage"
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
MAX_SEGMENT_BYTES = 255


_ODD_SEGMENTS = {"": "~empty", ".": "~dot", "..": "~dotdot"}


def check_bucket_name(bucket: object) -> str:
    """A bucket id from the server or a manifest (`.` and `..` are valid ids: see bucket_dir)."""
    if not isinstance(bucket, str) or not bucket or any(c in bucket for c in "/\\\x00"):
        raise UnsafeName(f"refusing bucket name {bucket!r}: it cannot be a folder name inside the backup")
    return bucket


def check_folder_name(folder: object) -> str:
    """A bucket's folder as a manifest records it: one plain path segment."""
    if check_bucket_name(folder) in (".", ".."):
        raise UnsafeName(f"refusing bucket folder {folder!r}: it is not a folder inside the backup")
    return folder


def bucket_dir(bucket: str) -> str:
    """The bucket's folder under storage/: its id, but `manifest.json` (our manifest), `.` and `..`
    get `~bucket` appended."""
    check_bucket_name(bucket)
    return bucket + "~bucket" if bucket in (MANIFEST_NAME, ".", "..") else bucket


def object_segments(bucket: str, name: object) -> list[str]:
    """A server's object name as path segments that stay inside the bucket's folder: empty, `.` and
    `..` segments renamed (a `/` at the start or end, or doubled, makes an empty one)."""
    if not isinstance(name, str) or not name:
        raise UnsafeName(f"bucket {bucket!r}: refusing an empty object name from the server")
    segments = [_ODD_SEGMENTS.get(s, s) for s in name.split("/")]
    return check_object_name(bucket, "/".join(segments))


def check_object_name(bucket: str, name: object) -> list[str]:
    """The path's segments, or UnsafeName if it could write anywhere but inside the bucket's folder
    (checks the paths of our manifests; `object_segments` maps the server's names to such paths)."""
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
    """Object name -> path inside the bucket folder. Refuses unsafe names; resolves clashes: file
    and folder (`a` next to `a/b`), and two names mapped to one path (`a//b` next to `a/~empty/b`)."""
    paths = {name: tuple(_fit(s) for s in object_segments(bucket, name)) for name in names}
    taken = set(paths.values())
    folders = {p[:i] for p in taken for i in range(1, len(p))}
    owner: dict[tuple, str] = {}
    for name in sorted(paths):
        path = paths[name]
        if path in folders or owner.setdefault(path, name) != name:  # the folder, or the first name, keeps it
            n = 1
            while (candidate := (*path[:-1], f"{path[-1]}~{n}")) in taken or candidate in folders:
                n += 1
            taken.add(candidate)
            paths[name] = candidate
    return {name: "/".join(path) for name, path in paths.items()}


def inside(root: Path, rel: str) -> Path:
    """root/rel, after checking that it resolves inside root (belt and braces after plan_paths)."""
    target = root / rel
    if not target.resolve().is_relative_to(root.resolve()):
        raise UnsafeName(f"object path {rel!r} resolves outside {root}")
    return target
