"""The backup's record format: what each component (database, users, storage) writes about itself.

Each component's step records a *part* while the backup is staged (`.staging/<id>/parts/`); the
manifest step merges them into `metadata.json` under `parts` (without their file lists, which go
to the manifest's `files`). These dataclasses are the one place that format is defined: the
assets build them, and the integrity checks, verification, the restore, the manifest and `show`
read them back with `Parts.from_manifest`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum

from supabackup_pipeline.core.catalog import TableRef


class Component(StrEnum):
    DATABASE = "database"
    USERS = "users"
    STORAGE = "storage"


COMPONENTS = tuple(c.value for c in Component)


class BackupStatus(StrEnum):
    VALID = "valid"  # written and its integrity checks passed
    COMPLETE = "complete"  # written, integrity checks not run
    INVALID = "invalid"  # an integrity check failed: kept, never used


GOOD_STATUSES = (BackupStatus.VALID.value, BackupStatus.COMPLETE.value)


def _known(cls, data: dict) -> dict:
    """The keys of `data` that are fields of `cls` (records written by newer versions may hold more)."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


def _part_from_json(cls, data: dict, entries: str, entry_type):
    """A part from its JSON, the list field `entries` read as `entry_type` records."""
    return cls(**{**_known(cls, data), entries: [entry_type.from_json(e) for e in data.get(entries, [])]})


def _part_to_json(part, entries: str) -> dict:
    return {**asdict(part), entries: [e.to_json() for e in getattr(part, entries)]}


@dataclass
class TableEntry:
    """One table dump: its Parquet file and sidecar (paths relative to the backup folder)."""

    schema: str
    name: str
    parquet: str
    sidecar: str
    rows: int = 0
    sha256: str = ""

    @property
    def ref(self) -> TableRef:
        return TableRef(self.schema, self.name)

    @property
    def qualified(self) -> str:
        return self.ref.qualified

    def to_json(self) -> dict:
        return {"table": self.qualified, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict) -> "TableEntry":
        if "schema" not in data:  # users entries of older backups named the table only
            data = {**data, **dict(zip(("schema", "name"), data["table"].split(".", 1)))}
        return cls(**_known(cls, data))


@dataclass
class BucketEntry:
    """One mirrored bucket: where its objects are (`storage/<dir>/`) and what it held."""

    bucket: str
    dir: str
    public: bool | None = None
    objects: int = 0
    bytes: int = 0
    downloaded_bytes: int = 0
    linked: int = 0
    missing: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "BucketEntry":
        return cls(**_known(cls, data))


@dataclass
class DatabasePart:
    files: dict[str, dict] = field(default_factory=dict)  # relative path → {bytes, sha256}
    snapshot: dict = field(default_factory=dict)
    source: dict = field(default_factory=dict)  # database, system_identifier, server_version
    complete: bool = False  # every table that existed was dumped (not a subset)
    schemas: list[str] = field(default_factory=list)
    tables: list[TableEntry] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict:
        return _part_to_json(self, "tables")

    @classmethod
    def from_json(cls, data: dict) -> "DatabasePart":
        return _part_from_json(cls, data, "tables", TableEntry)


@dataclass
class UsersPart:
    files: dict[str, dict] = field(default_factory=dict)
    tables: list[TableEntry] = field(default_factory=list)

    def to_json(self) -> dict:
        return _part_to_json(self, "tables")

    @classmethod
    def from_json(cls, data: dict) -> "UsersPart":
        return _part_from_json(cls, data, "tables", TableEntry)


@dataclass
class StoragePart:
    files: dict[str, dict] = field(default_factory=dict)
    complete: bool = False
    previous_backup: str | None = None  # the valid backup unchanged objects were hard-linked from
    buckets: list[BucketEntry] = field(default_factory=list)
    vanished_buckets: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict:
        return _part_to_json(self, "buckets")

    @classmethod
    def from_json(cls, data: dict) -> "StoragePart":
        return _part_from_json(cls, data, "buckets", BucketEntry)


_PART_TYPES = {Component.DATABASE: DatabasePart, Component.USERS: UsersPart, Component.STORAGE: StoragePart}


@dataclass
class Parts:
    """The parts of one backup; a component the backup does not hold is None."""

    database: DatabasePart | None = None
    users: UsersPart | None = None
    storage: StoragePart | None = None

    @classmethod
    def from_json(cls, parts: dict) -> "Parts":
        return cls(**{c.value: _PART_TYPES[c].from_json(parts[c.value]) for c in Component if c.value in parts})

    def to_json(self) -> dict:
        return {c.value: part.to_json() for c in Component if (part := getattr(self, c.value)) is not None}

    @classmethod
    def from_manifest(cls, manifest: dict) -> "Parts":
        return cls.from_json(manifest.get("parts", {}))

    def table_dumps(self, components: tuple[str, ...] | list[str] = (Component.USERS, Component.DATABASE)
                    ) -> list[TableEntry]:
        """The table dumps of the chosen components: users first (they are restored first)."""
        chosen = {Component(c) for c in components}
        found = []
        if Component.USERS in chosen and self.users:
            found += self.users.tables
        if Component.DATABASE in chosen and self.database:
            found += self.database.tables
        return found
