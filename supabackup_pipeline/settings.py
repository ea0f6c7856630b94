"""Every setting in one place: the environment variables with their defaults, and the names (run
tags, asset groups) that several modules must agree on.

Secrets (SUPABASE_DB_URL, SUPABASE_URL, SUPABASE_SERVICE_ROLE_KEY) are not read here: Dagster
binds them with `EnvVar` in definitions.py, so they are never shown nor logged.
"""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path

from supabackup_pipeline.core.errors import ConfigError
from supabackup_pipeline.core.retention import RetentionPolicy

DEFAULT_BACKUP_PATH = "./backups"
DEFAULT_SCHEMAS = "public"
DEFAULT_DAGSTER_HOME = Path.home() / ".supabackup" / "dagster_home"


def backup_path() -> Path:
    """BACKUP_PATH (default ./backups), absolute."""
    return Path(os.getenv("BACKUP_PATH") or DEFAULT_BACKUP_PATH).expanduser().resolve()


def backup_path_was_set() -> bool:
    return bool(os.getenv("BACKUP_PATH"))


def temp_path() -> str:
    """TEMP_PATH; empty means BACKUP_PATH/.tmp (see resources.BackupStorage)."""
    return os.getenv("TEMP_PATH", "")


def schemas_setting() -> str:
    """SUPABACKUP_SCHEMAS as written (comma-separated)."""
    return os.getenv("SUPABACKUP_SCHEMAS", DEFAULT_SCHEMAS)


def parse_schemas(text: str) -> list[str]:
    schemas = [s.strip() for s in text.split(",") if s.strip()]
    if not schemas:
        raise ConfigError("SUPABACKUP_SCHEMAS is empty: name at least one schema, e.g. public")
    return schemas


def retention_policy() -> RetentionPolicy:
    """SUPABACKUP_KEEP_LAST / _DAILY / _WEEKLY / _MONTHLY over the policy's defaults."""
    defaults = RetentionPolicy()
    values = {}
    for field in fields(RetentionPolicy):
        name = f"SUPABACKUP_{field.name.upper()}"
        text = os.getenv(name, str(getattr(defaults, field.name)))
        try:
            values[field.name] = int(text)
        except ValueError:
            raise ConfigError(f"{name} must be a whole number, not {text!r}") from None
    return RetentionPolicy(**values)


def workspace_file() -> Path | None:
    """SUPABACKUP_WORKSPACE (the workspace.yaml the webserver and daemon load), else the repository's
    (absent in a plain `pip install`)."""
    configured = os.getenv("SUPABACKUP_WORKSPACE")
    if configured:
        return Path(configured).expanduser()
    bundled = Path(__file__).resolve().parent.parent / "workspace.yaml"
    return bundled if bundled.is_file() else None


def ensure_dagster_home() -> Path:
    """DAGSTER_HOME, or a persistent default (~/.supabackup/dagster_home) so runs are kept; one we
    create has telemetry off."""
    home = Path(os.environ.get("DAGSTER_HOME") or DEFAULT_DAGSTER_HOME).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists() or not config.read_text().strip():
        config.write_text("telemetry:\n  enabled: false\n")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


class Tag:
    """Run tags: how the UI, the sensors and `supabackup rollbacks` find our runs."""

    KIND = "supabackup/kind"  # backup, verify, rollback, delete, prune
    DESCRIPTION = "supabackup/description"
    SOURCE = "supabackup/source"  # cli, when the command line launched it
    PRE_ROLLBACK_OF = "supabackup/pre_rollback_of"  # a rollback's safety backup
    REFUSED = "supabackup/refused"  # why a backup run was refused (it ends canceled, see assets/refusal.py)


PARTITION_TAG = "dagster/partition"  # Dagster's own tag: the partition (backup ID) of a run
SCHEDULE_TAG = "dagster/schedule_name"  # Dagster's own tag: the schedule that requested a run


class Group:
    """Asset groups: the backup job selects by them, the CLI maps components onto them."""

    LIVE = "live_project"
    TABLES = "tables"
    AUTH = "auth"
    STORAGE = "storage"
    BACKUP = "backup"


BACKUP_GROUPS = [Group.TABLES, Group.AUTH, Group.STORAGE, Group.BACKUP]
COMPONENT_GROUPS = {"database": Group.TABLES, "users": Group.AUTH, "storage": Group.STORAGE}
