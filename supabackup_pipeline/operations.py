"""What the CLI does, as functions: run the Dagster jobs in-process and read backups back.

Runs go through the Dagster instance at DAGSTER_HOME as runs of the code location's jobs, so they
appear in the UI (job pages, timeline) and reach the sensors like runs launched there.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from supabackup_pipeline import settings
from supabackup_pipeline.settings import PARTITION_TAG, Tag, ensure_dagster_home
from supabackup_pipeline.code_location import execute_location_run, failure_message, failure_of, interrupted
from supabackup_pipeline.core.backup_id import validate_backup_id
from supabackup_pipeline.core.discovery_cache import refresh_catalog
from supabackup_pipeline.core.parts import BackupStatus, Parts
from supabackup_pipeline.core.errors import REFUSAL_CLASSES, ConfigError
from supabackup_pipeline.core.rollback_history import rollback_history
from supabackup_pipeline.core.snapshot import connect, utc_now
from supabackup_pipeline.core.store import BackupStore
from supabackup_pipeline.core.verify import last_quick_check, last_verification, shown_status
from supabackup_pipeline.jobs.backup import backup_selection, take_backup
from supabackup_pipeline.partitions import BACKUP_PARTITIONS_NAME
from supabackup_pipeline.resources.supabase import check_db_url


# CLI runs write to the terminal directly: Dagster's compute-log capture would mirror it through
# `tail -F` and a watcher process, which print KeyboardInterrupt tracebacks on Ctrl-C.
NO_CAPTURE = {"compute_logs": {"module": "dagster._core.storage.noop_compute_log_manager",
                               "class": "NoOpComputeLogManager"}}


def _instance() -> dg.DagsterInstance:
    """The instance at DAGSTER_HOME (run history, partitions, event log), without compute-log capture."""
    from dagster._core.instance.ref import InstanceRef

    home = ensure_dagster_home()
    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home), overrides=NO_CAPTURE))


VERBOSE_ENV = "SUPABACKUP_VERBOSE"  # set by `--verbose`: Dagster's event log on the console


def _store(must_exist: bool = True) -> BackupStore:
    """The backup folder (BACKUP_PATH); one that was set but does not exist is an error, not "no backups"."""
    store = BackupStore(settings.backup_path())
    if must_exist and settings.backup_path_was_set() and not store.root.is_dir():
        raise ConfigError(f"BACKUP_PATH {store.root} does not exist (or is not a folder)")
    blocking = next((p for p in [store.root, *store.root.parents] if p.exists()), None)
    if blocking is not None and not blocking.is_dir():  # backup and refresh-tables would create it under a file
        raise ConfigError(f"BACKUP_PATH {store.root} cannot be a folder: {blocking} is a file")
    return store


def _check_env(components: list[str]) -> None:
    """Fail before any run or partition is created when configuration is missing or malformed,
    naming every variable at fault at once."""
    from supabackup_pipeline.resources.supabase import NOT_SET, check_supabase_url, require

    checks = []
    if {"database", "users"} & set(components):
        checks.append(lambda: check_db_url(os.getenv("SUPABASE_DB_URL")))
    if "storage" in components:
        checks.append(lambda: check_supabase_url(os.getenv("SUPABASE_URL")))
        checks.append(lambda: require(os.getenv("SUPABASE_SERVICE_ROLE_KEY"), "SUPABASE_SERVICE_ROLE_KEY"))
    unset, problems = [], []
    for check in checks:
        try:
            check()
        except ConfigError as exc:
            message = str(exc)
            if message.endswith(NOT_SET):
                unset.append(message.split(" ", 1)[0])
            else:
                problems.append(message)
    if unset:
        names = ", ".join(unset[:-1]) + (" and " if len(unset) > 1 else "") + unset[-1]
        problems.insert(0, f"{names} {'is' if len(unset) == 1 else 'are'} {NOT_SET}")
    if problems:
        raise ConfigError("; ".join(problems))


def _execute(defs: dg.Definitions, name: str, instance: dg.DagsterInstance, run_config: dict | None = None,
             partition_key: str | None = None, tags: dict | None = None,
             asset_selection: list[dg.AssetKey] | None = None) -> dg.ExecutionResult:
    """Run a job of the code location in this process, as a run of that code location (see
    code_location.py): quiet (one line per phase) unless --verbose."""
    run_config = dict(run_config or {})
    if not os.getenv(VERBOSE_ENV):
        run_config["loggers"] = {"phases": {}}  # the code location's logger (definitions.py)
    tags = {**(tags or {}), **({PARTITION_TAG: partition_key} if partition_key else {})}
    result = execute_location_run(instance, defs.resolve_job_def(name), run_config, tags, asset_selection)
    if interrupted(result):
        raise KeyboardInterrupt
    return result


def run_backup(description: str = "", components: list[str] | None = None,
               instance: dg.DagsterInstance | None = None) -> dict:
    """Run backup_job for a new backup ID; returns its status, size and path (or the error)."""
    from supabackup_pipeline.definitions import build_definitions

    components = components or ["database", "users", "storage"]
    _check_env(components)
    instance = instance or _instance()
    store = _store(must_exist=False)
    defs = build_definitions(str(store.root))
    backup_id, result = take_backup(instance, store, lambda new_id: _execute(
        defs, "backup_job", instance=instance, partition_key=new_id,
        asset_selection=backup_selection(defs.resolve_asset_graph(), components),
        tags={Tag.DESCRIPTION: description, Tag.SOURCE: "cli"},
    ))
    summary = {"backup_id": backup_id, "run_id": result.run_id, "components": components}
    if store.exists(backup_id):
        manifest = store.manifest(backup_id)
        summary.update(status=manifest["status"], total_size=manifest["total_size"], path=str(store.published(backup_id)))
        if manifest["status"] == BackupStatus.INVALID:
            failed = {k: o["problems"] for k, o in manifest.get("checks", {}).get("assets", {}).items() if not o["passed"]}
            summary["error"] = f"integrity checks failed: {failed}"
        return summary
    return {**summary, "status": "failed", "total_size": 0, "error": failure_message(result)}


def verify(backup_id: str, quick: bool = False) -> dict:
    """Run validate_backup_job for one backup; returns the verification report."""
    from supabackup_pipeline.definitions import build_definitions

    validate_backup_id(backup_id)
    store = _store()
    store.manifest(backup_id)  # unknown ID: BackupNotFound (exit 2) before any run
    instance = _instance()
    if not instance.has_dynamic_partition(BACKUP_PARTITIONS_NAME, backup_id):
        instance.add_dynamic_partitions(BACKUP_PARTITIONS_NAME, [backup_id])
    started = utc_now()
    result = _execute(
        build_definitions(str(store.root)), "validate_backup_job", instance=instance, partition_key=backup_id,
        run_config={"ops": {"verify_backup_files": {"config": {"quick": quick}}}},
    )
    report = [r for r in (last_verification(store.published(backup_id)), last_quick_check(store.published(backup_id)))
              if r and r.get("quick") == quick and r["verified_at"] >= started]
    report = report or _observed_in_run(result)  # a read-only or full BACKUP_PATH could not keep the record
    if not report:
        return {"backup_id": backup_id, "valid": False, "status": "failed", "problems": [],
                "error": failure_message(result)}
    return {**report[0], "run_id": result.run_id}


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
    config = {**options, "components": components, "confirm": backup_id}
    result = _execute(
        build_definitions(str(store.root)), "rollback_job", instance=instance, partition_key=backup_id,
        run_config={"ops": {"verify_and_protect": {"config": config}}}, tags={Tag.SOURCE: "cli"},
    )
    reports = [r for r in rollback_history(store, backup_id) if r.get("run_id") == result.run_id]
    reports = reports or _reported_in_run(result)  # a full disk kept it out of .state/rollbacks
    report = reports[-1] if reports else {"backup_id": backup_id, "status": "failed"}
    if not result.success:
        status = "refused" if report.get("status") == "refused" else "failed"
        report = {**report, "status": status, "error": report.get("error") or failure_message(result)}
    elif options.get("dry_run"):
        _add_content_changes(store, backup_id, report.get("plan") or {})
    return {**report, "run_id": result.run_id}


def _observed_in_run(result: dg.ExecutionResult) -> list[dict]:
    """The verification's report as the run's observation of the backup carries it."""
    return [event.asset_observation_data.asset_observation.metadata["report"].value for event in result.all_events
            if event.event_type_value == "ASSET_OBSERVATION"
            and "report" in event.asset_observation_data.asset_observation.metadata]


def _reported_in_run(result: dg.ExecutionResult) -> list[dict]:
    """The rollback's report as its step output carries it."""
    return [event.step_output_data.metadata["report"].value for event in result.all_events
            if event.event_type_value == "STEP_OUTPUT" and "report" in (event.step_output_data.metadata or {})]


