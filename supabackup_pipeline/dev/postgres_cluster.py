"""A throwaway PostgreSQL cluster on a free loopback port, for the local stack and the tests.

PostgreSQL refuses to run as root, so when we are root every server command runs as the
`postgres` OS user (the data folder is handed to it first).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BOOTSTRAP_SUPERUSER = "supabase_admin"  # as on hosted Supabase: `postgres` is NOT a superuser


def find_pg_bin() -> Path:
    """Folder with initdb/pg_ctl: $PG_BIN, then the newest /usr/lib/postgresql/*/bin, then PATH."""
    if os.environ.get("PG_BIN"):
        return Path(os.environ["PG_BIN"])
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    if candidates:
        return Path(candidates[-1])
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found: install PostgreSQL 15 or set PG_BIN")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


@dataclass
class PostgresCluster:
    """One initdb'ed data folder plus a running postmaster listening on 127.0.0.1:port."""

    root: Path
    port: int
    superuser_password: str = "supabase_admin"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "postgres.log"

    def url(self, user: str = BOOTSTRAP_SUPERUSER, password: str | None = None, dbname: str = "postgres") -> str:
        password = self.superuser_password if password is None else password
        return f"postgresql://{user}:{password}@127.0.0.1:{self.port}/{dbname}"

    @classmethod
    def create(cls, root: Path | None = None, port: int | None = None) -> "PostgresCluster":
        root = Path(root or tempfile.mkdtemp(prefix="supabackup-pg-"))
        root.mkdir(parents=True, exist_ok=True)
        cluster = cls(root=root, port=port or free_port())
        cluster._initdb()
        return cluster

    def _run(self, cmd: list[str]) -> subprocess.CompletedProcess:
        done = subprocess.run(_as_server_user(cmd), capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{Path(cmd[0]).name} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
        return done

    def _initdb(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self.root.chmod(0o700)
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.superuser_password + "\n")
        if os.geteuid() == 0:
            shutil.chown(pwfile, "postgres", "postgres")
        self._run([
            str(find_pg_bin() / "initdb"), "-D", str(self.data_dir), "-U", BOOTSTRAP_SUPERUSER,
            f"--pwfile={pwfile}", "--auth-local=scram-sha-256", "--auth-host=scram-sha-256",
            "-E", "UTF8", "--locale=C.UTF-8", "--no-sync",
        ])
        pwfile.unlink()
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# supabackup local stack\n"
                f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.root}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "max_connections = 100\nshared_buffers = 128MB\n"
                "wal_level = logical\n"
            )

    def start(self, timeout: float = 30) -> None:
        self._run([
            str(find_pg_bin() / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file),
            "-w", "-t", str(int(timeout)), "start",
        ])

    def stop(self, mode: str = "fast") -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self._run([str(find_pg_bin() / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop"])

    def restart(self) -> None:
        self.stop()
        self.start()

    def destroy(self) -> None:
        try:
            self.stop(mode="immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"PostgreSQL did not accept connections on port {self.port}; see {self.log_file}")
