"""Where a bucket's objects live inside a backup: names from the server, mapped to safe paths.

Shared by the mirror (which writes the files) and the restore (which reads them back). Names come
from the server and are untrusted: a name that is absolute, has empty, `.` or `..` segments, a
backslash or a NUL is refused (UnsafeName). The mapping rules are in storage_mirror's docstring.
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


def inside(root: Path, rel: str) -> Path:
    """root/rel, after checking that it resolves inside root (belt and braces after plan_paths)."""
    target = root / rel
    if not target.resolve().is_relative_to(root.resolve()):
        raise UnsafeName(f"object path {rel!r} resolves outside {root}")
    return target
