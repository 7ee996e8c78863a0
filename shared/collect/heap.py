"""glibc malloc tuning for a collecting process: large blocks go back to the system when freed.

glibc serves blocks of 128 KiB and more with mmap and unmaps them on free, but it raises that threshold to
the size of any mapped block that is freed (up to 32 MiB). After the first Graph page body (about 0.7 MB for
1,000 rows) is freed, every later body and its decoded text come from the heap of the thread that reads them,
and each window thread's heap keeps the free space for itself: on a big day, where every window reads full
pages, that is about 10 MB of resident memory holding nothing (benchmark (c), BENCHMARKS.md). Pinning the
threshold at its default keeps those blocks mapped: they cost one mmap and munmap each, a few per page.

Process-wide and idempotent; a no-op where the C library is not glibc (musl, macOS, Windows).
"""
from __future__ import annotations

import ctypes
import logging
import threading

log = logging.getLogger("heap")

M_MMAP_THRESHOLD = -3  # <malloc.h>
MMAP_THRESHOLD = 128 * 1024  # glibc's own starting value

_lock = threading.Lock()
_pinned: bool | None = None


def pin_mmap_threshold() -> bool:
    """Stop glibc from raising its mmap threshold; True if it is pinned (now or by an earlier call)."""
    global _pinned
    with _lock:
        if _pinned is None:
            _pinned = _mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        return _pinned


def _mallopt(param: int, value: int) -> bool:
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # only glibc has it, and only glibc's mallopt is meant here
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    if mallopt(param, value) != 1:
        log.warning("mallopt(%d, %d) was refused; malloc keeps its dynamic mmap threshold", param, value)
        return False
    return True
