"""How a backup's and a restore's processes allocate memory (core/process_memory.py)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import numpy as np
import pytest

from supabackup_pipeline.core.process_memory import freed_memory_kept


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="tunes glibc's malloc only")
def test_a_backup_reuses_freed_memory_and_hands_it_back_when_done():
    """During a backup a freed 24 MB buffer stays in the process for the next chunk (no new pages
    to fault in); after it, a rollback that restores in the same process gets that memory back."""
    with freed_memory_kept():
        buffer = np.ones(24 << 20, np.uint8)
        held = _rss_mb()
        del buffer
        kept = _rss_mb()
    after = _rss_mb()
    assert kept > held - 4
    assert after < kept - 20


# Run in a process of its own: mallopt settings last for the whole process, and the test above
# fixes glibc's thresholds for the rest of the session.
_RESTORE_ALLOCATIONS = """
import os
import numpy as np
from supabackup_pipeline.core.process_memory import hand_freed_memory_back
def rss_mb():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
hand_freed_memory_back()
before = rss_mb()
for _ in range(3):  # as a restore encodes batch after batch: large temporaries, freed each time
    buffer = np.ones(16 << 20, np.uint8)
    del buffer
print(rss_mb() - before)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="tunes glibc's malloc only")
def test_a_restore_hands_freed_large_blocks_back_at_once():
    """A restore's peak stays flat in table size: a freed 16 MB temporary leaves the process, where
    glibc by default would raise its mmap threshold after the first and keep the next ones."""
    grown = subprocess.run([sys.executable, "-c", _RESTORE_ALLOCATIONS], capture_output=True, text=True, check=True)
    assert float(grown.stdout) < 4, f"RSS grew by {float(grown.stdout):.1f} MB after the temporaries were freed"
