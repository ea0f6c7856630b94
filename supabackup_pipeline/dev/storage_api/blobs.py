"""Object bytes on local disk: one file per object version, `<root>/<object id>/<version>`.

Paths come from the object's uuid and version, never from its name, so no key can escape the
data folder. A new version is first written under `.incoming/`, then renamed into place inside
the database transaction that points the row at it; the old version is removed after commit.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

_SAFE_VERSION = re.compile(r"[0-9A-Za-z-]{1,64}")


@dataclass
class Incoming:
    path: Path
    size: int
    md5: str


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.incoming_dir = self.root / ".incoming"
        self.incoming_dir.mkdir(parents=True, exist_ok=True)

    def path(self, object_id: object, version: str | None) -> Path:
        # Rows written by someone else (e.g. SQL in a test) may carry any version text.
        v = version if version and _SAFE_VERSION.fullmatch(version) else "v" + hashlib.sha256(
            (version or "").encode()).hexdigest()[:32]
        return self.root / str(uuid.UUID(str(object_id))) / v

    def receive(self, source: bytes | BinaryIO) -> Incoming:
        """Write an upload to a temporary file, hashing it on the way."""
        target = self.incoming_dir / uuid.uuid4().hex
        digest, size = hashlib.md5(), 0
        with open(target, "wb") as out:
            chunks = [source] if isinstance(source, bytes) else iter(lambda: source.read(1 << 20), b"")
            for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
        return Incoming(target, size, digest.hexdigest())

    def place(self, incoming: Incoming, object_id: object, version: str) -> None:
        final = self.path(object_id, version)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(incoming.path, final)

    def copy(self, src_id: object, src_version: str | None, dst_id: object, dst_version: str) -> None:
        final = self.path(dst_id, dst_version)
        final.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.path(src_id, src_version), final)

    def discard(self, object_id: object, version: str | None) -> None:
        # The (possibly empty) folder stays: a concurrent write may be placing a new version in it.
        self.path(object_id, version).unlink(missing_ok=True)

    @staticmethod
    def drop_incoming(incoming: Incoming) -> None:
        incoming.path.unlink(missing_ok=True)
