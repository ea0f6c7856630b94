"""Backup and restore on a realistic Supabase-like project, against the standard tools, in one run.

Builds benchmarks/realistic_project.py's project (24 app tables of ~50 column types, wide
tables, long text, bytea, a partitioned table, GIN/GiST indexes, 100k auth users with identities
and MFA factors) in a throwaway cluster, then times on the same tables (every leaf table of
`public` plus auth.users, identities and mfa_factors), each with the peak RSS of its whole process
tree (sampled every 50 ms from /proc, children such as psql and pg_dump included; see
_process_tree.py):

  backup   raw `COPY (SELECT * FROM t) TO STDOUT (FORMAT binary)` summed over the tables, one
           connection (psycopg) · `pg_dump -Fc --data-only` · supabackup's backup_database
           (database + users) at the default worker count, and at 1 and 2 workers to show scaling
  restore  in place: TRUNCATE + `pg_restore --data-only --single-transaction --disable-triggers` as
           superuser into the schema with its indexes · supabackup's rollback of database + users
           (plan + apply: schema rebuild, load, post-validation) as the non-superuser `postgres`
           into a new project: `pg_restore --single-transaction` of a full `pg_dump -Fc` into an
           empty database · supabackup's restore into `create_project_database` (Supabase schemas,
           nothing of the app)

and prints one table with every target (issue 13) marked ✓/✗, the backup's seconds per table and
per worker, and the restore's phases. Python operations are timed inside their process (imports
left out); pg_dump and pg_restore by wall clock.

    .venv/bin/python benchmarks/realistic_benchmark.py --size small
    .venv/bin/python benchmarks/realistic_benchmark.py --size large --repeat 3
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _process_tree import run_measured  # noqa: E402
from database_benchmark import timed  # noqa: E402
from realistic_project import add_size_options, database_bytes, scale_of, throwaway_project  # noqa: E402

from supabackup_pipeline.core.database_backup import DEFAULT_WORKERS  # noqa: E402
from supabackup_pipeline.dev.stack import StackInfo, create_project_database  # noqa: E402

CHILD = str(Path(__file__).resolve().parent / "_realistic_child.py")
AUTH_TABLES = ("auth.users", "auth.identities", "auth.mfa_factors")
MB = 1 << 20

# (label, our operation, the reference it is divided by, the ratio's upper bound)
RATIO_TARGETS = [
    ("backup / raw COPY", "backup", "raw_copy", 1.3),
    ("backup / pg_dump -Fc --data-only", "backup", "pg_dump", 0.4),
    ("rollback / pg_restore --data-only (in place)", "rollback", "pg_restore", 1.0),
    ("restore / pg_restore full dump (new project)", "new_project", "pg_restore_full", 1.0),
]
RSS_TARGET_MB = 400


def with_dbname(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


def data_tables(db_url: str) -> list[str]:
    """Every leaf table of public (partitions, not their parent) and the auth tables a backup holds."""
    with psycopg.connect(db_url) as db:
        public = [r[0] for r in db.execute(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind = 'r' AND n.nspname = 'public' ORDER BY 1")]
    return public + list(AUTH_TABLES)


def run_child(operation: str, **args) -> tuple[dict, int]:
    """(the operation's JSON result with `at_peak`: MB by program at the tree's peak, peak RSS in bytes)."""
    measured = run_measured([sys.executable, CHILD, operation, json.dumps(args)])
    result = json.loads(measured.stdout.strip().splitlines()[-1])
    result["at_peak"] = {name: round(rss / MB) for name, rss in measured.at_peak.items()}
    return result, measured.peak_rss


def superuser_sql(info: StackInfo, sql: str, dbname: str = "postgres") -> float:
    """Run `sql` as supabase_admin (autocommit); its seconds."""
    with psycopg.connect(with_dbname(info.superuser_url, dbname), autocommit=True) as db:
        return timed(lambda: db.execute(sql))


class Results:
    """Best seconds (and the highest peak RSS) of each measured operation over the repeats."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(lambda: float("inf"))
        self.rss: dict[str, int] = defaultdict(int)
        self.details: dict[str, dict] = {}

    def add(self, name: str, seconds: float, rss: int, details: dict | None = None) -> None:
        if seconds < self.seconds[name] and details is not None:
            self.details[name] = details
        self.seconds[name] = min(self.seconds[name], seconds)
        self.rss[name] = max(self.rss[name], rss)


