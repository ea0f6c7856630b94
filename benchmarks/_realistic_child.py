"""The Python-side operations realistic_benchmark.py measures, each run as a process of its own so
that its process tree (psql and pg_dump children included) can be sampled alone.

    python benchmarks/_realistic_child.py OPERATION '<json arguments>'   → one JSON line on stdout

The seconds reported are measured inside, around the operation: the interpreter's start and
imports (pyarrow, psycopg) are left out, as a long-running Dagster worker has them loaded already.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from database_benchmark import raw_copy, timed  # noqa: E402

# supabackup (and with it pyarrow) is imported by the operations that use it, so that the raw
# COPY's process holds psycopg only.

COMPONENTS = ["database", "users"]
MANIFEST = "bench-manifest.json"


def op_raw_copy(args: dict) -> dict:
    return {"seconds": timed(lambda: raw_copy(args["db_url"], args["tables"]))}


def op_backup(args: dict) -> dict:
    """database + users, with each table's seconds and the worker thread that dumped it (the backup
    logs `[k/n] schema.table: ...` from the worker's own thread)."""
    from supabackup_pipeline.core.database_backup import as_manifest, backup_database

    worker_of: dict[str, str] = {}

    def log(message: str) -> None:
        done = re.match(r"\[\d+/\d+\] (\S+): ", message)
        if done:
            worker_of[done.group(1)] = threading.current_thread().name

    out = Path(args["out"])
    started = time.perf_counter()
    result = backup_database(args["db_url"], out, ["public"], include_users=True, workers=args["workers"], log=log)
    seconds = time.perf_counter() - started
    (out / MANIFEST).write_text(json.dumps(as_manifest(result, ["public"])))
    tables = [{"table": d.ref.qualified, "rows": d.rows, "bytes": d.parquet_bytes, "seconds": d.seconds,
               "worker": worker_of.get(d.ref.qualified, "?")} for d in result.tables + result.users]
    return {"seconds": seconds, "tables": tables, "warnings": result.warnings}


class StepMemory:
    """This process's peak RSS (MB) during each step of a run, a step being what its last log line
    named (`restored public.tasks: ...` → `restored public.tasks`): where the memory goes."""

    def __init__(self) -> None:
        self.step = "start"
        self.peaks: dict[str, int] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def log(self, message: str) -> None:
        self.step = message.split(":")[0][:60]

    def _sample(self) -> None:
        while not self._done.wait(0.05):
            rss = int(re.search(r"VmRSS:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) // 1024
            self.peaks[self.step] = max(self.peaks.get(self.step, 0), rss)

    def __enter__(self) -> "StepMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()

    def top(self, n: int = 4) -> dict[str, int]:
        return dict(sorted(self.peaks.items(), key=lambda kv: -kv[1])[:n])


def op_restore(args: dict) -> dict:
    """Plan + apply database and users (the rollback's database step, post-validation included)."""
    from supabackup_pipeline.core.db_restore import apply_database_restore, plan_database_restore
    from supabackup_pipeline.core.snapshot import connect

    root = Path(args["root"])
    manifest = json.loads((root / MANIFEST).read_text())
    started = time.perf_counter()
    with StepMemory() as memory:
        memory.log("plan")
        with connect(args["db_url"]) as conn:
            plan = plan_database_restore(conn, root, manifest, COMPONENTS)
        planned = time.perf_counter() - started
        memory.log("schema prepare")
        result = apply_database_restore(args["db_url"], plan, root, log=memory.log)
    if result.get("schema_differences"):
        raise SystemExit(f"the restored schema differs from the backup: {result['schema_differences'][:3]}")
    return {"seconds": time.perf_counter() - started, "phases": {"plan": round(planned, 3), **result["phases"]},
            "memory_by_step": memory.top()}


OPERATIONS = {"raw_copy": op_raw_copy, "backup": op_backup, "restore": op_restore}

if __name__ == "__main__":
    print(json.dumps(OPERATIONS[sys.argv[1]](json.loads(sys.argv[2]))))
