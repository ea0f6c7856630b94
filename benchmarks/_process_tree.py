"""Wall time and peak RSS of a command together with every process it starts (psql, pg_dump, ...).

`getrusage(RUSAGE_CHILDREN)` reports the largest single process, not a tree whose members run at
the same time, so the tree is sampled instead: every 50 ms, the RSS of the process and all its
descendants (found through /proc/<pid>/task/<tid>/children) is summed, and the highest sum kept.
A peak shorter than the interval can be missed; shared pages (libraries) count once per process.
Linux only.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass

INTERVAL = 0.05
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Measured:
    seconds: float  # wall time of the whole command
    peak_rss: int  # bytes, the highest summed RSS of the process tree seen
    stdout: str


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (those alive right now)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for tid in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{tid}/children") as f:
                    todo.extend(int(child) for child in f.read().split())
        except OSError:  # exited meanwhile
            continue
    return found


def tree_rss(pid: int) -> int:
    total = 0
    for member in descendants(pid):
        try:
            with open(f"/proc/{member}/statm") as f:
                total += int(f.read().split()[1]) * PAGE
        except OSError:
            pass
    return total


def run_measured(cmd: list[str], env: dict | None = None) -> Measured:
    """Run `cmd` to its end (raising with its stderr if it fails), sampling its tree's RSS meanwhile."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], tree_rss(proc.pid))
            done.wait(INTERVAL)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd[:3])} ... failed (exit {proc.returncode}):\n{stderr[-3000:]}")
    return Measured(seconds, peak[0], stdout)
