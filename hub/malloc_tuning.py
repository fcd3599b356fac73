"""glibc malloc settings for a process that moves bulk bytes in large, short-lived buffers.

Every streamed body passes through the hub as bytes objects of 64 KiB to ~1 MiB (a socket
read, a request body handed to the route, an output chunk), each freed soon after. glibc serves
allocations above its mmap threshold with a fresh ``mmap`` and returns the top of its heap to
the kernel once more than the trim threshold is free there; both thresholds start low (128 KiB,
256 KiB) and only follow the sizes seen so far, so the hub kept taking fresh pages: each first
touch of a page is a page fault (a kernel entry, a zeroed page), 5-6% of the hub's CPU on bulk
and most of what its body joins cost.

``tune()`` raises both once at start: allocations up to ``MMAP_THRESHOLD`` come from the heap
and up to ``TRIM_THRESHOLD`` of free heap is kept for reuse (the hub's resident size may stay
that much higher after a burst, instead of shrinking back at once). No-op outside glibc.
"""

from __future__ import annotations

import logging

M_TRIM_THRESHOLD = -1  # glibc's <malloc.h> parameter numbers
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 4 << 20  # above the largest buffer the hub makes per chunk (taps.MAX_CHUNK, 1 MiB)
TRIM_THRESHOLD = 32 << 20


def tune() -> bool:
    """Set the thresholds (True), or leave malloc as it is (False: not glibc, or it refused)."""
    import ctypes
    import platform

    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    if not done:
        logging.getLogger("hub").warning("glibc refused the hub's malloc thresholds (bulk streams cost more CPU)")
    return done