def _add_content_changes(store: BackupStore, backup_id: str, plan: dict) -> None:
    """Mark each planned table `content_changed` (True/False/None): its live COPY digest against the backup's."""
    from supabackup_pipeline.core.content_check import content_changes, probes_from_plan

    tables = (plan.get("database") or {}).get("tables") or []
    if not tables:
        return
    root = store.published(backup_id)
    with connect(check_db_url(os.getenv("SUPABASE_DB_URL"))) as conn:
        changed = content_changes(conn, root, probes_from_plan(root, store.manifest(backup_id), tables))
    for table in tables:
        table["content_changed"] = changed.get(table["table"])


def delete(backup_id: str, force: bool = False) -> dict:
    """Run delete_backup_job for one backup."""
    from supabackup_pipeline.definitions import build_definitions

    validate_backup_id(backup_id)
    store = _store()
    store.manifest(backup_id)  # unknown ID: BackupNotFound (exit 2)
    instance = _instance()
    if not instance.has_dynamic_partition(BACKUP_PARTITIONS_NAME, backup_id):
        instance.add_dynamic_partitions(BACKUP_PARTITIONS_NAME, [backup_id])
    result = _execute(
        build_definitions(str(store.root)), "delete_backup_job", instance=instance, partition_key=backup_id,
        run_config={"ops": {"delete_backup": {"config": {"force": force}}}},
    )
    if result.success:
        return {"backup_id": backup_id, "deleted": True, "run_id": result.run_id}
    cls_name, message = failure_of(result)
    return {"backup_id": backup_id, "deleted": False, "refused": cls_name in REFUSAL_CLASSES,
            "run_id": result.run_id, "error": message}


