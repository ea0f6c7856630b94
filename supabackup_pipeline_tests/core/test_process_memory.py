"""How a backup's process allocates memory (core/process_memory.py)."""

from __future__ import annotations

import os
import platform

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
