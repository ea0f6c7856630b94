"""Backup speed against the standard tools, on the same data in the same run, and memory as tables grow.

Builds a database of mixed-type rows in a throwaway local cluster, then at each size times:
  - supabackup's table dump (COPY csv → pyarrow → Parquet, hashed) of all tables,
  - `pg_dump -Fc --data-only` of the same tables,
  - raw `COPY ... TO STDOUT (FORMAT binary)` read by psycopg (what the server can hand out),
  - plain `COPY <table> TO STDOUT (FORMAT csv)` through psql to /dev/null (the server's and psql's
    share of our own data path, without our expressions or any client work; for reference),
and prints the ratios and the backup's peak RSS (measured in a child process). The tables are then
grown in place to the next size (default: --rows, then 4 × --rows) and everything is measured again,
so one run shows whether the ratios hold and peak memory stays flat as tables grow.
Targets (issue 4): backup ≤ 0.5 × pg_dump -Fc, ≤ 1.5 × raw COPY, peak RSS < 500 MB and flat.

    .venv/bin/python benchmarks/database_benchmark.py                   # 1M rows, then 4M
    .venv/bin/python benchmarks/database_benchmark.py --rows 3000000 --sizes 3000000
    .venv/bin/python benchmarks/database_benchmark.py --repeat 3         # on a busy machine
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from supabackup_pipeline.dev.stack import create_database

TABLES = ("public.events", "public.profiles")

SCHEMA = """
CREATE TABLE public.events (id bigint PRIMARY KEY, user_id uuid, kind text, amount numeric(12,2), score float8,
                            ok boolean, at timestamptz, payload jsonb, tags text[]);
CREATE TABLE public.profiles (id bigint PRIMARY KEY, name text, born date, avatar bytea, visits int);
"""


def build(db_url: str, rows: int, start: int = 0) -> None:
    """Rows [start, rows) of the mix: 3/4 events, 1/4 profiles (so the tables can be grown in place)."""
    with psycopg.connect(db_url, autocommit=True) as db:
        if start == 0:
            db.execute(SCHEMA)
        db.execute(f"""
            INSERT INTO public.events SELECT g, md5(g::text)::uuid, 'kind' || (g % 7), (g % 100000) / 100.0,
                   g * 0.001, g % 2 = 0, '2026-01-01'::timestamptz + g * interval '1 second',
                   jsonb_build_object('n', g, 's', md5(g::text)), ARRAY['a', 'b' || (g % 5)]
            FROM generate_series({start * 3 // 4 + 1}, {rows * 3 // 4}) g""")
        db.execute(f"""
            INSERT INTO public.profiles SELECT g, 'user ' || g, '1970-01-01'::date + (g % 20000),
                   decode(md5(g::text), 'hex'), g % 1000
            FROM generate_series({start // 4 + 1}, {rows // 4}) g""")
        db.execute("VACUUM ANALYZE")


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def raw_copy(db_url: str, tables: tuple[str, ...] | list[str] = TABLES) -> None:
    """Every table's rows as the server hands them out, on one connection (the floor a dump can reach)."""
    with psycopg.connect(db_url) as conn:
        for table in tables:
            with conn.cursor().copy(f"COPY {table} TO STDOUT (FORMAT binary)") as copy:
                for _ in copy:
                    pass


def psql_copy_csv(db_url: str) -> None:
    params = conninfo_to_dict(db_url)
    env = {**os.environ, "PGPASSWORD": str(params.pop("password", ""))}
    for table in TABLES:
        subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "--dbname", make_conninfo(**params),
                        "-c", f"COPY {table} TO STDOUT (FORMAT csv)"],
                       stdout=subprocess.DEVNULL, check=True, env=env)


def pg_dump(db_url: str, out: Path) -> None:
    subprocess.run(["pg_dump", "-Fc", "--data-only", *(a for t in TABLES for a in ("-t", t)),
                    "-f", str(out), "--dbname", db_url], check=True)


