"""Table dumps and the users export: one multi-asset, so that all of them share ONE snapshot.

Dagster runs each step in its own process, and an exported snapshot lives only as long as the
transaction that exported it. So every table (and the users export) is an output of a single
step that holds the snapshot and dumps with parallel worker connections inside it.
"""

from typing import Iterator

import dagster as dg

from supabackup_pipeline.settings import Group
from supabackup_pipeline.assets.keys import DATABASE_SCHEMA_KEY, USERS_KEY, live_table_key, table_key
from supabackup_pipeline.assets.refusal import refusal_cancels_run
from supabackup_pipeline.core.backup_id import validate_backup_id
from supabackup_pipeline.core.catalog import TableRef
from supabackup_pipeline.core.database_backup import AUTH_TABLES, backup_database, database_parts
from supabackup_pipeline.core.discovery_cache import RELOAD_HINT, update_catalog
from supabackup_pipeline.core.files import disk_full_named
from supabackup_pipeline.core.parts import Component
from supabackup_pipeline.core.table_dump import TableDump
from supabackup_pipeline.partitions import PROJECT_POOL, backup_partitions
from supabackup_pipeline.resources import BackupStorage, SupabaseDatabase


LIVE_AUTH_TABLES = [TableRef("auth", name) for name in AUTH_TABLES[:3]]  # every project has these three


def live_table_specs(tables: list[TableRef]) -> list[dg.AssetSpec]:
    """The live project's tables and its users tables, as external assets: lineage reads live table →
    backup, and a rollback reports a materialization of each table it restored."""
    users = [t for t in LIVE_AUTH_TABLES if t not in tables]
    return [
        dg.AssetSpec(
            live_table_key(t.schema, t.name), group_name=Group.LIVE, kinds={"supabase", "postgres"},
            description=f"The live table {t.qualified} in the project's database (a rollback restores it).",
        )
        for t in [*tables, *users]
    ]


def _dump_metadata(dump: TableDump, backup_id: str) -> dict:
    return {
        "backup_id": backup_id,
        "table": dump.ref.qualified,
        "rows": dg.MetadataValue.int(dump.rows),
        "bytes": dg.MetadataValue.int(dump.parquet_bytes + dump.sidecar_bytes),
        "sha256": dump.parquet_sha256,
        "duration_s": dg.MetadataValue.float(round(dump.seconds, 3)),
        "rows_per_s": dg.MetadataValue.float(round(dump.rows_per_second, 1)),
        "file": dump.parquet_file,
    }


def _database_specs(tables: list[TableRef]) -> list[dg.AssetSpec]:
    """The schema asset, one asset per table (in `tables`' order), and the users asset."""
    table_specs = [
        dg.AssetSpec(
            table_key(t.schema, t.name), deps=[live_table_key(t.schema, t.name)], group_name=Group.TABLES,
            kinds={"postgres", "parquet"}, metadata={"table": t.qualified},
            description=f"Backup of {t.qualified}: rows as Parquet plus a JSON sidecar (types, DDL, checksums).",
        )
        for t in tables
    ]
    return [
        dg.AssetSpec(
            DATABASE_SCHEMA_KEY, group_name=Group.TABLES, kinds={"postgres", "sql"},
            description="The snapshot every table and user is read from, the schema DDL (pg_dump --schema-only) and"
            " sequence values. Selecting it makes the run dump every table that exists at run time.",
        ),
        *table_specs,
        dg.AssetSpec(
            USERS_KEY, group_name=Group.AUTH, kinds={"supabase", "parquet"},
            deps=[live_table_key(t.schema, t.name) for t in LIVE_AUTH_TABLES],
            description="auth.users, auth.identities, auth.mfa_factors (and webauthn_credentials), password hashes"
            " included; never sessions or refresh tokens.",
        ),
    ]


def _materializations(result, selected: set, by_key: dict, backup_id: str, log) -> Iterator[dg.MaterializeResult]:
    """One result per selected asset: tables new since the code location loaded are backed up and
    named; tables gone since are reported, not skipped (a skipped output would also skip the checks
    and the manifest)."""
    without_asset = sorted(d.ref.qualified for d in result.tables if table_key(d.ref.schema, d.ref.name) not in selected)
    gone = sorted(by_key[k].qualified for k in selected if k in by_key and by_key[k] not in {d.ref for d in result.tables})
    if without_asset:
        log.info(f"tables new since the code location loaded (backed up; reload for their assets): {without_asset}")
    if gone:
        log.warning(f"tables no longer in the database (nothing to back up): {gone}")
    if DATABASE_SCHEMA_KEY in selected:
        yield dg.MaterializeResult(asset_key=DATABASE_SCHEMA_KEY, metadata={
            "backup_id": backup_id,
            "snapshot": result.snapshot.snapshot_id,
            "wal_lsn": result.snapshot.wal_lsn or "",
            "tables": dg.MetadataValue.int(len(result.tables)),
            "tables_without_asset": dg.MetadataValue.json(without_asset),
            "warnings": dg.MetadataValue.json(result.warnings),
            "duration_s": dg.MetadataValue.float(round(result.seconds, 3)),
        })
    for dump in result.tables:
        key = table_key(dump.ref.schema, dump.ref.name)
        if key in selected:
            yield dg.MaterializeResult(asset_key=key, metadata=_dump_metadata(dump, backup_id))
    for key in sorted(k for k in selected if k in by_key and by_key[k].qualified in gone):
        yield dg.MaterializeResult(asset_key=key, metadata={
            "backup_id": backup_id, "table": by_key[key].qualified,
            "status": "gone: the table no longer exists, nothing was backed up"})
    if USERS_KEY in selected:
        counts = {d.ref.qualified: d.rows for d in result.users}
        yield dg.MaterializeResult(asset_key=USERS_KEY, metadata={
            "backup_id": backup_id,
            "users": dg.MetadataValue.int(counts.get("auth.users", 0)),
            "rows": dg.MetadataValue.json(counts),
            "bytes": dg.MetadataValue.int(sum(d.parquet_bytes + d.sidecar_bytes for d in result.users)),
        })


def build_database_dump(tables: list[TableRef]) -> dg.AssetsDefinition:
    specs = _database_specs(tables)
    by_key = {spec.key: t for spec, t in zip(specs[1:-1], tables)}

    @dg.multi_asset(
        name="database_dump", specs=specs, partitions_def=backup_partitions, can_subset=True, pool=PROJECT_POOL,
        description="Dump tables and users from one consistent database snapshot.",
    )
    def database_dump(context: dg.AssetExecutionContext, database: SupabaseDatabase, backups: BackupStorage):
        backup_id = validate_backup_id(context.partition_key)
        store = backups.store()
        selected = context.selected_asset_keys
        complete = DATABASE_SCHEMA_KEY in selected
        wanted = None if complete else {by_key[k] for k in selected if k in by_key}
        with refusal_cancels_run(context), disk_full_named(store.root):  # refused: the run ends canceled
            result = backup_database(
                database.database_url(), store.start(backup_id), database.schema_list(), tables=wanted,
                include_users=USERS_KEY in selected, log=context.log.info, missing_ok=True,
            )
            parts = database_parts(result, complete, database.schema_list())
            store.write_part(backup_id, Component.DATABASE, parts.database.to_json())
            if parts.users:
                store.write_part(backup_id, Component.USERS, parts.users.to_json())
        if complete and update_catalog(store.state_dir, tables=[[d.ref.schema, d.ref.name] for d in result.tables]):
            context.log.info(f"the table list changed: {RELOAD_HINT}")
        yield from _materializations(result, selected, by_key, backup_id, context.log)

    return database_dump
