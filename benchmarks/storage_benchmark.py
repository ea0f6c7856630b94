"""Storage mirror benchmark: sequential vs pooled downloads, and an incremental (unchanged) backup.

    .venv/bin/python benchmarks/storage_benchmark.py [--small 2000] [--large 4] [--large-mb 32]

Starts a throw-away local stack (PostgreSQL + the Storage API stand-in, the latter in its own
process so that it does not share our GIL), uploads a bucket of small files and one of large
files, then mirrors them. Each measurement runs in a fresh child process, so its peak RSS is its
own (ru_maxrss only ever grows). Against a hosted project latency is higher, which favours the
pool even more than here; the stand-in on a small machine is CPU-bound.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SMALL_BUCKET, LARGE_BUCKET = "bench-small", "bench-large"


def measure(args: dict) -> dict:
    """One mirror, in this (child) process: time, files/s, MB/s, bytes downloaded, peak RSS."""
    from supabase import create_client

    from supabackup_pipeline.core import storage_mirror as sm

    client = create_client(args["url"], args["key"]).storage
    if args.get("latency_ms"):  # a hosted project is a round trip away; the local stand-in is not
        delay = args["latency_ms"] / 1000
        client.session.event_hooks["request"].append(lambda request: time.sleep(delay))
    if args.get("public_api_only"):  # storage3's download(): whole objects in memory
        real = client

        class Public:
            def __init__(self, api):
                self.list_v2, self.download, self.info = api.list_v2, api.download, api.info

        class Client:
            list_buckets = real.list_buckets

            def from_(self, name):
                return Public(real.from_(name))

        client = Client()
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


def run_child(**args) -> dict:
    out = subprocess.run([sys.executable, __file__, "--measure", json.dumps(args)], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def start_stack(root: Path):
    from supabackup_pipeline.dev.stack import _wait_http, create_database

    info = create_database(root)
    log = open(root / "storage-api.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "supabackup_pipeline.dev.storage_api", "--db-url", info.storage_db_url,
         "--data-dir", str(info.storage_data_dir), "--port", str(info.storage_port), "--jwt-secret", info.jwt_secret],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    _wait_http(info.storage_port, proc)
    return info, proc


def upload(client, small: int, large: int, large_mb: int, scratch: Path) -> None:
    client.create_bucket(SMALL_BUCKET)
    client.create_bucket(LARGE_BUCKET)
    files = client.from_(SMALL_BUCKET)
    payloads = [(f"f{i % 20:02d}/obj-{i:05d}.bin", os.urandom(512 + (i * 37) % 7680)) for i in range(small)]
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda p: files.upload(p[0], p[1], {"content-type": "application/octet-stream"}), payloads))
    for i in range(large):  # from disk, so the upload does not hold them in memory
        path = scratch / f"large-{i}.bin"
        with open(path, "wb") as f:
            for _ in range(large_mb):
                f.write(os.urandom(1 << 20))
        client.from_(LARGE_BUCKET).upload(f"videos/large-{i}.bin", path, {"content-type": "video/mp4"})
        path.unlink()


def row(label: str, r: dict) -> str:
    s = max(r["seconds"], 1e-9)
    return (f"{label:<48} {r['seconds']:7.2f}s {r['objects'] / s:9.0f} files/s {r['bytes'] / 1e6 / s:8.1f} MB/s"
            f"  downloaded {r['downloaded'] / 1e6:8.1f} MB  linked {r['linked']:5d}  peak RSS {r['rss_mb']:6.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=2000, help="small objects (0.5-8 KB)")
    parser.add_argument("--large", type=int, default=4, help="large objects")
    parser.add_argument("--large-mb", type=int, default=32, help="size of each large object, MB")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--latency-ms", type=float, default=0,
                        help="added to every request, as a network round trip (20 is a nearby region)")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(json.loads(args.measure))))
        return

    from supabase import create_client

    from supabackup_pipeline.dev.stack import service_role_key

    root = Path(tempfile.mkdtemp(prefix="supabackup-bench-"))
    info, proc = start_stack(root / "stack")
    try:
        url, key = info.supabase_url, service_role_key(info.jwt_secret)
        t0 = time.monotonic()
        upload(create_client(url, key).storage, args.small, args.large, args.large_mb, root)
        print(f"uploaded {args.small} small + {args.large} x {args.large_mb} MB objects in {time.monotonic() - t0:.1f}s"
              f" (CPUs: {os.cpu_count()})\n")
        common = {"url": url, "key": key, "latency_ms": args.latency_ms}
        if args.latency_ms:
            print(f"every request delayed by {args.latency_ms:g} ms\n")
        out = root / "backups"
        for bucket in (SMALL_BUCKET, LARGE_BUCKET):
            seq = run_child(**common, bucket=bucket, out=str(out / "seq" / "storage"), workers=1)
            pool = run_child(**common, bucket=bucket, out=str(out / "pool" / "storage"), workers=args.workers)
            again = run_child(**common, bucket=bucket, out=str(out / "again" / "storage"), workers=args.workers,
                              previous=str(out / "pool" / "storage"))
            print(row(f"{bucket}: sequential (workers=1)", seq))
            print(row(f"{bucket}: pool (workers={args.workers})", pool))
            if bucket == LARGE_BUCKET:
                whole = run_child(**common, bucket=bucket, out=str(out / "whole" / "storage"), workers=args.workers,
                                  public_api_only=True)
                print(row(f"{bucket}: pool, storage3 download() in memory", whole))
            print(row(f"{bucket}: second backup, unchanged", again))
            print(f"{'':<48} speed-up of the pool: {seq['seconds'] / pool['seconds']:.1f}x\n")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
        info.cluster.destroy()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
