"""Storage mirror benchmark: sequential vs pooled downloads, and an incremental (unchanged) backup.

    .venv/bin/python benchmarks/storage_benchmark.py [--small 2000] [--large 4] [--large-mb 32]

Starts a throw-away local stack (PostgreSQL + the Storage API stand-in, the latter in its own
process so that it does not share our GIL), uploads a bucket of small files and one of large
files, then mirrors them. Each measurement runs in a fresh child process, so its peak RSS is its
own (ru_maxrss only ever grows). Against a hosted project latency is higher, which favours the
pool even more than here; the stand-in on a small machine is CPU-bound.
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
    """One mirror, in this (child) process: time, files/s, MB/s, bytes downloaded, peak RSS."""
    from supabackup_pipeline.core import storage_mirror as sm

    client = storage_api(args["url"], args["key"], args.get("latency_ms", 0))
    bucket = next(b for b in sm.list_buckets(client, log=lambda _: None) if b["id"] == args["bucket"])
    out = Path(args["out"])
    previous = Path(args["previous"]) if args.get("previous") else None
    started = time.monotonic()
    result = sm.mirror_bucket(client, bucket, out, previous, workers=args["workers"], log=lambda _: None)
    seconds = time.monotonic() - started
    sm.write_storage_manifest(out, [result])
    return {"seconds": seconds, "objects": len(result.objects), "bytes": result.bytes,
            "downloaded": result.downloaded_bytes, "linked": result.linked,
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def row(label: str, r: dict) -> str:
    s = max(r["seconds"], 1e-9)
    return (f"{label:<48} {r['seconds']:7.2f}s {r['objects'] / s:9.0f} files/s {r['bytes'] / 1e6 / s:8.1f} MB/s"
            f"  downloaded {r['downloaded'] / 1e6:8.1f} MB  linked {r['linked']:5d}  peak RSS {r['rss_mb']:6.0f} MB")


def main() -> None:
    args = make_parser(__doc__).parse_args()
    if args.measure:
        print(json.dumps(measure(json.loads(args.measure))))
        return

    with local_stack("supabackup-bench-") as (root, url, key):
        t0 = time.monotonic()
        upload(storage_client(url, key), args.small, args.large, args.large_mb, root)
        print(f"uploaded {args.small} small + {args.large} x {args.large_mb} MB objects in {time.monotonic() - t0:.1f}s"
              f" (CPUs: {os.cpu_count()})\n")
        common = {"url": url, "key": key, "latency_ms": args.latency_ms}
        if args.latency_ms:
            print(f"every request delayed by {args.latency_ms:g} ms\n")
        out = root / "backups"
        for bucket in (SMALL_BUCKET, LARGE_BUCKET):
            common["bucket"] = bucket
            seq = run_child(__file__, **common, out=str(out / "seq" / "storage"), workers=1)
            pool = run_child(__file__, **common, out=str(out / "pool" / "storage"), workers=args.workers)
            again = run_child(__file__, **common, out=str(out / "again" / "storage"), workers=args.workers,
                              previous=str(out / "pool" / "storage"))
            print(row(f"{bucket}: sequential (workers=1)", seq))
            print(row(f"{bucket}: pool (workers={args.workers})", pool))
            print(row(f"{bucket}: second backup, unchanged", again))
            print(f"{'':<48} speed-up of the pool: {seq['seconds'] / pool['seconds']:.1f}x\n")


if __name__ == "__main__":
    main()
