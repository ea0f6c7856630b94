"""Integrity verification: re-read every file of a backup and check it against the manifest.

A backup nobody has verified is a hope. Verification recomputes each file's SHA-256 (streamed,
flat memory), checks sizes, that every Parquet file opens with its recorded row count and
columns, that the storage manifest's objects are all there, that no file is missing or unlisted,
and that the manifest itself was not edited after it was written: `metadata.json.sha256` holds
the SHA-256 of the manifest's canonical JSON form.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from supabackup_pipeline.core.parts import Parts
from supabackup_pipeline.core.files import HASH_CHUNK, canonical_json, write_json
from supabackup_pipeline.core.snapshot import utc_now
from supabackup_pipeline.core.store import MANIFEST

MANIFEST_CHECKSUM = MANIFEST + ".sha256"
VERIFICATION = "verification.json"  # the last full verification: what `list` and `show` report
QUICK_CHECK = "verification-quick.json"  # the last quick check (sizes only): never makes a backup valid
NOT_CONTENT = {MANIFEST, MANIFEST_CHECKSUM, VERIFICATION, QUICK_CHECK}  # files that describe the backup
SIZES_OK = "sizes_ok"


@dataclass
class Problem:
    file: str
    problem: str

    def __str__(self) -> str:
        return f"{self.file}: {self.problem}"


@dataclass
class FileCheck:
    """The outcome of checking a set of files (one asset's, or a whole backup's)."""

    problems: list[Problem] = field(default_factory=list)
    files_checked: int = 0
    bytes_read: int = 0

    def add(self, other: "FileCheck") -> None:
        self.problems += other.problems
        self.files_checked += other.files_checked
        self.bytes_read += other.bytes_read


@dataclass
class VerifyReport:
    """`valid` is None after a quick check that found nothing: sizes were checked, content was not."""

    backup_id: str
    valid: bool | None
    quick: bool
    problems: list[Problem]
    files_checked: int
    bytes_read: int
    seconds: float
    verified_at: str

    @property
    def status(self) -> str:
        """valid, invalid, or sizes_ok (a quick check found nothing wrong; content not read)."""
        if self.problems:
            return "invalid"
        return SIZES_OK if self.quick else "valid"

    def to_json(self) -> dict:
        return {**asdict(self), "status": self.status, "problems": [asdict(p) for p in self.problems]}


def manifest_checksum(manifest: dict) -> str:
    import hashlib

    return hashlib.sha256(canonical_json(manifest)).hexdigest()


def seal_manifest(root: Path, manifest: dict) -> None:
    """Write metadata.json and, beside it, the checksum of its canonical content."""
    write_json(root / MANIFEST, manifest)
    (root / MANIFEST_CHECKSUM).write_text(manifest_checksum(manifest) + "\n")
    (root / MANIFEST_CHECKSUM).chmod(0o600)


def _sha256_and_size(path: Path) -> tuple[str, int]:
    import hashlib

    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def check_files(root: Path, files: dict[str, dict], quick: bool = False) -> FileCheck:
    """Each listed file exists with its size and (unless quick) its SHA-256."""
    result = FileCheck()
    for rel, entry in sorted(files.items()):
        path = root / rel
        result.files_checked += 1
        if not path.is_file():
            result.problems.append(Problem(rel, "missing"))
            continue
        size = path.stat().st_size
        if size != entry["bytes"]:
            result.problems.append(Problem(rel, f"size {size} bytes, manifest says {entry['bytes']}"))
            continue
        if not quick:
            digest, read = _sha256_and_size(path)
            result.bytes_read += read
            if digest != entry["sha256"]:
                result.problems.append(Problem(rel, "SHA-256 differs from the manifest (content changed)"))
    return result


def check_table_dump(root: Path, parquet_rel: str, sidecar_rel: str) -> list[Problem]:
    """The Parquet file opens, and its rows and columns are the ones the sidecar recorded."""
    try:
        sidecar = json.loads((root / sidecar_rel).read_text())
    except (OSError, ValueError) as exc:
        return [Problem(sidecar_rel, f"unreadable sidecar ({type(exc).__name__})")]
    try:
        parquet = pq.ParquetFile(root / parquet_rel, pre_buffer=False)
        rows, names = parquet.metadata.num_rows, parquet.schema_arrow.names
    except Exception as exc:  # pyarrow raises several kinds for a damaged file
        return [Problem(parquet_rel, f"does not open as Parquet ({str(exc).splitlines()[0][:120]})")]
    problems = []
    # A dump without columns (a table of none, or only of generated ones) has rows that Parquet
    # cannot hold: its count is the sidecar's alone.
    if names and rows != sidecar.get("row_count"):
        problems.append(Problem(parquet_rel, f"{rows} rows, sidecar says {sidecar.get('row_count')}"))
    expected = [f["name"] for f in sidecar.get("arrow_schema", [])]
    if names != expected:
        problems.append(Problem(parquet_rel, "columns differ from the sidecar's schema"))
    return problems


def check_storage_manifest(root: Path, files: dict[str, dict]) -> list[Problem]:
    """Every object the storage manifest records is a listed file with the same size and hash."""
    path = root / "storage" / "manifest.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return [Problem("storage/manifest.json", "unreadable")]
    problems = []
    for bucket, info in data.get("buckets", {}).items():
        for obj in info.get("objects", []):
            if obj.get("missing"):
                continue
            rel = f"storage/{info['dir']}/{obj['path']}"  # `path` is relative to the bucket's folder
            entry = files.get(rel)
            if entry is None:
                problems.append(Problem(rel, f"object {bucket}/{obj['name']} is not in the backup's file list"))
            elif entry["bytes"] != obj["size"] or entry["sha256"] != obj["sha256"]:
                problems.append(Problem(rel, f"object {bucket}/{obj['name']}: size or hash differs from the storage manifest"))
    return problems


def verify_backup(root: Path, quick: bool = False) -> VerifyReport:
    """Check a published backup folder completely (or, quick, sizes and presence only)."""
    started = time.monotonic()
    backup_id = root.name
    check = FileCheck()
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        manifest = None
        check.problems.append(Problem(MANIFEST, f"missing or unreadable ({type(exc).__name__})"))
    if manifest is not None and not isinstance(manifest, dict):
        check.problems.append(Problem(MANIFEST, f"not a manifest (a JSON {type(manifest).__name__})"))
        manifest = None
    if manifest is not None:
        _check_seal(root, manifest, check)
        files = manifest.get("files", {})
        check.add(check_files(root, files, quick))
        listed = set(files) | NOT_CONTENT
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            rel = str(path.relative_to(root))
            if rel not in listed:
                check.problems.append(Problem(rel, "not listed in the manifest (stray file)"))
        broken = {p.file for p in check.problems}
        if not quick:
            for dump in Parts.from_manifest(manifest).table_dumps():
                if dump.parquet not in broken and dump.sidecar not in broken:
                    check.problems += check_table_dump(root, dump.parquet, dump.sidecar)
            if "storage/manifest.json" in files and "storage/manifest.json" not in broken:
                check.problems += check_storage_manifest(root, files)
    valid = False if check.problems else (None if quick else True)  # quick: sizes only, never "valid"
    return VerifyReport(
        backup_id=backup_id, valid=valid, quick=quick, problems=check.problems,
        files_checked=check.files_checked, bytes_read=check.bytes_read,
        seconds=round(time.monotonic() - started, 3), verified_at=utc_now(),
    )


def _check_seal(root: Path, manifest: dict, check: FileCheck) -> None:
    try:
        recorded = (root / MANIFEST_CHECKSUM).read_text().strip()
    except OSError:
        check.problems.append(Problem(MANIFEST_CHECKSUM, "missing: the manifest cannot be checked"))
        return
    if recorded != manifest_checksum(manifest):
        check.problems.append(Problem(MANIFEST, "edited after it was written (checksum mismatch)"))


def record_verification(root: Path, report: VerifyReport) -> str | None:
    """Keep the last verification beside the backup (a quick check apart: it never stands for a full
    one). Returns why it could not be kept (a full disk), else None: the verification itself stands."""
    path = root / (QUICK_CHECK if report.quick else VERIFICATION)
    try:
        write_json(path, report.to_json())
    except OSError as exc:
        return f"the verification's result could not be kept in {path} ({exc})"
    return None


def _read_report(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def last_verification(root: Path) -> dict | None:
    """The last FULL verification (every file hashed), or None."""
    report = _read_report(root / VERIFICATION)
    return None if report is None or report.get("quick") else report


def last_quick_check(root: Path) -> dict | None:
    return _read_report(root / QUICK_CHECK)


def shown_status(root: Path, manifest_status: str) -> str:
    """The status to show: what the last full verification found (a later quick check that found
    damage downgrades it; a quick check never upgrades it), else the status the backup was made with."""
    full, quick = last_verification(root), last_quick_check(root)
    if quick and quick.get("problems") and (full is None or quick["verified_at"] > full["verified_at"]):
        return "invalid"
    if full is not None:
        return "valid" if full["valid"] else "invalid"
    return manifest_status
