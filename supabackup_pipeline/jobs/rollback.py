"""rollback_job: restore the live project from the backup chosen as the partition.

An op job, not assets, on purpose: restores change the live project, so no "Materialize all",
backfill, schedule or automation condition on the backup assets can ever start one. It runs
only when a person launches it (UI launchpad with `confirm` set to the backup ID, or
`supabackup rollback ID`). The restored live tables still show up in the asset graph: the run
reports a materialization of each `live/<schema>/<table>` asset with `restored_from`.
"""

from collections.abc import Callable
from contextlib import nullcontext

import dagster as dg
from pydantic import Field

from supabackup_pipeline.settings import PARTITION_TAG, Tag
from supabackup_pipeline.assets.keys import live_table_key
from supabackup_pipeline.code_location import execute_location_run, failure_message, interrupted
from supabackup_pipeline.core import in_use
from supabackup_pipeline.core.backup_id import validate_backup_id
from supabackup_pipeline.core.db_restore import RestoreRefused
from supabackup_pipeline.core.rollback import COMPONENTS, RollbackOptions, RollbackRefused, prevalidate, run_rollback
from supabackup_pipeline.core.discovery_cache import RELOAD_HINT, refresh_catalog
from supabackup_pipeline.core.parts import BackupStatus
from supabackup_pipeline.core.rollback_history import record_rollback
from supabackup_pipeline.core.snapshot import connect
from supabackup_pipeline.core.store import BackupStore
from supabackup_pipeline.jobs.backup import backup_job, backup_selection, take_backup
from supabackup_pipeline.partitions import PROJECT_POOL, backup_partitions
from supabackup_pipeline.resources import BackupStorage, SupabaseDatabase, SupabaseStorage
from supabackup_pipeline.resources.supabase import check_supabase_url



class RollbackConfig(dg.Config):
    components: list[str] = Field(default=list(COMPONENTS), description="database, users, storage")
    tables: list[str] | None = Field(default=None, description="only these tables (schema.table); default all")
    dry_run: bool = Field(default=False, description="print the plan only; change nothing")
    safety_backup: bool = Field(default=True, description="back up the current state first, so the rollback can be undone")
    allow_other_project: bool = Field(default=False, description="restore a backup taken from another project")
    drop_new_tables: bool = Field(default=False, description="drop tables created after the backup")
    confirm: str = Field(default="", description="type the backup ID here to confirm a real rollback")


def _record_failure(store, backup_id: str, run_id: str, dry_run: bool, exc: Exception) -> None:
    """Record a rollback that did not happen: `refused` (nothing touched, the plan was refused) or `failed`."""
    refused = isinstance(exc, (RollbackRefused, RestoreRefused))
    record_rollback(store, {"backup_id": backup_id, "run_id": run_id, "status": "refused" if refused else "failed",
                            "dry_run": dry_run, "error": str(exc)})


def _options(config: RollbackConfig) -> RollbackOptions:
    return RollbackOptions(
        components=config.components, tables=config.tables, dry_run=config.dry_run, safety_backup=config.safety_backup,
        allow_other_project=config.allow_other_project, drop_new_tables=config.drop_new_tables,
    )


def take_safety_backup(context: dg.OpExecutionContext, store: BackupStore, backup_id: str, components: list[str],
                       definitions: dg.Definitions) -> str:
    """Back up the live project's `components` before it is changed: a run of this code location's
    backup_job, executed in this step's process (with its loggers: the CLI stays quiet). A safety
    backup that does not come out valid stops the rollback before anything is restored."""
    job = definitions.resolve_job_def(backup_job.name)
    selection = backup_selection(definitions.resolve_asset_graph(), components)
    tags = {Tag.DESCRIPTION: f"pre-rollback of {backup_id}", Tag.PRE_ROLLBACK_OF: backup_id}
    run_config = {"loggers": context.run_config.get("loggers") or {}}
    safety_id, result = take_backup(context.instance, store, lambda new_id: execute_location_run(
        context.instance, job, run_config, {**tags, PARTITION_TAG: new_id}, selection))
    if interrupted(result):
        raise KeyboardInterrupt
    status = store.manifest(safety_id)["status"] if store.exists(safety_id) else "failed"
    if status != BackupStatus.VALID:
        why = f": {failure_message(result)}" if not result.success else ""
        raise dg.Failure(description=f"the safety backup {safety_id} is {status} (run {result.run_id}{why});"
                                     " nothing was restored")
    return safety_id


