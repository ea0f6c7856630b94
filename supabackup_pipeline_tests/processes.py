"""Long-running processes in tests (`dagster dev`, `supabackup dev`): started as their own process
group and stopped so that nothing outlives the test, even when the test run itself was started
with SIGINT ignored (`nohup ... &`, CI): children inherit an ignored SIGINT, and `dagster dev`
stops its webserver, daemon and code server with it. So the children get SIGINT back, and
stopping never relies on it: SIGTERM to the whole group, then SIGKILL to whatever is left
(the `tail -F` log followers Dagster's run workers start are in the group too)."""

from __future__ import annotations

import os
import signal
import subprocess
import time


def _default_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def start_group(cmd: list[str], **kwargs) -> subprocess.Popen:
    """Popen in a new session (its own process group) with default SIGINT/SIGTERM handling."""
    return subprocess.Popen(cmd, start_new_session=True, preexec_fn=_default_signals, **kwargs)


def _signal_group(pgid: int, sig: int) -> bool:
    """Send `sig` to the group; False when no process of it is left."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def group_alive(pgid: int) -> bool:
    """True while some process of the group that is not a zombie is left."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def stop_group(proc: subprocess.Popen, grace: float = 10) -> None:
    """SIGTERM the group, wait up to `grace` s for the leader, then SIGKILL every process left in it."""
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    _signal_group(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while group_alive(proc.pid) and time.monotonic() < deadline:
        _signal_group(proc.pid, signal.SIGKILL)
        time.sleep(0.1)