def prune(policy: dict, dry_run: bool = False) -> dict:
    """The retention plan (dry run) or a prune_job run applying it."""
    from supabackup_pipeline.core.retention import RetentionPolicy, plan_retention
    from supabackup_pipeline.definitions import build_definitions

    from supabackup_pipeline.jobs.retention import find_leftovers

    store = _store()
    instance = _instance()
    kept, forget = plan_retention(store, RetentionPolicy(**policy))
    leftovers = find_leftovers(instance, store)
    plan = {"kept": kept, "forget": forget, "deleted": [], **leftovers}
    if dry_run or not (forget or any(leftovers.values())):
        return plan
    result = _execute(
        build_definitions(str(store.root)), "prune_job", instance=instance,
        run_config={"ops": {"prune_backups": {"config": {**policy, "dry_run": False}}}},
    )
    deleted = sorted(set(forget) - set(store.backup_ids()))
    out = {**plan, "deleted": deleted, "run_id": result.run_id}
    if not result.success:
        out["error"] = failure_message(result)
    return out


def list_rollbacks() -> list[dict]:
    """Every rollback (and dry run) recorded, newest first."""
    return list(reversed(rollback_history(_store())))


def list_backups() -> list[dict]:
    """Published backups, newest first; `status` is what the last full verification found."""
    store = _store()
    out = []
    for backup_id in reversed(store.backup_ids()):
        m = store.manifest(backup_id)
        root = store.published(backup_id)
        last = last_verification(root) or {}
        out.append({**{k: m.get(k) for k in ("backup_id", "created_at", "description", "total_size", "components")},
                    "status": shown_status(root, m.get("status")), "made_status": m.get("status"),
                    "last_verified_at": last.get("verified_at"), "last_verify_valid": last.get("valid")})
    return out


def backup_folder() -> Path:
    """BACKUP_PATH, resolved (an error if it was set and does not exist)."""
    return _store().root


def list_unpublished() -> dict:
    """What `list --all` adds: staging folders (running or stale, with bytes) and partitions with no backup."""
    from supabackup_pipeline.jobs.retention import find_leftovers

    store = _store()
    leftovers = find_leftovers(_instance(), store)
    staging = [{"backup_id": b, "state": "stale" if b in leftovers["stale_staging"] else "running",
                "bytes": store.staging_size(b)} for b in reversed(store.staging_ids())]
    return {"staging": staging, "orphan_partitions": leftovers["orphan_partitions"]}


def show_backup(backup_id: str) -> dict:
    validate_backup_id(backup_id)
    store = _store()
    manifest = store.manifest(backup_id)
    parts = Parts.from_manifest(manifest)
    return {
        **{k: manifest.get(k) for k in ("backup_id", "created_at", "description", "total_size",
                                       "components", "source", "snapshot", "tool_version")},
        "status": shown_status(store.published(backup_id), manifest.get("status")),
        "made_status": manifest.get("status"),
        "tables": [t.to_json() for t in parts.database.tables] if parts.database else [],
        "users": [t.to_json() for t in parts.users.tables] if parts.users else [],
        "warnings": parts.database.warnings if parts.database else [],
        "files": len(manifest.get("files", {})),
        "checks": manifest.get("checks"),
        "last_verification": last_verification(_store().published(backup_id)),
        "rollbacks": [{k: r.get(k) for k in ("recorded_at", "status", "dry_run", "steps", "safety_backup", "error", "run_id")}
                      for r in rollback_history(_store(), backup_id)],
    }


def refresh_tables() -> list[str]:
    db_url = check_db_url(os.getenv("SUPABASE_DB_URL"))
    schemas = settings.parse_schemas(settings.schemas_setting())
    with connect(db_url) as conn:
        return refresh_catalog(conn, schemas, _store(must_exist=False).state_dir)[0]
