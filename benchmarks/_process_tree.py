"""Wall time and peak RSS of a command together with every process it starts (psql, pg_dump, ...).

`getrusage(RUSAGE_CHILDREN)` reports the largest single process, not a tree whose members run at
the same time, so the tree is sampled instead: every 50 ms, the RSS of the process and all its
descendants (found through /proc/<pid>/task/<tid>/children) is summed, and the highest sum kept.
A peak shorter than the interval can be missed; shared pages (libraries) count once per process;
a child between fork and exec is left out (it would count its parent's pages twice).
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
    at_peak: dict[str, int]  # bytes by program name (psql, python, ...) at that moment


def descendants(pid: int) -> list[tuple[int, int | None]]:
    """(pid, its parent in the tree) for `pid` and every process below it (those alive right now)."""
    found, todo = [], [(pid, None)]
    while todo:
        current, parent = todo.pop()
        found.append((current, parent))
        try:
            for tid in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{tid}/children") as f:
                    todo.extend((int(child), current) for child in f.read().split())
        except OSError:  # exited meanwhile
            continue
    return found


def tree_rss(pid: int) -> dict[str, int]:
    """RSS bytes of the tree's processes, summed by program name. A child that has the name of its
    parent is between fork and exec (psql about to start): it shows the parent's pages as its own,
    so counting it would count the parent twice."""
    names: dict[int, str] = {}
    by_name: dict[str, int] = {}
    for member, parent in descendants(pid):
        try:
            with open(f"/proc/{member}/comm") as f:
                names[member] = f.read().strip()
            with open(f"/proc/{member}/statm") as f:
                rss = int(f.read().split()[1]) * PAGE
        except OSError:
            continue
        if parent is not None and names.get(parent) == names[member]:
            continue
        by_name[names[member]] = by_name.get(names[member], 0) + rss
    return by_name


def run_measured(cmd: list[str], env: dict | None = None) -> Measured:
    """Run `cmd` to its end (raising with its stderr if it fails), sampling its tree's RSS meanwhile."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak: dict[str, int] = {}
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            now = tree_rss(proc.pid)
            if sum(now.values()) > sum(peak.values()):
                peak = now
            done.wait(INTERVAL)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd[:3])} ... failed (exit {proc.returncode}):\n{stderr[-3000:]}")
    return Measured(seconds, sum(peak.values()), stdout, peak)
