"""Rules on object keys, bucket names, mime types and size limits, as storage-api applies them."""

from __future__ import annotations

import re

from supabackup_pipeline.dev.storage_api import errors

# storage-api's `isValidKey`: JavaScript's \w (ASCII only) plus these punctuation marks, space
# included. Everything else (non-ASCII, %, #, \, ", <, ...) is refused with "Invalid key".
_KEY_RE = re.compile(r"[A-Za-z0-9_/!.*'() &$=@;:+,?-]*")
_BUCKET_RE = re.compile(r"[A-Za-z0-9_!.*'() &$=@;:+,?-]{1,100}")


def check_key(key: str) -> str:
    if not key or not _KEY_RE.fullmatch(key):
        raise errors.invalid_key(key)
    return key


def check_bucket_name(name: object) -> str:
    if not isinstance(name, str) or not _BUCKET_RE.fullmatch(name):
        raise errors.StorageError(400, "Invalid Input", "Bucket name invalid")
    return name


def check_mime_type(mime: str, allowed: list[str] | None) -> None:
    """`allowed` entries are exact types or `type/*`; parameters (`;charset=...`) are ignored."""
    if not allowed:
        return
    wanted = mime.split(";", 1)[0].strip().lower()
    kind = wanted.split("/", 1)[0]
    for entry in allowed:
        entry = entry.strip().lower()
        if entry == wanted or (entry.endswith("/*") and entry[:-2] == kind):
            return
    raise errors.invalid_mime_type(mime)


_UNITS = {"": 1, "b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3, "tb": 1024**4}


def parse_size_limit(value: object) -> int | None:
    """A bucket's file_size_limit: null, a number of bytes, or a string such as "50MB"."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise errors.bad_request("file_size_limit must be an integer or a size string")
    if isinstance(value, int):
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?b?)\s*", str(value), re.IGNORECASE)
    if not match:
        raise errors.bad_request(f"the requested file_size_limit uses an invalid format: {value}")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])
