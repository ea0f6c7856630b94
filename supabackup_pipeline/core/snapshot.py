"""One consistent database snapshot shared by several connections, as `pg_dump -j` does.

A coordinator opens a REPEATABLE READ, READ ONLY transaction and exports its snapshot; each worker
connection imports it with SET TRANSACTION SNAPSHOT, so all of them read the same instant however
long the backup takes. The coordinator also takes ACCESS SHARE locks on the tables to back up,
so a concurrent DROP TABLE waits for the backup instead of breaking it.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import io
import os
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import IO, Iterator

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from supabackup_pipeline.core.errors import DatabaseUnavailable, SupabackupError
from supabackup_pipeline.core.pg_types import SESSION_SETTINGS


@dataclass(frozen=True)
class SnapshotInfo:
    snapshot_id: str
    txid_snapshot: str
    wal_lsn: str | None
    server_version: str
    system_identifier: str | None
    database: str
    taken_at: str

    def to_json(self) -> dict:
        return dict(self.__dict__)


def session_options() -> str:
    """SESSION_SETTINGS as libpq `options` (-c name=value, spaces escaped)."""
    return " ".join("-c {}={}".format(k, v.replace(" ", "\\ ")) for k, v in SESSION_SETTINGS.items())


def connect(db_url: str, **kwargs) -> psycopg.Connection:
    """A connection with the session settings that pin text forms; a clear error if unreachable."""
    options = session_options()
    try:
        return psycopg.connect(
            db_url, options=options, application_name="supabackup", connect_timeout=15, autocommit=True, **kwargs
        )
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"cannot connect to the database (SUPABASE_DB_URL): {_first_line(exc)}") from exc


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def optional_fact(conn: psycopg.Connection, query: str) -> str | None:
    """Server facts that a restricted role may not be allowed to read: None rather than failing."""
    try:
        with conn.transaction():
            row = conn.execute(query).fetchone()
        return None if row is None or row[0] is None else str(row[0])
    except psycopg.Error:
        return None


def client_connection(db_url: str, **extra_env: str) -> tuple[str, dict[str, str]]:
    """(conninfo without the password, environment with PGPASSWORD) for a libpq client program:
    the password never appears on a command line other users can read."""
    params = conninfo_to_dict(db_url)
    password = params.pop("password", None)
    env = {**os.environ, **extra_env}
    if password:
        env["PGPASSWORD"] = str(password)
    return make_conninfo(**params), env


def client_program(name: str) -> str | None:
    """A PostgreSQL client program (psql, pg_dump): $PSQL / $PG_DUMP if set, else from PATH.

    On Debian and Ubuntu, PATH holds a Perl wrapper (pg_wrapper) that runs the newest installed
    client for a remote server; running that client directly saves ~20 ms of Perl start-up per
    call, and a backup makes one call per table.
    """
    override = os.environ.get(name.upper())
    if override:
        return override
    found = shutil.which(name)
    if found and os.path.basename(os.path.realpath(found)) == "pg_wrapper":
        clients = glob.glob(f"/usr/lib/postgresql/*/bin/{name}")
        numbered = [c for c in clients if c.split("/")[4].isdigit()]
        if numbered:
            return max(numbered, key=lambda c: int(c.split("/")[4]))
    return found


# psql writes COPY data through stdio, 4 kB per write(2) into the pipe, and our reader wakes for each.
# `stdbuf -o` (GNU coreutils, where installed) gives psql's stdout a 1 MB buffer: far fewer system
# calls and wake-ups on both sides (database_benchmark.py, 2 cores: ~3-5% off a backup, same peak
# memory).
PSQL_STDOUT_BUFFER = "1M"
# The pipe from a CopySession's psql. (With pyarrow's CSV reader, format 1, a 1 MB pipe let reading
# outpace the conversion and the reader queued ~40 blocks ahead: +90 MB.) The binary reader has no
# read-ahead (a chunk at a time), so a larger pipe costs no memory beyond itself, and saves 15 of
# every 16 reads.
PIPE_BYTES = 1 << 20
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


class Snapshot:
    """An open exported snapshot; `worker()` yields connections that see exactly the same data."""

    def __init__(self, db_url: str, coordinator: psycopg.Connection, info: SnapshotInfo):
        self.db_url = db_url
        self.coordinator = coordinator
        self.info = info

    @contextlib.contextmanager
    def worker(self) -> Iterator[psycopg.Connection]:
        conn = connect(self.db_url)
        try:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            conn.execute(f"SET TRANSACTION SNAPSHOT '{self.info.snapshot_id}'")
            yield conn
        finally:
            conn.close()

    @contextlib.contextmanager
    def copy_session(self) -> Iterator["CopySession"]:
        """One `psql` in this snapshot for many COPYs (a worker's): a process and a connection per
        table cost ~30 ms each (fork, connect, catalog caches), a tenth of a small table's dump."""
        session = CopySession(self.db_url, self.info.snapshot_id)
        try:
            yield session
        finally:
            session.close()

    @contextlib.contextmanager
    def copy_out(self, copy_sql: str) -> Iterator[IO[bytes]]:
        """The bytes of one `COPY ... TO STDOUT (FORMAT binary)` run in this snapshot."""
        with self.copy_session() as session, session.copy_out(copy_sql) as stream:
            yield stream

    def lock_tables(self, tables_sql: list[str], timeout_ms: int = 60_000) -> None:
        """ACCESS SHARE locks (they block only DDL such as DROP/ALTER TABLE) for the whole backup."""
        if not tables_sql:
            return
        self.coordinator.execute(f"SET LOCAL lock_timeout = {int(timeout_ms)}")
        self.coordinator.execute(f"LOCK TABLE {', '.join(tables_sql)} IN ACCESS SHARE MODE")


class CopySession:
    """A `psql` reading commands from a pipe inside a transaction of the snapshot; `copy_out` runs a
    COPY, then has psql echo a random end mark, and hands out the COPY's bytes up to the mark as a
    stream that ends there (`_UntilMark`); psql then waits for the next command.

    psql hands out COPY data in large buffers; psycopg's reader makes one Python call per row,
    which costs more than decoding the rows (issue 4's measurements).
    """

    def __init__(self, db_url: str, snapshot_id: str):
        psql = client_program("psql")
        if not psql:
            raise SupabackupError("psql not found: install the PostgreSQL client (postgresql-client-15)")
        conninfo, env = client_connection(db_url, PGOPTIONS=session_options(), PGAPPNAME="supabackup")
        stdbuf = shutil.which("stdbuf")
        buffered = [stdbuf, "-o", PSQL_STDOUT_BUFFER] if stdbuf else []  # execs psql: same process
        self._errors = tempfile.TemporaryFile()  # a file, not a pipe: psql never blocks on it
        self._proc = subprocess.Popen(
            [*buffered, psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "--dbname", conninfo],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._errors, env=env,
        )
        with contextlib.suppress(OSError):  # a 1 MB pipe: 16× fewer reads (Linux; else the default)
            fcntl.fcntl(self._proc.stdout.fileno(), F_SETPIPE_SZ, PIPE_BYTES)
        self._broken = False
        self._mark = f"--supabackup-copy-end-{uuid.uuid4().hex}--"  # random: no value can hold it
        self._send(f"BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;\nSET TRANSACTION SNAPSHOT '{snapshot_id}';")

    def _send(self, sql: str) -> None:
        try:
            self._proc.stdin.write(sql.encode() + b"\n")
            self._proc.stdin.flush()
        except BrokenPipeError:
            raise self._failure() from None

    def _failure(self) -> SupabackupError:
        self._proc.wait()
        self._errors.seek(0)
        lines = self._errors.read().decode(errors="replace").strip().splitlines()
        # psql prints the server's ERROR line, then the statement with a caret under the fault
        reason = next((line for line in lines if "ERROR:" in line or "FATAL:" in line), lines[-1] if lines else "")
        return SupabackupError(f"COPY failed: {reason.split('ERROR:', 1)[-1].strip() or self._proc.returncode}")

    @contextlib.contextmanager
    def copy_out(self, copy_sql: str) -> Iterator[IO[bytes]]:
        """The bytes of `copy_sql` (a COPY TO STDOUT); a failed COPY raises psql's error."""
        self._send(f"{copy_sql};\n\\echo {self._mark}")
        stream = _UntilMark(self._proc.stdout, f"{self._mark}\n".encode())
        try:
            yield stream
            if stream.read(1) or not stream.marked:  # unread rows, or psql stopped before the mark
                raise ValueError("COPY stream not read to its end")
        except ValueError:  # the stream ended early or made no sense: psql says why if it failed
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass  # psql is fine: the data is what went wrong
            else:
                raise self._failure() from None
            self._broken = True
            raise
        except BaseException:
            self._broken = True  # psql may be halfway through the COPY: close() stops it
            raise

    def close(self) -> None:
        if self._broken and self._proc.poll() is None:
            self._proc.kill()
        if self._proc.poll() is None:
            self._proc.stdin.close()  # end of input: psql ends the read-only transaction and exits
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc.stdout.close()
        self._errors.close()


class _UntilMark(io.RawIOBase):
    """A pipe read up to an end mark, as a stream that ends there (the mark not included). What the
    pipe hands over is kept as views and copied once, when read (350 MB go through a backup)."""

    def __init__(self, pipe: IO[bytes], mark: bytes):
        self._pipe = pipe
        self._mark = mark
        self._ready: list[memoryview] = []
        self._ready_bytes = 0
        self._held = b""  # the last len(mark) bytes: maybe the start of the mark
        self._done = False
        self.marked = False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return b"".join(self._take(size))

    def readinto(self, buffer) -> int:
        """Up to len(buffer) bytes copied straight into buffer (the one copy `read_chunks` makes)."""
        target, got = memoryview(buffer).cast("B"), 0
        for view in self._take(len(target)):
            target[got:got + len(view)] = view
            got += len(view)
        return got

    def _take(self, size: int) -> list[memoryview]:
        """The next `size` bytes (all if negative, fewer at the end) as views of what the pipe handed over."""
        while not self._done and (size < 0 or self._ready_bytes < size):
            self._pull()
        n = self._ready_bytes if size < 0 else min(size, self._ready_bytes)
        taken, got = [], 0
        while got < n:
            view = self._ready[0]
            if got + len(view) <= n:
                taken.append(self._ready.pop(0))
            else:
                taken.append(view[:n - got])
                self._ready[0] = view[n - got:]
            got += len(taken[-1])
        self._ready_bytes -= n
        return taken

    def _pull(self) -> None:
        piece = self._pipe.read1(1 << 20)  # what the pipe has now: psql sends nothing after the mark
        m = len(self._mark)
        if len(piece) > m and not piece.endswith(self._mark):  # the usual case: no copy
            self._add(self._held)
            self._add(memoryview(piece)[:-m])
            self._held = piece[-m:]
            return
        held = self._held + piece
        if not piece or held.endswith(self._mark):
            self.marked = bool(piece)
            self._add(held[:-m] if piece else held)
            self._held, self._done = b"", True
        else:
            self._add(held[:-m])
            self._held = held[-m:]

    def _add(self, data: bytes | memoryview) -> None:
        if len(data):
            self._ready.append(memoryview(data))
            self._ready_bytes += len(data)


@contextlib.contextmanager
def open_snapshot(db_url: str) -> Iterator[Snapshot]:
    coordinator = connect(db_url)
    try:
        server_version = coordinator.execute("SHOW server_version").fetchone()[0]
        system_identifier = optional_fact(coordinator, "SELECT system_identifier FROM pg_control_system()")
        database = coordinator.execute("SELECT current_database()").fetchone()[0]
        coordinator.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        snapshot_id, txid_snapshot, taken_at = coordinator.execute(
            "SELECT pg_export_snapshot(), txid_current_snapshot()::text, now()"
        ).fetchone()
        wal_lsn = optional_fact(coordinator, "SELECT pg_current_wal_lsn()::text")
        info = SnapshotInfo(
            snapshot_id=snapshot_id, txid_snapshot=txid_snapshot, wal_lsn=wal_lsn,
            server_version=server_version, system_identifier=system_identifier, database=database,
            taken_at=taken_at.astimezone(timezone.utc).isoformat(),
        )
        yield Snapshot(db_url, coordinator, info)
    finally:
        coordinator.close()


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat()
