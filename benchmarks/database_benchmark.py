"""Backup speed against the standard tools, on the same data in the same run.

Builds a database of mixed-type rows in a throwaway local cluster, then times:
  - supabackup's table dump (COPY csv → pyarrow → Parquet, hashed) of all tables,
  - `pg_dump -Fc --data-only` of the same tables,
  - raw `COPY ... TO STDOUT (FORMAT binary)` to /dev/null (what the server can hand out),
and prints the ratios and peak RSS of the backup (measured in a child process).
Targets (issue 4): backup ≤ 0.5 × pg_dump -Fc, ≤ 1.5 × raw COPY, peak RSS < 500 MB.

    .venv/bin/python benchmarks/database_benchmark.py --rows 3000000
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from supabackup_pipeline.dev.stack import create_database

SCHEMA = """
CREATE TABLE public.events (id bigint PRIMARY KEY, user_id uuid, kind text, amount numeric(12,2), score float8,
                            ok boolean, at timestamptz, payload jsonb, tags text[]);
CREATE TABLE public.profiles (id bigint PRIMARY KEY, name text, born date, avatar bytea, visits int);
"""


def build(db_url: str, rows: int) -> None:
    with psycopg.connect(db_url, autocommit=True) as db:
        db.execute(SCHEMA)
        db.execute(f"""
            INSERT INTO public.events SELECT g, md5(g::text)::uuid, 'kind' || (g % 7), (g % 100000) / 100.0,
                   g * 0.001, g % 2 = 0, '2026-01-01'::timestamptz + g * interval '1 second',
                   jsonb_build_object('n', g, 's', md5(g::text)), ARRAY['a', 'b' || (g % 5)]
            FROM generate_series(1, {rows * 3 // 4}) g""")
        db.execute(f"""
            INSERT INTO public.profiles SELECT g, 'user ' || g, '1970-01-01'::date + (g % 20000),
                   decode(md5(g::text), 'hex'), g % 1000
            FROM generate_series(1, {rows // 4}) g""")
        db.execute("VACUUM ANALYZE")


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def raw_copy(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        for table in ("public.events", "public.profiles"):
            with conn.cursor().copy(f"COPY {table} TO STDOUT (FORMAT binary)") as copy:
                for _ in copy:
                    pass


def pg_dump(db_url: str, out: Path) -> None:
    subprocess.run(["pg_dump", "-Fc", "--data-only", "-t", "public.events", "-t", "public.profiles",
                    "-f", str(out), "--dbname", db_url], check=True)


def supabackup_child(db_url: str, out: Path) -> tuple[float, int]:
    """Run the backup in a child process, so its peak RSS is its own."""
    code = (
        "import sys, time, resource; from pathlib import Path;"
        "from supabackup_pipeline.core.database_backup import backup_database;"
        "t = time.perf_counter();"
        f"backup_database({db_url!r}, Path({str(out)!r}), ['public'], include_users=False, log=lambda m: None);"
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    seconds, rss_kb = done.stdout.split()
    return float(seconds), int(rss_kb)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    info = create_database(Path(tempfile.mkdtemp(prefix="supabackup-bench-")))
    work = Path(tempfile.mkdtemp(prefix="supabackup-bench-out-"))
    try:
        print(f"building {args.rows:,} rows ...", flush=True)
        build(info.db_url, args.rows)
        raw = timed(lambda: raw_copy(info.db_url))
        dump = timed(lambda: pg_dump(info.db_url, work / "dump.fc"))
        ours, rss_kb = supabackup_child(info.db_url, work / "backup")
        size = sum(p.stat().st_size for p in (work / "backup").rglob("*") if p.is_file())
        print(f"rows                     {args.rows:,}")
        print(f"raw COPY binary          {raw:8.2f} s")
        print(f"pg_dump -Fc --data-only  {dump:8.2f} s   {(work / 'dump.fc').stat().st_size / 1e6:8.1f} MB")
        print(f"supabackup               {ours:8.2f} s   {size / 1e6:8.1f} MB   peak RSS {rss_kb / 1024:.0f} MB")
        print(f"supabackup / pg_dump -Fc {ours / dump:8.2f}   (target <= 0.5)")
        print(f"supabackup / raw COPY    {ours / raw:8.2f}   (target <= 1.5)")
    finally:
        info.cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
