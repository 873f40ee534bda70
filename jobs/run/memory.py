"""Process memory settings for a job that reads large windows on several threads (glibc).

A run parses pages of a few hundred KB on several threads. With glibc's defaults each
thread gets its own malloc arena, and freed page-sized blocks stay in them (the mmap
threshold rises as such blocks are freed), so the process keeps the high-water mark of
every thread at once. Two arenas and a fixed mmap threshold give large blocks back to the
system as soon as a page is done. Elsewhere (musl, macOS) nothing is changed.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3  # glibc <malloc.h>
M_ARENA_MAX = -8
MMAP_THRESHOLD = 128 * 1024  # glibc's starting value, kept fixed
ARENAS = 2


def tune_malloc() -> bool:
    """Apply the settings above; False where the C library has no `mallopt` (not glibc)."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(M_ARENA_MAX, ARENAS)) and bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
