"""The rollback, in order: pre-validate → (safety backup) → database (one transaction) → storage → post-validate.

Plain Python: the Dagster rollback job and the tests drive it the same way. Nothing touches the
live project before pre-validation passed: the backup verifies completely (every file's
SHA-256, the sealed manifest), it is not marked invalid, and it comes from this project (or
`allow_other_project` was given). The database part commits only after its own post-validation
passed inside the transaction; the storage part is idempotent, so a rerun after a crash finishes.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from supabackup_pipeline.core.db_restore import apply_database_restore, plan_database_restore
from supabackup_pipeline.core.parts import COMPONENTS
from supabackup_pipeline.core.errors import SupabackupError
from supabackup_pipeline.core.snapshot import optional_fact, connect
from supabackup_pipeline.core.storage_api import same_project_url
from supabackup_pipeline.core.storage_paths import MANIFEST_NAME, STORAGE_DIR
from supabackup_pipeline.core.store import BackupStore
from supabackup_pipeline.core.verify import record_verification, verify_backup

Log = Callable[[str], None]


class RollbackRefused(SupabackupError):
    """Pre-validation failed: the live project was not touched."""


@dataclass
class RollbackOptions:
    components: list[str] = field(default_factory=lambda: list(COMPONENTS))
    tables: list[str] | None = None  # schema.table; None = every table in the backup
    dry_run: bool = False
    safety_backup: bool = True
    allow_other_project: bool = False
    drop_new_tables: bool = False
    workers: int = 8

    def check(self) -> None:
        unknown = sorted(set(self.components) - set(COMPONENTS))
        if unknown or not self.components:
            raise RollbackRefused(f"unknown component(s) {unknown or '(none)'}: choose from {', '.join(COMPONENTS)}")
        if self.tables is not None and "database" not in self.components:
            raise RollbackRefused("--tables needs the database component")


def project_identity(db_url: str) -> dict:
    with connect(db_url) as conn:
        return {
            "system_identifier": optional_fact(conn, "SELECT system_identifier FROM pg_control_system()"),
            "database": conn.execute("SELECT current_database()").fetchone()[0],
        }


def prevalidate(store: BackupStore, backup_id: str, db_url: str, options: RollbackOptions, log: Log,
                verify: bool = True, storage_url: str | None = None) -> dict:
    """Verify the backup (unless the caller just did) and that it belongs to this project; returns
    its manifest. Touches nothing live."""
    manifest = store.manifest(backup_id)
    root = store.published(backup_id)
    if manifest.get("damaged"):
        raise RollbackRefused(f"backup {backup_id} cannot be restored: {manifest['damaged']}")
    if manifest.get("status") == "invalid":
        raise RollbackRefused(f"backup {backup_id} failed its integrity checks when it was made; refusing to restore it")
    if verify:
        report = verify_backup(root)
        unkept = record_verification(root, report)
        if unkept:
            log(unkept)
        if not report.valid:
            problems = "; ".join(str(p) for p in report.problems[:10])
            raise RollbackRefused(f"backup {backup_id} does not verify, refusing to restore it: {problems}")
        log(f"backup {backup_id} verified: {report.files_checked} files, {report.bytes_read} bytes")
    missing = sorted(set(options.components) - set(manifest.get("components", [])))
    if missing:
        raise RollbackRefused(f"backup {backup_id} has no {', '.join(missing)} component")
    if {"database", "users"} & set(options.components):
        live = project_identity(db_url)
        source = manifest.get("source", {})
        same = (source.get("system_identifier") == live["system_identifier"]
                and source.get("database") == live["database"])
        if not same and not options.allow_other_project:
            raise RollbackRefused(
                f"backup {backup_id} was taken from another project (system_identifier {source.get('system_identifier')},"
                f" database {source.get('database')}; this one is {live['system_identifier']}, {live['database']})."
                " Pass allow_other_project (--allow-other-project) to restore it here anyway."
            )
    if "storage" in options.components and storage_url and not options.allow_other_project:
        _refuse_other_storage(root, backup_id, storage_url)
    return manifest


def _refuse_other_storage(root: Path, backup_id: str, storage_url: str) -> None:
    """A rollback makes Storage equal to the backup, deleting what the backup lacks: pointed at
    another project's Storage (SUPABASE_URL of staging with production's backups, say), it would
    empty that project's buckets of the same names. Backups record the URL they came from."""
    try:
        source = json.loads((root / STORAGE_DIR / MANIFEST_NAME).read_text()).get("source") or {}
    except (OSError, ValueError, AttributeError):
        return  # verification names a damaged manifest; the restore reads it again and says so
    if source.get("url") and not same_project_url(source["url"], storage_url):
        raise RollbackRefused(
            f"backup {backup_id}'s Storage was taken from {source['url']}, and SUPABASE_URL is {storage_url}: restoring"
            " it would delete that project's objects the backup does not hold. Check SUPABASE_URL, or pass"
            " allow_other_project (--allow-other-project) to restore it there anyway.")


