"""Files that hold backups: private modes, streaming SHA-256, atomic JSON.

Backups hold password hashes, so every file is created 0600 inside 0700 folders.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import shutil
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from supabackup_pipeline.core.errors import DiskFull

FILE_MODE = 0o600
DIR_MODE = 0o700
HASH_CHUNK = 1 << 20


def make_private_dir(path: Path) -> Path:
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    path.chmod(DIR_MODE)
    return path


def open_private(path: Path, mode: str = "wb"):
    """Open for writing a new file created with mode 0600 (never briefly world-readable)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, FILE_MODE)
    return os.fdopen(fd, mode)


_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


@contextmanager
def disk_full_named(folder: Path, setting: str = "BACKUP_PATH"):
    """Around writing a backup under `folder`: a full disk (or quota), from our writes, pyarrow's or a
    worker thread's, becomes a DiskFull that names the setting, the folder and the disk's size,
    instead of `[Errno 28]`.
    The callers' own clean-up (the staging folder) is unchanged."""
    try:
        yield
    except DiskFull:
        raise
    except Exception as exc:
        if not _is_no_space(exc):
            raise
        raise DiskFull(f"no space left on the disk holding {setting} ({folder}, a disk of {_disk_size(folder)}):"
                       " this backup is not kept and nothing else changed; free some space (e.g. `supabackup"
                       f" prune`) or point {setting} at a larger disk") from exc


def _is_no_space(exc: BaseException | None) -> bool:
    while exc is not None:
        if (isinstance(exc, OSError) and exc.errno in _NO_SPACE) or "No space left on device" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _disk_size(folder: Path) -> str:
    """The disk's size (its free space, at the moment it filled, would say 0)."""
    for path in (folder, *folder.parents):
        if path.exists():
            size = shutil.disk_usage(path).total
            return f"{size / 1e6:,.0f} MB" if size < 1e9 else f"{size / 1e9:,.1f} GB"
    return "unknown size"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def canonical_json(data: object) -> bytes:
    """One byte form per value: sorted keys, no spaces, UTF-8. What checksums are taken over."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def write_json(path: Path, data: object, sync: BackgroundSync | None = None) -> str:
    """Write pretty JSON privately and durably (with `sync`: made durable by it, later); return
    its SHA-256."""
    raw = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False).encode() + b"\n"
    # a name of its own per writer: two processes writing one file must not rename each other's
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        with open_private(tmp) as f:
            f.write(raw)
            f.flush()
            if sync is None:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # a full disk: no half-written .tmp left in a backup's folder
        tmp.unlink(missing_ok=True)
        raise
    if sync is not None:
        sync.submit(path)
    return hashlib.sha256(raw).hexdigest()


def fsync_path(path: Path) -> None:
    """fsync a file or folder by name (a file's dirty pages are its inode's, whichever fd wrote them)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BackgroundSync:
    """fsyncs finished files on a thread of its own while the writers go on with the next ones (a
    backup's workers otherwise wait ~10 ms per file for the disk, ~0.45 s of a 3 s backup).
    `wait()` before anything vouches for the files: a backup's manifest is written after it, so a
    crash before then leaves a backup without a manifest, which is never published."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fsync")
        self._pending: list[Future] = []

    def submit(self, path: Path) -> None:
        self._pending.append(self._pool.submit(fsync_path, path))

    def wait(self) -> None:
        """Every submitted file on disk; raises the first fsync error (a full or failing disk)."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def __enter__(self) -> "BackgroundSync":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        try:
            if exc_type is None:  # else the writers' own error is the one to report
                self.wait()
        finally:
            self._pool.shutdown()


class HashingReader(io.RawIOBase):
    """A read-only file that hashes what is read through it (a COPY stream, on its way to pyarrow).
    `read` hands on the underlying file's bytes as they are: no extra copy."""

    def __init__(self, raw):
        self._raw = raw
        self._digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._digest.update(data)
        return data

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        n = self._raw.readinto(view)
        self._digest.update(view[:n])
        return n

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


class HashingWriter(io.RawIOBase):
    """A write-only file that hashes what passes through (hashing while writing costs ~2%), fsynced
    when closed (by `sync` later, when given one with the file's `path`)."""

    def __init__(self, raw, sync: BackgroundSync | None = None, path: Path | None = None):
        self._raw = raw
        self._digest = hashlib.sha256()
        self._size = 0
        self._sync, self._path = sync, path

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        view = memoryview(data)
        self._digest.update(view)
        self._raw.write(view)
        self._size += view.nbytes
        return view.nbytes

    def tell(self) -> int:
        return self._size

    @property
    def size(self) -> int:
        return self._size

    def hexdigest(self) -> str:
        return self._digest.hexdigest()

    def flush(self) -> None:
        if not self._raw.closed:
            self._raw.flush()

    def close(self) -> None:
        if not self.closed:
            self._raw.flush()
            if self._sync is None:
                os.fsync(self._raw.fileno())
            self._raw.close()
            if self._sync is not None:
                self._sync.submit(self._path)
        super().close()
