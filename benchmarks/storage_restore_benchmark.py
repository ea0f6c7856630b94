"""Storage restore benchmark: sequential vs pooled uploads, peak memory, and a rerun that has nothing to do.

    .venv/bin/python benchmarks/storage_restore_benchmark.py [--small 2000] [--large 4] [--large-mb 32]

Starts a throw-away local stack (benchmarks/_storage_setup.py, shared with storage_benchmark.py),
fills a bucket of small files and one of large files, backs both up with the mirror, then empties
them and restores them from the backup (plan + apply), in a fresh child process per measurement so
that peak RSS is its own. Large objects are uploaded from their backup files by path, streamed:
memory stays flat.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _storage_setup import (  # noqa: E402
    LARGE_BUCKET, SMALL_BUCKET, local_stack, make_parser, run_child, storage_api, storage_client, upload,
)


def measure(args: dict) -> dict:
    """plan + apply of one bucket, in this (child) process."""
    from supabackup_pipeline.core import storage_restore as sr

    client = storage_api(args["url"], args["key"], args.get("latency_ms", 0))
    started = time.monotonic()
    plan = sr.plan_storage_restore(client, Path(args["root"]), [args["bucket"]], workers=args["workers"],
                                   log=lambda _: None)
    planned = time.monotonic()
    result = sr.apply_storage_restore(client, plan, Path(args["root"]), workers=args["workers"], log=lambda _: None)
    done = time.monotonic()
    return {"plan_seconds": planned - started, "apply_seconds": done - planned, "uploads": len(result.uploaded),
            "bytes": result.uploaded_bytes, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def row(label: str, r: dict) -> str:
    s = max(r["apply_seconds"], 1e-9)
    return (f"{label:<44} plan {r['plan_seconds']:6.2f}s  apply {r['apply_seconds']:6.2f}s"
            f" {r['uploads'] / s:7.0f} files/s {r['bytes'] / 1e6 / s:7.1f} MB/s  uploads {r['uploads']:5d}"
            f"  peak RSS {r['rss_mb']:5.0f} MB")


def main() -> None:
    args = make_parser(__doc__).parse_args()
    if args.measure:
        print(json.dumps(measure(json.loads(args.measure))))
        return

    from supabackup_pipeline.core import storage_mirror as sm

    with local_stack("supabackup-restore-bench-") as (root, url, key):
        client = storage_client(url, key)
        upload(client, args.small, args.large, args.large_mb, root)
        backup = root / "backup" / "storage"
        with storage_api(url, key) as api:
            buckets = [b for b in sm.list_buckets(api, log=lambda _: None) if b["id"] in (SMALL_BUCKET, LARGE_BUCKET)]
            sm.write_storage_manifest(backup, [sm.mirror_bucket(api, b, backup, log=lambda _: None) for b in buckets])
        print(f"{args.small} small + {args.large} x {args.large_mb} MB objects backed up (CPUs: {os.cpu_count()})"
              + (f"; every request delayed by {args.latency_ms:g} ms" if args.latency_ms else "") + "\n")
        common = {"url": url, "key": key, "root": str(backup), "latency_ms": args.latency_ms}
        for bucket in (SMALL_BUCKET, LARGE_BUCKET):
            results = []
            for workers in (1, args.workers):
                client.empty_bucket(bucket)
                results.append(run_child(__file__, **common, bucket=bucket, workers=workers))
                print(row(f"{bucket}: emptied, restored (workers={workers})", results[-1]))
            again = run_child(__file__, **common, bucket=bucket, workers=args.workers)
            print(row(f"{bucket}: rerun, nothing to do", again))
            print(f"{'':<44} speed-up of the pool: {results[0]['apply_seconds'] / results[1]['apply_seconds']:.1f}x\n")


if __name__ == "__main__":
    main()