def supabackup_child(db_url: str, out: Path) -> tuple[float, int, int]:
    """Run the backup in a child process, so its peak RSS is its own: (seconds, peak RSS kB,
    RSS kB after imports, before the backup started)."""
    code = (
        "import sys, time, resource; from pathlib import Path;"
        "from supabackup_pipeline.core.database_backup import backup_database;"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss;"
        "t = time.perf_counter();"
        f"backup_database({db_url!r}, Path({str(out)!r}), ['public'], include_users=False, log=lambda m: None);"
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, base)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"the backup failed:\n{done.stderr[-3000:]}")
    seconds, rss_kb, base_kb = done.stdout.split()
    return float(seconds), int(rss_kb), int(base_kb)


def measure(db_url: str, work: Path, rows: int, repeat: int) -> dict:
    """Each tool `repeat` times, interleaved; the best time of each (and the highest peak RSS)."""
    raw = csv = dump = ours = float("inf")
    rss_kb = base_kb = 0
    for _ in range(repeat):
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        raw = min(raw, timed(lambda: raw_copy(db_url)))
        csv = min(csv, timed(lambda: psql_copy_csv(db_url)))
        dump = min(dump, timed(lambda: pg_dump(db_url, work / "dump.fc")))
        seconds, peak, base = supabackup_child(db_url, work / "backup")
        ours, rss_kb, base_kb = min(ours, seconds), max(rss_kb, peak), max(base_kb, base)
    size = sum(p.stat().st_size for p in (work / "backup").rglob("*") if p.is_file())
    print(f"rows                     {rows:,}" + (f"   (best of {repeat})" if repeat > 1 else ""))
    print(f"raw COPY binary          {raw:8.2f} s")
    print(f"psql COPY csv, plain     {csv:8.2f} s   (reference: the server's and psql's part of our path)")
    print(f"pg_dump -Fc --data-only  {dump:8.2f} s   {(work / 'dump.fc').stat().st_size / 1e6:8.1f} MB")
    print(f"supabackup               {ours:8.2f} s   {size / 1e6:8.1f} MB   peak RSS {rss_kb / 1024:.0f} MB"
          f" ({base_kb / 1024:.0f} MB after imports)")
    print(f"supabackup / pg_dump -Fc {ours / dump:8.2f}   (target <= 0.5)")
    print(f"supabackup / raw COPY    {ours / raw:8.2f}   (target <= 1.5)", flush=True)
    return {"rows": rows, "seconds": ours, "rss_kb": rss_kb}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the first size")
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=None,
                        help="comma-separated row counts, ascending (default: ROWS,4*ROWS)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each tool per size; the best counts")
    args = parser.parse_args()
    sizes = args.sizes or [args.rows, 4 * args.rows]
    if sizes != sorted(sizes):
        parser.error("--sizes must be ascending (the tables grow in place)")
    root = Path(tempfile.mkdtemp(prefix="supabackup-bench-"))
    info = create_database(root)
    work = Path(tempfile.mkdtemp(prefix="supabackup-bench-out-")) / "run"
    results, built = [], 0
    try:
        for rows in sizes:
            print(f"{'building' if not built else 'growing to'} {rows:,} rows ...", flush=True)
            build(info.db_url, rows, start=built)
            built = rows
            results.append(measure(info.db_url, work, rows, max(1, args.repeat)))
        if len(results) > 1:
            first, last = results[0], results[-1]
            print("peak RSS as tables grow  " + "   ".join(
                f"{r['rows']:,} rows: {r['rss_kb'] / 1024:.0f} MB" for r in results))
            print(f"peak RSS {last['rows'] / first['rows']:.0f}x rows      {last['rss_kb'] / first['rss_kb']:8.2f}x"
                  f"   (target: flat, < 500 MB)")
            print("seconds per million rows " + "   ".join(
                f"{r['rows']:,} rows: {r['seconds'] / r['rows'] * 1e6:.2f} s" for r in results))
    finally:
        info.cluster.destroy()
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(work.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