@dataclass
class RollbackPlan:
    backup_id: str
    database: dict | None
    storage: dict | None
    storage_text: str = ""

    def to_json(self) -> dict:
        return {"backup_id": self.backup_id, "database": self.database, "storage": self.storage}


def make_plan(store: BackupStore, backup_id: str, manifest: dict, db_url: str | None, storage_client,
              options: RollbackOptions):
    """(plan for display, database plan object, storage plan object): read-only."""
    root = store.published(backup_id)
    db_plan = storage_plan = None
    db_components = [c for c in options.components if c in ("database", "users")]
    if db_components:
        with connect(db_url) as conn:
            db_plan = plan_database_restore(conn, root, manifest, db_components, options.tables, options.drop_new_tables)
    if "storage" in options.components:
        from supabackup_pipeline.core.storage_restore import plan_storage_restore

        storage_plan = plan_storage_restore(storage_client, root / "storage")
    shown = RollbackPlan(
        backup_id, db_plan.to_json() if db_plan else None, storage_plan.to_dict() if storage_plan else None,
        storage_plan.describe(limit=50) if storage_plan else "",
    )
    return shown, db_plan, storage_plan


def run_rollback(
    store: BackupStore, backup_id: str, db_url: str | None, storage_client, options: RollbackOptions,
    take_safety_backup: Callable[[], str] | None = None, log: Log = print, verified: bool = False,
) -> dict:
    """The whole rollback; returns a report with each step's duration. Raises on any failure.

    `verified`: the caller verified the backup moments ago (the rollback job does, in the step
    before, together with the safety backup), so its files are not read twice.
    """
    options.check()
    steps: dict[str, float] = {}
    t = time.monotonic()
    manifest = prevalidate(store, backup_id, db_url, options, log, verify=not verified,
                           storage_url=storage_client.project_url if storage_client is not None else None)
    shown, db_plan, storage_plan = make_plan(store, backup_id, manifest, db_url, storage_client, options)
    steps["prevalidate_and_plan"] = round(time.monotonic() - t, 3)
    report: dict = {"backup_id": backup_id, "dry_run": options.dry_run, "plan": shown.to_json(),
                    "components": options.components, "steps": steps}
    if options.dry_run:
        report["status"] = "planned"
        return report

    if options.safety_backup:
        t = time.monotonic()
        if take_safety_backup is None:
            raise SupabackupError("a safety backup was asked for but no way to take one was given")
        report["safety_backup"] = take_safety_backup()
        log(f"safety backup {report['safety_backup']} taken: this rollback can itself be undone")
        steps["safety_backup"] = round(time.monotonic() - t, 3)

    root = store.published(backup_id)
    if db_plan is not None:
        t = time.monotonic()
        report["database"] = apply_database_restore(db_url, db_plan, root, log=log)
        steps["database"] = round(time.monotonic() - t, 3)
    if storage_plan is not None:
        from supabackup_pipeline.core.storage_restore import apply_storage_restore, validate_storage

        t = time.monotonic()
        try:
            report["storage"] = apply_storage_restore(storage_client, storage_plan, root / "storage",
                                                      workers=options.workers, log=log).summary()
        except BaseException:  # Ctrl-C too: whoever stopped it should know the database is restored
            if "database" in report:
                log("the database is restored and committed, Storage only in part: run the same rollback again"
                    " to finish it (it plans from the live project and transfers only what is left)")
            raise
        steps["storage"] = round(time.monotonic() - t, 3)
        t = time.monotonic()
        mismatches = validate_storage(storage_client, root / "storage")
        steps["storage_validation"] = round(time.monotonic() - t, 3)
        if mismatches:
            report["status"] = "failed"
            raise SupabackupError("storage post-validation failed (rerun the rollback to finish): "
                                  + "; ".join(mismatches[:20]))
    report["status"] = "restored"
    return report
