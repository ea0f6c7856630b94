"""What the CLI does, as functions: run the Dagster jobs in-process and read backups back.

Runs go through the Dagster instance at DAGSTER_HOME, so they appear in the UI like any other.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from supabackup_pipeline.assets.keys import MANIFEST_KEY
from supabackup_pipeline.core.backup_id import unique_backup_id, validate_backup_id
from supabackup_pipeline.core.catalog import list_tables
from supabackup_pipeline.core.discovery_cache import update_catalog
from supabackup_pipeline.core.errors import ConfigError
from supabackup_pipeline.core.snapshot import connect
from supabackup_pipeline.core.rollback_history import rollback_history
from supabackup_pipeline.core.store import BackupStore
from supabackup_pipeline.core.verify import last_verification
from supabackup_pipeline.partitions import BACKUP_PARTITIONS_NAME
from supabackup_pipeline.resources.supabase import check_db_url


def _instance() -> dg.DagsterInstance:
    from supabackup_pipeline.cli import ensure_dagster_home

    ensure_dagster_home()
    return dg.DagsterInstance.get()


def _store() -> BackupStore:
    return BackupStore(Path(os.getenv("BACKUP_PATH") or "./backups").expanduser().resolve())


def _check_env(components: list[str]) -> None:
    """Fail before any run or partition is created when configuration is missing or malformed."""
    if {"database", "users"} & set(components):
        check_db_url(os.getenv("SUPABASE_DB_URL"))
    if "storage" in components:
        from supabackup_pipeline.resources.supabase import check_supabase_url, require

        check_supabase_url(os.getenv("SUPABASE_URL"))
        require(os.getenv("SUPABASE_SERVICE_ROLE_KEY"), "SUPABASE_SERVICE_ROLE_KEY")


COMPONENT_GROUPS = {"database": "tables", "users": "auth", "storage": "storage"}


def _selection(defs: dg.Definitions, components: list[str]) -> list[dg.AssetKey]:
    """The backup assets of the chosen components (by asset group), plus the manifest."""
    graph = defs.resolve_asset_graph()
    groups = {COMPONENT_GROUPS[c] for c in components}
    keys = {MANIFEST_KEY} | {
        key for key in graph.get_all_asset_keys()
        if graph.get(key).is_materializable and graph.get(key).group_name in groups
    }
    return sorted(keys, key=lambda k: k.to_user_string())


def _failure_message(result: dg.ExecuteInProcessResult) -> str:
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
            error = event.step_failure_data.error
            while error.cause is not None and (error.cls_name or "").startswith("Dagster"):  # unwrap to ours
                error = error.cause
            return f"{event.step_key}: {error.message.strip()}"
    for event in result.all_events:
        if event.event_type_value in ("RUN_FAILURE", "PIPELINE_FAILURE") and event.message:
            return event.message
    return "the run failed (see the run's logs in the Dagster UI)"


def run_backup(description: str = "", components: list[str] | None = None,
               instance: dg.DagsterInstance | None = None, extra_tags: dict | None = None) -> dict:
    from supabackup_pipeline.definitions import build_definitions

    components = components or ["database", "users", "storage"]
    _check_env(components)
    instance = instance or _instance()
    store = _store()
    existing = set(instance.get_dynamic_partitions(BACKUP_PARTITIONS_NAME)) | set(store.backup_ids())
    backup_id = unique_backup_id(existing)
    instance.add_dynamic_partitions(BACKUP_PARTITIONS_NAME, [backup_id])
    defs = build_definitions(str(store.root))
    job = defs.resolve_job_def("backup_job")
    result = job.execute_in_process(
        instance=instance, partition_key=backup_id, asset_selection=_selection(defs, components),
        tags={"supabackup/description": description, "supabackup/source": "cli", **(extra_tags or {})},
        raise_on_error=False,
    )
    summary = {"backup_id": backup_id, "run_id": result.run_id, "components": components}
    if store.exists(backup_id):
        manifest = store.manifest(backup_id)
        summary.update(status=manifest["status"], total_size=manifest["total_size"], path=str(store.published(backup_id)))
        if manifest["status"] == "invalid":
            failed = {k: o["problems"] for k, o in manifest.get("checks", {}).get("assets", {}).items() if not o["passed"]}
            summary["error"] = f"integrity checks failed: {failed}"
        return summary
    return {**summary, "status": "failed", "total_size": 0, "error": _failure_message(result)}


def verify(backup_id: str, quick: bool = False) -> dict:
    """Run validate_backup_job for one backup; returns the verification report."""
    from supabackup_pipeline.definitions import build_definitions

    validate_backup_id(backup_id)
    store = _store()
    store.manifest(backup_id)  # unknown ID: BackupNotFound (exit 2) before any run
    instance = _instance()
    if not instance.has_dynamic_partition(BACKUP_PARTITIONS_NAME, backup_id):
        instance.add_dynamic_partitions(BACKUP_PARTITIONS_NAME, [backup_id])
    job = build_definitions(str(store.root)).resolve_job_def("validate_backup_job")
    result = job.execute_in_process(
        instance=instance, partition_key=backup_id, raise_on_error=False,
        run_config={"ops": {"verify_backup_files": {"config": {"quick": quick}}}},
    )
    report = last_verification(store.published(backup_id))
    if report is None:
        return {"backup_id": backup_id, "valid": False, "problems": [], "error": _failure_message(result)}
    return {**report, "run_id": result.run_id}


def rollback(backup_id: str, options: dict) -> dict:
    """Run rollback_job for one backup (options: RollbackConfig fields; confirm is set here)."""
    from supabackup_pipeline.definitions import build_definitions

    validate_backup_id(backup_id)
    store = _store()
    store.manifest(backup_id)  # unknown ID: BackupNotFound (exit 2) before any run
    components = options.get("components") or ["database", "users", "storage"]
    _check_env(components)
    instance = _instance()
    if not instance.has_dynamic_partition(BACKUP_PARTITIONS_NAME, backup_id):
        instance.add_dynamic_partitions(BACKUP_PARTITIONS_NAME, [backup_id])
    job = build_definitions(str(store.root)).resolve_job_def("rollback_job")
    config = {**options, "components": components, "confirm": backup_id}
    result = job.execute_in_process(
        instance=instance, partition_key=backup_id, raise_on_error=False,
        run_config={"ops": {"verify_and_protect": {"config": config}}},
        tags={"supabackup/source": "cli"},
    )
    reports = [r for r in rollback_history(store, backup_id) if r.get("run_id") == result.run_id]
    report = reports[-1] if reports else {"backup_id": backup_id, "status": "failed"}
    if not result.success:
        report = {**report, "status": "failed", "error": report.get("error") or _failure_message(result)}
    return {**report, "run_id": result.run_id}


def delete(backup_id: str, force: bool = False) -> dict:
    """Run delete_backup_job for one backup."""
    from supabackup_pipeline.definitions import build_definitions

    validate_backup_id(backup_id)
    store = _store()
    store.manifest(backup_id)  # unknown ID: BackupNotFound (exit 2)
    instance = _instance()
    if not instance.has_dynamic_partition(BACKUP_PARTITIONS_NAME, backup_id):
        instance.add_dynamic_partitions(BACKUP_PARTITIONS_NAME, [backup_id])
    result = build_definitions(str(store.root)).resolve_job_def("delete_backup_job").execute_in_process(
        instance=instance, partition_key=backup_id, raise_on_error=False,
        run_config={"ops": {"delete_backup": {"config": {"force": force}}}},
    )
    if result.success:
        return {"backup_id": backup_id, "deleted": True, "run_id": result.run_id}
    return {"backup_id": backup_id, "deleted": False, "run_id": result.run_id, "error": _failure_message(result)}


def prune(policy: dict, dry_run: bool = False) -> dict:
    """The retention plan (dry run) or a prune_job run applying it."""
    from supabackup_pipeline.core.retention import RetentionPolicy, plan_retention
    from supabackup_pipeline.definitions import build_definitions

    store = _store()
    kept, forget = plan_retention(store, RetentionPolicy(**policy))
    if dry_run or not forget:
        return {"kept": kept, "forget": forget, "deleted": []}
    result = build_definitions(str(store.root)).resolve_job_def("prune_job").execute_in_process(
        instance=_instance(), raise_on_error=False,
        run_config={"ops": {"prune_backups": {"config": {**policy, "dry_run": False}}}},
    )
    deleted = sorted(set(forget) - set(store.backup_ids()))
    out = {"kept": kept, "forget": forget, "deleted": deleted, "run_id": result.run_id}
    if not result.success:
        out["error"] = _failure_message(result)
    return out


def list_rollbacks() -> list[dict]:
    """Every rollback (and dry run) recorded, newest first."""
    return list(reversed(rollback_history(_store())))


def list_backups() -> list[dict]:
    store = _store()
    out = []
    for backup_id in reversed(store.backup_ids()):
        m = store.manifest(backup_id)
        last = last_verification(store.published(backup_id)) or {}
        out.append({**{k: m.get(k) for k in ("backup_id", "status", "created_at", "description", "total_size", "components")},
                    "last_verified_at": last.get("verified_at"), "last_verify_valid": last.get("valid")})
    return out


def show_backup(backup_id: str) -> dict:
    validate_backup_id(backup_id)
    manifest = _store().manifest(backup_id)
    parts = manifest.get("parts", {})
    return {
        **{k: manifest.get(k) for k in ("backup_id", "status", "created_at", "description", "total_size",
                                       "components", "source", "snapshot", "tool_version")},
        "tables": parts.get("database", {}).get("tables", []),
        "users": parts.get("users", {}).get("tables", []),
        "warnings": parts.get("database", {}).get("warnings", []),
        "files": len(manifest.get("files", {})),
        "checks": manifest.get("checks"),
        "last_verification": last_verification(_store().published(backup_id)),
        "rollbacks": [{k: r.get(k) for k in ("recorded_at", "status", "dry_run", "steps", "safety_backup", "error", "run_id")}
                      for r in rollback_history(_store(), backup_id)],
    }


def refresh_tables() -> list[str]:
    db_url = check_db_url(os.getenv("SUPABASE_DB_URL"))
    schemas = [s.strip() for s in os.getenv("SUPABACKUP_SCHEMAS", "public").split(",") if s.strip()]
    if not schemas:
        raise ConfigError("SUPABACKUP_SCHEMAS is empty")
    with connect(db_url) as conn:
        tables = list_tables(conn, schemas)
    update_catalog(_store().state_dir, tables=[[t.schema, t.name] for t in tables])
    return [t.qualified for t in tables]