def build_verify_and_protect(definitions: Callable[[], dg.Definitions]) -> dg.OpDefinition:
    """The rollback's first step; `definitions` gives the code location it is part of, whose
    backup_job takes the safety backup."""

    @dg.op(description="Verify the backup (refuse a bad one), then back up the current state so the rollback can be undone."
           " Outside the project pool on purpose: the safety backup's own steps need that pool's slot.")
    def verify_and_protect(context: dg.OpExecutionContext, config: RollbackConfig, database: SupabaseDatabase,
                           storage: SupabaseStorage, backups: BackupStorage) -> dict:
        backup_id = validate_backup_id(context.partition_key)
        if not config.dry_run and config.confirm != backup_id:
            raise dg.Failure(description=f"a real rollback needs confirmation: set `confirm` to {backup_id!r} in the run config")
        options = _options(config)
        options.check()
        store = backups.store()
        needs_db = bool({"database", "users"} & set(config.components))
        unmarked = in_use.hold(store, backup_id, context.run_id)  # released by rollback_project, or with this run
        if unmarked:
            context.log.warning(unmarked)
        try:
            prevalidate(store, backup_id, database.database_url() if needs_db else None, options, context.log.info,
                        storage_url=check_supabase_url(storage.url) if "storage" in config.components else None)
        except Exception as exc:
            in_use.release(store, backup_id, context.run_id)
            _record_failure(store, backup_id, context.run_id, config.dry_run, exc)
            raise
        prepared = {"config": config.model_dump(), "safety_backup_id": ""}
        if config.dry_run or not config.safety_backup:
            return prepared
        try:
            safety_id = take_safety_backup(context, store, backup_id, config.components, definitions())
        except BaseException:
            in_use.release(store, backup_id, context.run_id)
            raise
        context.log.info(f"safety backup {safety_id} taken: this rollback can itself be undone")
        return {**prepared, "safety_backup_id": safety_id}

    return verify_and_protect


def _follow_live_tables(context: dg.OpExecutionContext, database: SupabaseDatabase, store) -> None:
    """The asset list follows the restored project: a table the rollback brought back may be missing
    from it (the safety backup, taken while the table was dropped, rewrote the list)."""
    try:
        with connect(database.database_url()) as conn:
            tables, changed = refresh_catalog(conn, database.schema_list(), store.state_dir)
    except OSError as exc:  # a full disk: the rollback is done; only the list waits for the next refresh
        context.log.warning(f"the table list was not refreshed ({exc}): run `supabackup refresh-tables` later")
        return
    if changed:
        context.log.info(f"the table list changed ({len(tables)} tables): {RELOAD_HINT}")


@dg.op(pool=PROJECT_POOL, description="Plan, restore the database (one transaction) and storage, post-validate.")
def rollback_project(context: dg.OpExecutionContext, prepared: dict,
                     database: SupabaseDatabase, storage: SupabaseStorage, backups: BackupStorage):
    """Takes its config from the step before (run config is given once, on `verify_and_protect`)."""
    backup_id = validate_backup_id(context.partition_key)
    config = RollbackConfig(**prepared["config"])
    safety_backup_id = prepared["safety_backup_id"]
    options = _options(config)
    options.safety_backup = bool(safety_backup_id)
    store = backups.store()
    needs_db = bool({"database", "users"} & set(config.components))
    try:
        with storage.api() if "storage" in config.components else nullcontext() as storage_api:
            report = run_rollback(
                store, backup_id, database.database_url() if needs_db else None, storage_api, options,
                take_safety_backup=lambda: safety_backup_id, log=context.log.info, verified=True,
            )
    except Exception as exc:
        _record_failure(store, backup_id, context.run_id, config.dry_run, exc)
        raise
    finally:
        in_use.release(store, backup_id, context.run_id)
    report["run_id"] = context.run_id
    unkept = record_rollback(store, report)
    if unkept:
        context.log.warning(unkept)
    if "database" in config.components and not config.dry_run:
        _follow_live_tables(context, database, store)
    for table in report.get("database", {}).get("tables", []):
        schema, name = table["table"].split(".", 1)
        context.log_event(dg.AssetMaterialization(
            asset_key=live_table_key(schema, name),
            metadata={"restored_from": backup_id, "rows": dg.MetadataValue.int(table["rows"]),
                      "duration_s": dg.MetadataValue.float(table["seconds"]), "checksum": table.get("checksum", ""),
                      "validated_by": table.get("validated_by", "")},
        ))
    return dg.Output(None, metadata={
        "backup_id": backup_id, "status": report["status"], "dry_run": config.dry_run,
        "safety_backup": report.get("safety_backup", ""), "steps_s": dg.MetadataValue.json(report["steps"]),
        "plan": dg.MetadataValue.json(report["plan"]),
        "storage": dg.MetadataValue.json(report.get("storage", {})),
        "report": dg.MetadataValue.json(report),  # whole, for the CLI when .state could not keep it
    })


def build_rollback_job(definitions: Callable[[], dg.Definitions]) -> dg.JobDefinition:
    """rollback_job of the code location `definitions()` (see build_verify_and_protect)."""
    verify_and_protect = build_verify_and_protect(definitions)

    # The code location's executor, a process per step (STEP_PROCESSES): should the restore step's
    # process die (the kernel's OOM killer picks the largest), the run's own process is still there
    # to fail the run, which frees the project pool. A dead run process would leave the run STARTED, holding the pool
    # from every later backup and rollback (the default run launcher cannot check on it).
    @dg.job(partitions_def=backup_partitions, tags={Tag.KIND: "rollback"},
            description="Roll the live project back to the backup chosen as the partition (needs `confirm`).")
    def rollback_job():
        rollback_project(verify_and_protect())

    return rollback_job
