"""What the two storage benchmarks share: their options, a throw-away local stack with the two
buckets they fill, and running each measurement in a fresh child process.

The Storage API stand-in runs in its own process so that it does not share the benchmark's GIL;
each measurement runs in a child process so that its peak RSS is its own (ru_maxrss only grows).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SMALL_BUCKET, LARGE_BUCKET = "bench-small", "bench-large"


def make_parser(doc: str) -> argparse.ArgumentParser:
    """The options both benchmarks take (sizes, pool, latency) and the hidden --measure of a child."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=2000, help="small objects (0.5-8 KB)")
    parser.add_argument("--large", type=int, default=4, help="large objects")
    parser.add_argument("--large-mb", type=int, default=32, help="size of each large object, MB")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--latency-ms", type=float, default=0,
                        help="added to every request, as a network round trip (20 is a nearby region)")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    return parser


def storage_client(url: str, key: str, latency_ms: float = 0):
    """storage3's client; with latency_ms, every request waits that long first (a hosted project is
    a round trip away, the local stand-in is not)."""
    from supabase import create_client

    client = create_client(url, key).storage
    if latency_ms:
        delay = latency_ms / 1000
        client.session.event_hooks["request"].append(lambda request: time.sleep(delay))
    return client


def storage_api(url: str, key: str, latency_ms: float = 0):
    """The pipeline's Storage API client (core/storage_api.py), with the same optional added latency."""
    from supabackup_pipeline.core.storage_api import StorageApi

    api = StorageApi(url, key)
    if latency_ms:
        delay = latency_ms / 1000
        api.http.event_hooks["request"].append(lambda request: time.sleep(delay))
    return api


def run_child(script: str, **args) -> dict:
    """Run `script --measure ARGS` in a fresh process; its last line of output is the result (JSON)."""
    out = subprocess.run([sys.executable, script, "--measure", json.dumps(args)], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def local_stack(prefix: str) -> Iterator[tuple[Path, str, str]]:
    """A throw-away PostgreSQL + Storage API stand-in: yields (scratch folder, Storage URL, service
    role key); stops both and removes the folder afterwards."""
    from supabackup_pipeline.dev.stack import create_database, service_role_key, start_storage_api

    root = Path(tempfile.mkdtemp(prefix=prefix))
    with contextlib.ExitStack() as cleanup:  # undone in reverse: stop the API, the cluster, remove the folder
        cleanup.callback(shutil.rmtree, root, ignore_errors=True)
        info = create_database(root / "stack")
        cleanup.callback(info.cluster.destroy)
        proc = start_storage_api(info, root / "stack" / "storage-api.log")
        cleanup.callback(_stop, proc)
        yield root, info.supabase_url, service_role_key(info.jwt_secret)


def _stop(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):  # it may have exited on its own
        os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=10)


def upload(client, small: int, large: int, large_mb: int, scratch: Path) -> None:
    """Create SMALL_BUCKET with `small` objects of 0.5-8 KB and LARGE_BUCKET with `large` of `large_mb` MB."""
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
