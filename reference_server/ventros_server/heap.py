"""Returning the C heap's free memory to the system (glibc's ``malloc_trim``).

glibc keeps memory that was freed inside its heap for later allocations; after a burst of
short-lived objects (opening a store builds and drops hundreds of MB of them at 1M memories)
most of it stays resident although nothing uses it. ``malloc_trim(0)`` hands the free pages
back. On other C libraries (musl, macOS) this is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


def release_free_heap() -> bool:
    """Give glibc's free heap memory back to the system; False where that is not possible."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
