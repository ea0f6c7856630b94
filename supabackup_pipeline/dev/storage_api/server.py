"""Running the stand-in: in a background thread (tests) or in the foreground (`supabackup stack up`)."""

from __future__ import annotations

import argparse
import socket
import threading
import time
from pathlib import Path

import uvicorn

from supabackup_pipeline.dev.postgres_cluster import free_port
from supabackup_pipeline.dev.storage_api.app import create_app
from supabackup_pipeline.dev.storage_api.faults import Faults


class StorageServer:
    """uvicorn serving `create_app(...)` in a daemon thread; `faults` are the app's test hooks."""

    def __init__(self, db_url: str, data_dir: Path, jwt_secret: str, port: int | None = None,
                 host: str = "127.0.0.1"):
        self.host, self.port = host, port or free_port()
        self.faults = Faults()
        self.app = create_app(db_url, Path(data_dir), jwt_secret, self.faults)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30) -> None:
        """Returns once the server accepts connections."""
        config = uvicorn.Config(self.app, host=self.host, port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="storage-api-standin", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the Storage API stand-in did not start on {self.url}")
            time.sleep(0.02)
        with socket.create_connection((self.host, self.port), timeout=5):
            pass

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None


def main() -> None:
    parser = argparse.ArgumentParser(description="Local stand-in of the Supabase Storage API (under /storage/v1).")
    parser.add_argument("--db-url", required=True, help="PostgreSQL URL (role supabase_storage_admin)")
    parser.add_argument("--data-dir", required=True, type=Path, help="folder for the object bytes")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--jwt-secret", required=True, help="HS256 secret the API keys are signed with")
    args = parser.parse_args()
    uvicorn.run(create_app(args.db_url, args.data_dir, args.jwt_secret), host=args.host, port=args.port,
                log_level="info")


if __name__ == "__main__":
    main()