def measure_backups(info: StackInfo, tables: list[str], work: Path, results: Results) -> Path:
    """Raw COPY, pg_dump and our backup at 1, 2, 4 and the default workers; the default's backup folder."""
    child, rss = run_child("raw_copy", db_url=info.db_url, tables=tables)
    results.add("raw_copy", child["seconds"], rss)
    dumped = run_measured(["pg_dump", "-Fc", "--data-only", *(a for t in tables for a in ("-t", t)),
                           "-f", str(work / "data.dump"), "--dbname", info.db_url])
    results.add("pg_dump", dumped.seconds, dumped.peak_rss)
    for workers in sorted({1, 2, 4, DEFAULT_WORKERS}):
        out = work / f"backup-w{workers}"
        shutil.rmtree(out, ignore_errors=True)
        child, rss = run_child("backup", db_url=info.db_url, out=str(out), workers=workers)
        name = "backup" if workers == DEFAULT_WORKERS else f"backup_w{workers}"
        results.add(name, child["seconds"], rss, child)
        if workers != DEFAULT_WORKERS:
            shutil.rmtree(out, ignore_errors=True)
    return work / f"backup-w{DEFAULT_WORKERS}"


def measure_in_place(info: StackInfo, tables: list[str], work: Path, backup: Path, results: Results) -> None:
    """pg_restore of the data dump into the emptied, indexed tables, then our rollback of the same."""
    truncate = superuser_sql(info, f"TRUNCATE {', '.join(tables)} CASCADE")
    restored = run_measured(["pg_restore", "--data-only", "--single-transaction", "--disable-triggers",
                             "--dbname", info.superuser_url, str(work / "data.dump")])
    results.add("pg_restore", truncate + restored.seconds, restored.peak_rss)
    superuser_sql(info, "VACUUM (FREEZE, ANALYZE)")  # every run reads the same all-visible pages
    child, rss = run_child("restore", db_url=info.db_url, root=str(backup))
    results.add("rollback", child["seconds"], rss, child)
    superuser_sql(info, "VACUUM (FREEZE, ANALYZE)")


def measure_new_project(info: StackInfo, work: Path, backup: Path, results: Results) -> None:
    """A full pg_dump restored into an empty database, then our restore into a new empty project."""
    superuser_sql(info, "CREATE DATABASE bench_empty TEMPLATE template0")
    restored = run_measured(["pg_restore", "--single-transaction", "--dbname",
                             with_dbname(info.superuser_url, "bench_empty"), str(work / "full.dump")])
    results.add("pg_restore_full", restored.seconds, restored.peak_rss)
    superuser_sql(info, "DROP DATABASE bench_empty")
    target = create_project_database(info.superuser_url, "bench_new_project")
    child, rss = run_child("restore", db_url=target, root=str(backup))
    results.add("new_project", child["seconds"], rss, child)
    superuser_sql(info, "DROP DATABASE bench_new_project")


def mark(ok: bool) -> str:
    return "✓" if ok else "✗"


def print_summary(results: Results, repeat: int) -> None:
    """The one table: every operation's seconds and peak RSS, then every target."""
    labels = {
        "raw_copy": "raw COPY binary, 1 connection", "pg_dump": "pg_dump -Fc --data-only",
        "backup": f"supabackup backup, {DEFAULT_WORKERS} workers (default)", "backup_w1": "supabackup backup, 1 worker",
        "backup_w2": "supabackup backup, 2 workers", "backup_w4": "supabackup backup, 4 workers",
        "pg_restore": "pg_restore --data-only (in place)", "rollback": "supabackup rollback db+users (in place)",
        "pg_restore_full": "pg_restore full dump → empty db", "new_project": "supabackup restore → new project",
    }
    print(f"\n{'operation' + (f' (best of {repeat})' if repeat > 1 else ''):44} {'seconds':>8} {'peak RSS (tree)':>16}")
    for name, label in labels.items():
        if name in results.seconds:
            print(f"{label:44} {results.seconds[name]:8.2f} {results.rss[name] / MB:13.0f} MB")
    print(f"\n{'target':48} {'measured':>9}  {'target':>8}")
    for label, ours, theirs, target in RATIO_TARGETS:
        if ours not in results.seconds:
            continue
        ratio = results.seconds[ours] / results.seconds[theirs]
        print(f"{label:48} {ratio:8.2f}×  ≤ {target:5.2f}×  {mark(ratio <= target)}")
    for name in (n for n in ("backup", "rollback", "new_project") if n in results.rss):
        peak = results.rss[name] / MB
        print(f"{labels[name] + ' peak RSS':48} {peak:6.0f} MB  < {RSS_TARGET_MB:3} MB  {mark(peak < RSS_TARGET_MB)}"
              f"   (best run's peak: {results.details[name]['at_peak']} MB)")


