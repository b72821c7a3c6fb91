"""Keep short-lived big buffers from piling up in the heap (glibc only).

glibc serves a block of at least ``M_MMAP_THRESHOLD`` bytes with its own ``mmap`` and gives
it back to the system on ``free``. But the threshold is dynamic: freeing such a block
raises it to that block's size (up to 32 MiB), so the next buffers of that size come from
the heap, or from a worker thread's arena, and stay resident after they are freed.
Compressing a layer allocates and frees buffers of 1 to 32 MiB over and over (zstd's job
buffers, a frame's compressed pieces) on several threads: on the 2 GB bench layer
publishing tar.zst peaked at 425 MiB with the dynamic threshold and at 372 MiB with a
fixed one. Setting the threshold turns the dynamic adjustment off.
"""

from __future__ import annotations

import sys
import threading

#: Blocks from this size up get their own mapping, returned on free (glibc's initial value
#: is 128 KiB; a little more keeps the small pieces of a tar stream in the heap).
MMAP_THRESHOLD = 256 << 10
_M_MMAP_THRESHOLD = -3  # from glibc's malloc.h

_done = False
_lock = threading.Lock()


def return_big_blocks() -> None:
    """Give big freed blocks back to the system from now on (once per process; a no-op
    where the C library is not glibc)."""
    global _done
    with _lock:
        if _done:
            return
        _done = True
        if not sys.platform.startswith("linux"):
            return
        try:
            import ctypes

            libc = ctypes.CDLL("libc.so.6")
            mallopt = libc.mallopt
        except (ImportError, OSError, AttributeError):  # musl, or no ctypes
            return
        mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        mallopt.restype = ctypes.c_int
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
