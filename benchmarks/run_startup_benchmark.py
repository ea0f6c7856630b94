"""How long a Dagster run of backup_job and of rollback_job takes on a tiny project, with the step
processes started anew (`spawn`, Dagster's default) against forked from a server that imported
the code location once per run (`forkserver`, our STEP_PROCESSES executor).

On a tiny project a run is mostly start-up: this is what a user waits for in the UI beyond the
backup's own work. Runs go through `execute_job` (a run worker's path: each step in a process of
its own), the two start methods interleaved, in a throwaway stack (PostgreSQL cluster and the
Storage stand-in), one child process per round so every round starts cold.

    .venv/bin/python benchmarks/run_startup_benchmark.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from supabackup_pipeline.dev.stack import create_database, create_project_database, start_storage_api  # noqa: E402

# One round in a child process: a backup run, then two rollback runs to it (database and users).
ROUND = r"""
import json, sys, time
import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableRepository
from supabackup_pipeline.partitions import BACKUP_PARTITIONS_NAME

method, key = sys.argv[1], sys.argv[2]
execution = {"execution": {"config": {"multiprocess": {"start_method": {method: {}}}}}}
repository = ReconstructableRepository.for_module("supabackup_pipeline.definitions", "defs")
instance = dg.DagsterInstance.get()
instance.add_dynamic_partitions(BACKUP_PARTITIONS_NAME, [key])
seconds = {}
started = time.perf_counter()
result = dg.execute_job(repository.get_reconstructable_job("backup_job"), instance=instance, run_config=execution,
                        tags={"dagster/partition": key})
assert result.success, "backup_job failed"
seconds["backup"] = time.perf_counter() - started
rollback = {**execution, "ops": {"verify_and_protect": {"config": {
    "confirm": key, "safety_backup": False, "components": ["database", "users"]}}}}
for name in ("rollback", "rollback again"):
    started = time.perf_counter()
    result = dg.execute_job(repository.get_reconstructable_job("rollback_job"), instance=instance,
                            run_config=rollback, tags={"dagster/partition": key})
    assert result.success, "rollback_job failed"
    seconds[name] = time.perf_counter() - started
print(json.dumps(seconds))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds per start method, interleaved (1-60)")
    args = parser.parse_args()
    if not 1 <= args.rounds <= 60:  # a round's backup IDs are minutes of one hour
        parser.error("--rounds must be between 1 and 60")
    root = Path(tempfile.mkdtemp(prefix="supabackup-startup-"))
    info = create_database(root / "stack")
    storage = start_storage_api(info, root / "storage.log")
    try:
        db_url = create_project_database(info.superuser_url, "startup")
        with psycopg.connect(db_url, autocommit=True) as db:
            db.execute("CREATE TABLE public.things (id int PRIMARY KEY, name text);"
                       " INSERT INTO public.things SELECT g, 'thing ' || g FROM generate_series(1, 50) g")
        (root / "home").mkdir()
        (root / "home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        env = {**os.environ, **info.env(), "SUPABASE_DB_URL": db_url, "BACKUP_PATH": str(root / "backups"),
               "DAGSTER_HOME": str(root / "home")}
        times: dict[str, dict[str, list[float]]] = {"spawn": {}, "forkserver": {}}
        for round_ in range(args.rounds):
            for method in times:
                # a backup ID per round and method: minute = round, second 00 (spawn) or 30 (forkserver)
                key = f"20261101T00{round_:02d}{'00' if method == 'spawn' else '30'}Z"
                done = subprocess.run([sys.executable, "-c", ROUND, method, key], env=env, cwd=ROOT,
                                      capture_output=True, text=True)
                if done.returncode:
                    raise SystemExit(f"{method} round {round_} failed:\n{done.stderr[-3000:]}")
                for run, seconds in json.loads(done.stdout.strip().splitlines()[-1]).items():
                    times[method].setdefault(run, []).append(seconds)
        print(f"{'run':16} {'spawn s':>10} {'forkserver s':>13} {'ratio':>7}   (medians of {args.rounds})")
        for run in times["spawn"]:
            spawn, forked = statistics.median(times["spawn"][run]), statistics.median(times["forkserver"][run])
            print(f"{run:16} {spawn:10.2f} {forked:13.2f} {forked / spawn:7.2f}")
    finally:
        storage.terminate()
        storage.wait(timeout=30)
        info.cluster.destroy()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