def print_backup_split(results: Results, top: int = 12) -> None:
    """Per worker (tables and busy seconds) at each worker count, and the slowest tables."""
    print("\nbackup time per worker (sum of its tables' seconds) and wall time:")
    for name in ("backup_w1", "backup_w2", "backup_w4", "backup"):
        details = results.details.get(name)
        if not details:
            continue
        busy: dict[str, list[float]] = defaultdict(list)
        for t in details["tables"]:
            busy[t["worker"]].append(t["seconds"])
        split = ", ".join(f"{w}: {len(s)} tables {sum(s):.2f} s" for w, s in sorted(busy.items()))
        print(f"  {name:10} wall {details['seconds']:6.2f} s   {split}")
    details = results.details["backup"]
    print(f"\nslowest tables ({DEFAULT_WORKERS} workers): seconds, rows, Parquet MB, rows/s")
    for t in sorted(details["tables"], key=lambda t: -t["seconds"])[:top]:
        rate = t["rows"] / t["seconds"] if t["seconds"] else 0
        print(f"  {t['table']:30} {t['seconds']:6.2f} s {t['rows']:>9,} {t['bytes'] / 1e6:8.1f} MB {rate:>10,.0f}")


def print_restore_phases(results: Results) -> None:
    for name in ("rollback", "new_project"):
        if name in results.details:
            phases = results.details[name]["phases"]
            print(f"{name} phases (s): " + ", ".join(f"{k} {v:.2f}" for k, v in phases.items()))
            print(f"{name} peak RSS of the Python process by step (MB, after the log line): "
                  f"{results.details[name].get('memory_by_step')}")


def measure_all(info: StackInfo, tables: list[str], work: Path, args: argparse.Namespace) -> Results:
    """Every measurement, `--repeat` times, interleaved (so a busy spell hits all tools alike)."""
    subprocess.run(["pg_dump", "-Fc", "-f", str(work / "full.dump"), "--dbname", info.superuser_url], check=True)
    results = Results()
    for round_ in range(max(1, args.repeat)):
        print(f"round {round_ + 1}: backups ...", flush=True)
        backup = measure_backups(info, tables, work, results)
        if not args.skip_restore:
            print(f"round {round_ + 1}: restores ...", flush=True)
            measure_in_place(info, tables, work, backup, results)
            measure_new_project(info, work, backup, results)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_size_options(parser)
    parser.add_argument("--repeat", type=int, default=1, help="runs of every measurement; the best time counts")
    parser.add_argument("--skip-restore", action="store_true", help="measure the backup side only")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="supabackup-realistic-out-"))
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} on {os.cpu_count()} cores;"
          f" building the {args.size if args.scale is None else f'scale {args.scale}'} project ...", flush=True)
    if importlib.util.find_spec("pandas"):  # not in requirements.lock: pyarrow imports it when it is there
        print("note: pandas is installed here; pyarrow imports it on its first conversion of Python objects,"
              " which adds ~40 MB to every process's RSS (a `scripts/setup` install has no pandas)", flush=True)
    started = time.perf_counter()
    try:
        with throwaway_project(scale_of(args), log=lambda m: None) as info:
            tables = data_tables(info.db_url)
            print(f"built in {time.perf_counter() - started:.0f} s: pg_database_size"
                  f" {database_bytes(info.db_url) / 1e6:,.0f} MB, {len(tables)} tables", flush=True)
            results = measure_all(info, tables, work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_summary(results, max(1, args.repeat))
    print_backup_split(results)
    print_restore_phases(results)
    print(f"load average at the end {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}")


if __name__ == "__main__":
    main()
