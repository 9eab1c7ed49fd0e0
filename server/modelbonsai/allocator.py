"""Keep freed memory in a Bonsai process instead of handing it back to the system after every
batch (Linux with glibc; elsewhere a no-op).

Runs and comparisons allocate and free tensors of tens to hundreds of MB over and over: a CPU
activation comparison holds a batch of the base model's outputs, frees them and allocates as
much again for the next batch. By default glibc returns the freed top of its heap to the system
past a trim threshold of at most 64 MB, and serves blocks above an mmap threshold (128 KB at
first) straight from the system and unmaps them on free, so the next batch faults every page
in again. Measured on the activation benchmark's GPT-2: 20,000 to 230,000 page faults (up to
~0.2 s, differently every run) in a 2-second comparison, and almost none with the thresholds
below. Bonsai's own processes (the `bonsai` command, the language server's worker) call
:func:`keep_freed_memory` once at start; a notebook may call it too.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: blocks up to this size come from the heap (glibc's own ceiling for its dynamic threshold)
MMAP_THRESHOLD = 32 << 20
#: freed memory kept at most: 1 GiB, or an eighth of the RAM when that is less
KEEP_MAX = 1 << 30


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - glibc only (musl has no such thresholds)
        return libc
    except (OSError, AttributeError):
        return None


def _ram() -> int:
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 0


def keep_freed_memory(limit: int | None = None) -> int:
    """Let the process keep up to `limit` bytes of freed heap (default: 1 GiB or an eighth of
    the RAM, the smaller); returns the limit set, 0 where the allocator cannot be told."""
    libc = _glibc()
    if libc is None:
        return 0
    ram = _ram()
    keep = limit if limit is not None else min(KEEP_MAX, ram // 8 if ram else KEEP_MAX)
    keep = max(2 * MMAP_THRESHOLD, min(int(keep), 2**31 - 1))
    # Setting either turns off glibc's own adjustment of both, so both are set.
    ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, keep) == 1
    return keep if ok else 0


def release_freed_memory() -> bool:
    """Hand the heap's free memory back to the system now (glibc's malloc_trim); True if it could
    be asked. For measuring a call by its resident-set growth: memory kept by
    :func:`keep_freed_memory` is already resident, so a call served from it would not show."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
