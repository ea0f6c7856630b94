"""Would parallel loads make the rollback fast enough? The rollback against a prototype with staging tables.

A restore is one transaction, so one server backend does all of its work, as in `pg_restore`:
at small, the rollback misses issue 13's ≤ 1.0× `pg_restore` by the post-validation's read-back.
This prototype spreads that work over more backends. The app's tables are loaded, indexed and
read back (each against its dump's `copy_sha256`) in staging tables of a schema of their own, by
2 connections, each table in a transaction of its own. Meanwhile the one transaction drops the
app's tables, empties and loads the auth tables (Supabase's, which cannot be swapped) and reads
them back. Then it moves the staging tables into `public` and adds the foreign keys back.
Finally it rolls back, so the project is left as it was, and drops the staging schema. Run it on
the benchmark's project only: it drops the app's tables (in the transaction it rolls back).

It measures the parallel part of a redesign only. Left out, and printed as an estimate from the
rollback's own phases: the plan, the schema rebuild's other objects (views, functions,
policies, partitions attached with their bounds, sequences), the commit and the schema
comparison. Each staging table is emptied by TRUNCATE in the transaction that loads it: COPY
then fills a new file page after page, as in the rollback, and the rows read back in the order
the backup read them. In a table made earlier, COPY would fill free space the free space map
points to, out of order.

    .venv/bin/python benchmarks/staging_restore_prototype.py --size small --repeat 3
    .venv/bin/python benchmarks/staging_restore_prototype.py --db-url postgresql://... (a built project)
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from realistic_benchmark import run_child  # noqa: E402
from realistic_project import add_project_options, on_project  # noqa: E402

from supabackup_pipeline.core.catalog import TableRef  # noqa: E402
from supabackup_pipeline.core.fingerprint import live_copy_sha256  # noqa: E402
from supabackup_pipeline.core.snapshot import connect  # noqa: E402
from supabackup_pipeline.core.table_load import LoadJob, load_table, load_tables  # noqa: E402

STAGING = "supabackup_staging_prototype"
AUTH_EMPTIED = "auth.users, auth.identities, auth.mfa_factors, auth.sessions, auth.refresh_tokens"


def table_dumps(folder: Path) -> list[tuple[dict, Path]]:
    """(sidecar, Parquet file) of every table dump in `folder`, largest file first."""
    sidecars = [json.loads(p.read_text()) for p in folder.glob("*.json")]
    dumps = [(s, folder / s["parquet"]["file"]) for s in sidecars if "parquet" in s]
    return sorted(dumps, key=lambda dump: -dump[1].stat().st_size)


def prepare_staging(db_url: str, app: list[dict]) -> tuple[dict[str, list[str]], list[tuple[str, str, str]]]:
    """The staging tables (like the live ones), and the live tables' index and foreign-key definitions."""
    with connect(db_url) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {STAGING} CASCADE")
        conn.execute(f"CREATE SCHEMA {STAGING}")
        indexes = {}
        for sidecar in app:
            live, staged = TableRef("public", sidecar["table"]).sql, TableRef(STAGING, sidecar["table"]).sql
            conn.execute(f"CREATE TABLE {staged} (LIKE {live} INCLUDING DEFAULTS INCLUDING GENERATED"
                         " INCLUDING IDENTITY INCLUDING STORAGE)")
            definitions = conn.execute("SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = %s::regclass",
                                       (live,)).fetchall()
            indexes[sidecar["table"]] = [re.sub(r" ON (ONLY )?.+? USING ", f" ON {staged} USING ", d, count=1)
                                         for (d,) in definitions]
        foreign_keys = conn.execute(
            "SELECT k.conrelid::regclass::text, quote_ident(k.conname), pg_get_constraintdef(k.oid) FROM pg_constraint k"
            " JOIN pg_class r ON r.oid = k.conrelid WHERE k.contype = 'f' AND r.relnamespace = 'public'::regnamespace"
            " AND r.relname = ANY(%s) AND k.conparentid = 0", ([s["table"] for s in app],)).fetchall()
    return indexes, foreign_keys


