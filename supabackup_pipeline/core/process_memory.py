"""How the process allocates memory: tuned once per backup or restore, which each run in a process
of their own (a Dagster step or the CLI).

- The restore makes Arrow's pool jemalloc, returning freed pages to the system at once. pyarrow's
  default pool in these wheels is mimalloc, which keeps the pages of freed batches: loading the
  realistic benchmark's widest tables peaked at 344 MB of RSS with it, 195 MB with jemalloc and a
  decay time of 0 (measured with only 72 MB ever allocated from Arrow at once).
- The restore also has glibc map every block of 4 MB or more on its own and unmap it when freed.
  By default glibc raises that threshold to the size of each large block freed (up to 32 MB), and
  from then on serves such blocks (numpy's temporaries while a batch is encoded) from heaps it
  keeps: the realistic benchmark's rollback peaked at 385-392 MB at 2 GB against ~340 MB at
  0.5 GB; with the fixed threshold 345-356 MB at 2 GB, in the same time.
- The backup keeps glibc's freed memory for reuse instead. Each 4 MB chunk of COPY data and the
  numpy arrays decoded from it are allocated and freed again, chunk after chunk; glibc hands such
  sizes to the system and back (mmap, trim), and every page is faulted in and zeroed anew: ~0.1
  of the 2 CPU-seconds of Python in a backup of the realistic benchmark. Peak memory stays what it
  was: the same sizes are reused, not added up.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
from typing import Iterator

import pyarrow as pa

# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
RESTORE_MMAP_THRESHOLD = 4 << 20  # fixed: glibc no longer raises it as large blocks are freed


def hand_freed_memory_back() -> None:
    """Hand freed memory back at once: Arrow's default pool jemalloc with immediate decay (kept as is
    where jemalloc is not built in), and glibc's blocks of 4 MB or more mapped on their own."""
    libc = _glibc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, RESTORE_MMAP_THRESHOLD)
    try:
        pool = pa.jemalloc_memory_pool()
    except NotImplementedError:
        return
    pa.set_memory_pool(pool)
    pa.jemalloc_set_decay_ms(0)


@contextlib.contextmanager
def freed_memory_kept() -> Iterator[None]:
    """glibc: while the block runs, serve allocations up to 32 MB from the heap and keep up to 256 MB
    of freed heap for reuse, instead of mapping and unmapping them each time; after it, hand what is
    free back to the system (a CLI rollback restores in the process its safety backup ran in).
    Other allocators are left as they are."""
    libc = _glibc()
    if libc is not None:
        for param, value in ((_M_MMAP_THRESHOLD, 32 << 20), (_M_TRIM_THRESHOLD, 256 << 20), (_M_TOP_PAD, 16 << 20)):
            libc.mallopt(param, value)
    try:
        yield
    finally:
        if libc is not None:
            libc.mallopt(_M_TRIM_THRESHOLD, 128 << 10)  # glibc's default
            libc.malloc_trim(0)


def _glibc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    except (OSError, AttributeError):  # not glibc (macOS: no mallopt; musl: no malloc_trim)
        return None
    return libc
