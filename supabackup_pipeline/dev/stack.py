"""The local Supabase-like stack: PostgreSQL with Supabase's roles and schemas, plus the Storage API stand-in.

Used by `supabackup stack ...`, `supabackup dev`, the demo and the tests. The pipeline itself only
ever sees the environment this module prints (SUPABASE_URL, SUPABASE_SERVICE_ROLE_KEY,
SUPABASE_DB_URL), exactly as for a hosted project.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import jwt
import psycopg

from supabackup_pipeline.dev.postgres_cluster import PostgresCluster, free_port

STACK_HOME_ENV = "SUPABACKUP_STACK_HOME"


def default_stack_home() -> Path:
    return Path(os.environ.get(STACK_HOME_ENV) or Path.home() / ".supabackup" / "stack")


def service_role_key(jwt_secret: str) -> str:
    """A Supabase-style service role JWT (HS256 with the project's secret)."""
    now = int(time.time())
    claims = {"iss": "supabase-local", "role": "service_role", "iat": now, "exp": now + 10 * 365 * 86400}
    return jwt.encode(claims, jwt_secret, algorithm="HS256")


def _sql(name: str) -> str:
    return resources.files("supabackup_pipeline.dev").joinpath(name).read_text()


def install_supabase_roles(superuser_url: str) -> None:
    with psycopg.connect(superuser_url, autocommit=True) as conn:
        conn.execute(_sql("supabase_roles.sql"))
        conn.execute("ALTER DATABASE postgres OWNER TO postgres")


def install_supabase_schema(superuser_url: str) -> None:
    with psycopg.connect(superuser_url, autocommit=True) as conn:
        conn.execute(_sql("supabase_schema.sql"))


def create_project_database(superuser_url: str, name: str) -> str:
    """A further, empty Supabase-like database in the same cluster; returns its `postgres` URL.

    Tests use one per module so that "back up every table of public" sees only their tables.
    """
    if not name.isidentifier():
        raise ValueError(f"database name {name!r} must be a plain identifier")
    with psycopg.connect(superuser_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} OWNER postgres")
    install_supabase_schema(superuser_url.rsplit("/", 1)[0] + "/" + name)
    return superuser_url.rsplit("/", 1)[0].replace("supabase_admin:supabase_admin", "postgres:postgres") + "/" + name


@dataclass
class StackInfo:
    """Everything needed to talk to (or stop) a running stack; saved as JSON in the stack home."""

    root: str
    pg_root: str
    pg_port: int
    storage_port: int
    jwt_secret: str
    storage_pid: int | None = None

    @property
    def db_url(self) -> str:
        return f"postgresql://postgres:postgres@127.0.0.1:{self.pg_port}/postgres"

    @property
    def superuser_url(self) -> str:
        return f"postgresql://supabase_admin:supabase_admin@127.0.0.1:{self.pg_port}/postgres"

    @property
    def storage_db_url(self) -> str:
        """The Storage API connects as its own role, as storage-api does on a hosted project."""
        return f"postgresql://supabase_storage_admin:supabase_storage_admin@127.0.0.1:{self.pg_port}/postgres"

    @property
    def supabase_url(self) -> str:
        return f"http://127.0.0.1:{self.storage_port}"

    def env(self) -> dict[str, str]:
        return {
            "SUPABASE_URL": self.supabase_url,
            "SUPABASE_SERVICE_ROLE_KEY": service_role_key(self.jwt_secret),
            "SUPABASE_DB_URL": self.db_url,
        }

    @property
    def cluster(self) -> PostgresCluster:
        return PostgresCluster(root=Path(self.pg_root), port=self.pg_port)

    @property
    def storage_data_dir(self) -> Path:
        return Path(self.root) / "storage-data"


def create_database(root: Path) -> StackInfo:
    """initdb + start + Supabase schema. The Storage API is started by the caller (thread or process)."""
    root.mkdir(parents=True, exist_ok=True)
    # The data folder lives in a fresh /tmp folder: when we are root, the `postgres` user
    # that runs the server cannot reach into root's home.
    cluster = PostgresCluster.create()
    cluster.start()
    install_supabase_roles(cluster.url())
    install_supabase_schema(cluster.url())
    info = StackInfo(root=str(root), pg_root=str(cluster.root), pg_port=cluster.port, storage_port=free_port(), jwt_secret=secrets.token_urlsafe(32))
    info.storage_data_dir.mkdir(parents=True, exist_ok=True)
    return info


def _state_file(home: Path) -> Path:
    return home / "stack.json"


def backup_path(given: str | None = None, home: Path | None = None) -> str:
    """The BACKUP_PATH of the stack's UI and demo: `given`, else the one remembered when the stack was
    last used, else ./backups here; remembered in the stack's home so `stack env` prints it anywhere."""
    remembered = (home or default_stack_home()) / "backup_path"
    if given:
        path = str(Path(given).expanduser().resolve())
    elif remembered.is_file():
        path = remembered.read_text().strip()
    else:
        path = str(Path("backups").resolve())
    remembered.parent.mkdir(parents=True, exist_ok=True)
    remembered.write_text(path + "\n")
    return path


def load_running(home: Path | None = None) -> StackInfo | None:
    state = _state_file(home or default_stack_home())
    if not state.exists():
        return None
    return StackInfo(**json.loads(state.read_text()))


def up(home: Path | None = None) -> StackInfo:
    """Start the stack in the background (idempotent: a running stack is returned as is)."""
    home = home or default_stack_home()
    running = load_running(home)
    if running is not None:
        return running
    info = create_database(home / "run")
    proc = start_storage_api(info, home / "storage-api.log")
    info.storage_pid = proc.pid
    state = _state_file(home)
    state.write_text(json.dumps(asdict(info)))
    state.chmod(0o600)
    return info


def start_storage_api(info: StackInfo, log_path: Path) -> subprocess.Popen:
    """Start the Storage API stand-in for `info` in the background; returns once it listens.

    Options are passed as `--name=value`: a secret may start with `-`, which argparse would
    otherwise read as an option.
    """
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "supabackup_pipeline.dev.storage_api",
             f"--db-url={info.storage_db_url}", f"--data-dir={info.storage_data_dir}",
             f"--port={info.storage_port}", f"--jwt-secret={info.jwt_secret}"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    _wait_http(info.storage_port, proc, log_path)
    return proc


def _wait_http(port: int, proc: subprocess.Popen, log_path: Path, timeout: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
            raise RuntimeError(f"the Storage API stand-in exited with code {proc.returncode}: {' | '.join(tail)}"
                               f" (log: {log_path})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"the Storage API stand-in did not listen on port {port} within {timeout}s (log: {log_path})")


def down(home: Path | None = None) -> bool:
    """Stop the stack and delete its data. Returns False when no stack was running."""
    home = home or default_stack_home()
    info = load_running(home)
    if info is None:
        return False
    if info.storage_pid:
        try:
            os.killpg(info.storage_pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    import shutil

    info.cluster.destroy()
    shutil.rmtree(info.root, ignore_errors=True)
    _state_file(home).unlink(missing_ok=True)
    return True


def shell_exports(env: dict[str, str]) -> str:
    import shlex

    return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in env.items())
