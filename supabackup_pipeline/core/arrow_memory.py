"""Arrow's memory pool for the restore: jemalloc, returning freed pages to the system at once.

pyarrow's default pool in these wheels is mimalloc, which keeps the pages of freed batches: loading
the realistic benchmark's widest tables peaked at 344 MB of RSS with it, 195 MB with jemalloc and a
decay time of 0 (measured with only 72 MB ever allocated from Arrow at once). The pool is
process-wide; a restore runs in a process of its own (a Dagster step or the CLI).
"""

from __future__ import annotations

import pyarrow as pa


def use_lean_pool() -> None:
    """Make jemalloc with immediate decay Arrow's default pool (kept as is where jemalloc is not built in)."""
    try:
        pool = pa.jemalloc_memory_pool()
    except NotImplementedError:
        return
    pa.set_memory_pool(pool)
    pa.jemalloc_set_decay_ms(0)
