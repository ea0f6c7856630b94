"""Database restore speed against pg_restore, on the same data in the same run.

Builds the same mixed-type tables as database_benchmark.py, backs them up (supabackup) and dumps
them (`pg_dump -Fc --data-only`), then times, each starting from the same damaged state:
  - `TRUNCATE` + `pg_restore --data-only --single-transaction` (the standard tool),
  - supabackup's database restore: one transaction that rebuilds the schema (drop, recreate, COPY
    from Parquet into index-less tables — binary where possible —, then constraints and indexes),
    post-validation (every restored table read back and compared with the digest the backup
    recorded), and after the commit the schema compared with the backup's (one pg_dump),
and prints the ratios with and without the post-validation (which pg_restore has no equivalent
of; issue 7's target: <= 1.0), the seconds of each phase, and the restore's peak RSS.

    .venv/bin/python benchmarks/restore_benchmark.py --rows 1000000
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from database_benchmark import build  # noqa: E402  (same data as the backup benchmark)

from supabackup_pipeline.dev.stack import create_database  # noqa: E402

TABLES = ("public.events", "public.profiles")


def damage(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as db:
        db.execute("DELETE FROM public.events WHERE id % 2 = 0; DELETE FROM public.profiles WHERE id % 3 = 0")


def pg_restore(db_url: str, dump: Path) -> float:
    started = time.perf_counter()
    with psycopg.connect(db_url, autocommit=True) as db:
        db.execute(f"TRUNCATE {', '.join(TABLES)}")
    subprocess.run(["pg_restore", "--data-only", "--single-transaction", "--dbname", db_url, str(dump)], check=True)
    return time.perf_counter() - started


def supabackup_restore(db_url: str, backup: Path, manifest: dict) -> tuple[float, int, dict]:
    """In a child process, so that its peak memory (VmHWM) is its own."""
    manifest_file = backup / "bench-manifest.json"
    manifest_file.write_text(json.dumps(manifest))
    code = f"""
import json, re, time
from pathlib import Path
from supabackup_pipeline.core.db_restore import apply_database_restore, plan_database_restore
from supabackup_pipeline.core.snapshot import connect
manifest = json.loads(Path({str(manifest_file)!r}).read_text())
t = time.perf_counter()
with connect({db_url!r}) as conn:
    plan = plan_database_restore(conn, Path({str(backup)!r}), manifest, ["database"])
planned = time.perf_counter() - t
result = apply_database_restore({db_url!r}, plan, Path({str(backup)!r}), log=lambda m: None)
hwm = re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1)
print(time.perf_counter() - t, hwm, json.dumps({{"plan": round(planned, 3), **result["phases"]}}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"supabackup restore failed:\n{done.stderr[-3000:]}")
    seconds, hwm, phases = done.stdout.split(" ", 2)
    return float(seconds), int(hwm), json.loads(phases)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    info = create_database(Path(tempfile.mkdtemp(prefix="supabackup-restore-bench-")))
    work = Path(tempfile.mkdtemp(prefix="supabackup-restore-bench-out-"))
    try:
        print(f"building {args.rows:,} rows ...", flush=True)
        build(info.db_url, args.rows)
        from supabackup_pipeline.core.database_backup import as_manifest, backup_database

        result = backup_database(info.db_url, work / "backup", ["public"], include_users=False, log=lambda m: None)
        manifest = as_manifest(result, ["public"])
        subprocess.run(["pg_dump", "-Fc", "--data-only", *[a for t in TABLES for a in ("-t", t)],
                        "-f", str(work / "dump.fc"), "--dbname", info.db_url], check=True)
        damage(info.db_url)
        theirs = pg_restore(info.db_url, work / "dump.fc")
        damage(info.db_url)
        ours, hwm_kb, phases = supabackup_restore(info.db_url, work / "backup", manifest)
        print(f"rows                                        {args.rows:,}")
        print(f"pg_restore --data-only --single-transaction {theirs:8.2f} s")
        print(f"supabackup restore (incl. post-validation)  {ours:8.2f} s   peak RSS {hwm_kb / 1024:.0f} MB")
        loading = ours - phases["post_validation"] - phases.get("schema_validation", 0)
        print(f"supabackup restore without validations     {loading:8.2f} s   (what pg_restore does: TRUNCATE + load)")
        print(f"  its ratio to pg_restore                   {loading / theirs:8.2f}")
        print(f"supabackup / pg_restore                     {ours / theirs:8.2f}   (target <= 1.0)")
        print("  phases (s): " + ", ".join(f"{k} {v:.2f}" for k, v in phases.items()))
    finally:
        info.cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