def load_staged(db_url: str, pending: list[tuple[dict, Path]], indexes: dict[str, list[str]], failed: list[str]) -> None:
    """One worker: take the next app table, load, index and read it back in staging, commit."""
    with connect(db_url) as conn:
        conn.autocommit = False
        while True:
            try:
                sidecar, parquet = pending.pop(0)
            except IndexError:  # the other worker took the last one
                return
            staged = TableRef(STAGING, sidecar["table"])
            conn.execute(f"TRUNCATE {staged.sql}")  # a new file in this transaction: filled in order
            load_table(conn, parquet, sidecar, staged)
            for definition in indexes[sidecar["table"]]:
                conn.execute(definition)
            if live_copy_sha256(conn, {**sidecar, "schema": STAGING})[1] != sidecar["copy_sha256"]:
                failed.append(staged.qualified)
            conn.commit()


def load_auth(tx, app: list[dict], auth: list[tuple[dict, Path]], failed: list[str]) -> None:
    """In the one transaction: the app's tables dropped, the auth tables emptied, loaded, read back."""
    tx.execute("SET LOCAL session_replication_role = replica")
    for sidecar in app:
        tx.execute(f"DROP TABLE {TableRef('public', sidecar['table']).sql} CASCADE")
    tx.execute(f"TRUNCATE {AUTH_EMPTIED}")
    for _ in load_tables(tx, [LoadJob(parquet, sidecar) for sidecar, parquet in auth]):
        pass
    failed.extend(s["table"] for s, _ in auth if live_copy_sha256(tx, s)[1] != s["copy_sha256"])


def reporting(failed: list[str], target, *args) -> threading.Thread:
    """A thread running `target(*args)` that adds its exception, if any, to `failed`."""
    def run() -> None:
        try:
            target(*args)
        except Exception as exc:  # noqa: BLE001 - reported by the caller
            failed.append(f"{target.__name__}: {exc}")

    return threading.Thread(target=run)


def staged_restore(db_url: str, root: Path) -> dict[str, float]:
    """Seconds of each part of the prototype (rolled back at the end)."""
    app, auth = table_dumps(root / "database"), table_dumps(root / "users")
    sidecars = [s for s, _ in app]
    started = time.perf_counter()
    indexes, foreign_keys = prepare_staging(db_url, sidecars)
    setup = time.perf_counter()
    pending, failed = list(app), []
    tx = connect(db_url)
    try:
        tx.autocommit = False
        threads = [reporting(failed, load_staged, db_url, pending, indexes, failed) for _ in range(2)]
        threads.append(reporting(failed, load_auth, tx, sidecars, auth, failed))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failed:
            raise SystemExit(f"the prototype failed or read back other rows than the backup's: {failed}")
        loaded = time.perf_counter()
        for sidecar in sidecars:
            tx.execute(f"ALTER TABLE {TableRef(STAGING, sidecar['table']).sql} SET SCHEMA public")
        for table, name, definition in foreign_keys:
            tx.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}")
        swapped = time.perf_counter()
    finally:
        tx.rollback()
        tx.close()
        with connect(db_url) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {STAGING} CASCADE")
    return {"setup": setup - started, "parallel load, indexes, read-back": loaded - setup,
            "swap, foreign keys": swapped - loaded, "total": swapped - started}


def run(db_url: str, repeat: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="supabackup-staging-"))
    try:
        run_child("backup", db_url=db_url, out=str(root), workers=2)
        best: dict[str, float] = {}
        for round_ in range(max(1, repeat)):
            rollback, _ = run_child("restore", db_url=db_url, root=str(root))
            phases = rollback["phases"]
            rest = sum(phases.get(k, 0.0) for k in ("plan", "commit", "schema_validation"))
            staged = staged_restore(db_url, root)
            print(f"round {round_ + 1}: rollback {rollback['seconds']:.2f} s (of which plan, commit and schema"
                  f" comparison {rest:.2f}); prototype " + ", ".join(f"{k} {v:.2f}" for k, v in staged.items()), flush=True)
            for name, seconds in (("rollback", rollback["seconds"]), ("prototype", staged["total"]),
                                  ("prototype + plan, commit, comparison", staged["total"] + rest)):
                best[name] = min(best.get(name, seconds), seconds)
        print("best: " + ", ".join(f"{k} {v:.2f} s" for k, v in best.items()))
        print(f"prototype + plan, commit, comparison / rollback = {best['prototype + plan, commit, comparison'] / best['rollback']:.2f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_project_options(parser)
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the fastest of each counts")
    args = parser.parse_args()
    on_project(args, lambda url: run(url, args.repeat))


if __name__ == "__main__":
    main()
