"""Who holds a staging folder, and whether it is still alive.

`BACKUP_PATH/.staging/<id>.owner.json` (beside the folder, so it is never published) records the
host and PID of the process that holds the run writing `<id>`: the run worker that spawned the
step process (Dagster's multiprocess executor) or the process itself (in-process runs, i.e. the
CLI), with the process's start time so a recycled PID is not taken for the owner. A staging
folder is *stale* when that process is gone: nothing will ever publish or clean it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import multiprocessing
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path

from supabackup_pipeline.core.errors import Refused
from supabackup_pipeline.core.files import write_json

OWNER_SUFFIX = ".owner.json"
UNOWNED_GRACE_S = 600  # a folder without owner file (older versions) is stale after this long


def _process_start(pid: int) -> str | None:
    """The kernel's start time of a process (field 22 of /proc/PID/stat), or None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def owner_record() -> dict:
    """This run's holder: the parent that spawned this step process, else this process."""
    parent = multiprocessing.parent_process()
    pid = parent.pid if parent is not None else os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "started": _process_start(pid), "since": time.time()}


class StagingHeld(Refused):
    """Another run that is still alive writes this backup ID's staging folder."""

    MARK = "is being written by another run"  # in the refusal: what ended the run was not its folder


def claim(owner_file: Path, folder: Path) -> None:
    """Record this run as the holder (the first step of a run writes it; later steps agree). Two
    runs of one backup ID (Materialize clicked twice, a backfill over a running partition) would
    write one folder and publish a mix of both: a folder another live run holds is refused. One a
    dead run left is taken over as it is (a re-execution from failure reuses its finished steps)."""
    me = owner_record()
    with _locked(owner_file.parent):  # read, decide, write as one step: runs and steps claim at once
        try:
            held = json.loads(owner_file.read_text())
        except (OSError, ValueError):
            held = None
        held = held if isinstance(held, dict) else None
        if held is not None and _same_process(held, me):
            return
        if held is not None and owner_alive(owner_file, folder):
            raise StagingHeld(f"backup {folder.name} {StagingHeld.MARK} (pid {held.get('pid')} on"
                              f" {held.get('host')}): one backup ID is made by one run; choose a new ID")
        write_json(owner_file, me)


@contextmanager
def _locked(folder: Path):
    """An exclusive lock on `folder` (flock on the folder itself: no lock file to leave behind),
    released when the holder exits, however it exits. A filesystem that cannot lock a folder (NFS
    emulates flock with write locks) claims unlocked: the two runs must then start within the same
    milliseconds to both hold it."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as e:
            if e.errno not in (errno.EBADF, errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                raise
        yield
    finally:
        os.close(fd)


def _same_process(a: dict, b: dict) -> bool:
    return (a.get("host"), a.get("pid"), a.get("started")) == (b.get("host"), b.get("pid"), b.get("started"))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner_alive(owner_file: Path, folder: Path) -> bool:
    """True while the process holding the folder may still write it (unknown hosts count as alive)."""
    try:
        owner = json.loads(owner_file.read_text())
    except (OSError, ValueError):
        try:
            return time.time() - folder.stat().st_mtime < UNOWNED_GRACE_S
        except OSError:
            return False
    if owner.get("host") != socket.gethostname():
        return True  # another machine's run: we cannot tell, so never touch it
    pid = int(owner.get("pid", 0))
    if not pid or not _pid_alive(pid):
        return False
    started = owner.get("started")
    return started is None or _process_start(pid) == started
