"""A float32 matrix whose row count grows without copying its rows.

The vector index keeps one row per memory and grows as memories arrive. A numpy array grows
by allocating a larger one and copying: at 1M memories of 384 dimensions that is 1.5 GB
copied with the index's lock held (3.5 s measured on the 2-core machine, stalling every
write and vector search meanwhile) and, for a moment, both copies resident.

Here the rows live in a private anonymous memory mapping, grown in place with ``mremap``
(``mmap.resize``): the pages already written stay where they are, the new ones are zero
pages the kernel provides on first write, so growing costs ~4 ms at 1.5 GB and rows never
written are never resident. ``mmap.resize`` refuses while a numpy view of the mapping is
alive (BufferError), and some systems cannot resize anonymous mappings; then the rows are
copied into a new mapping, as numpy would have done.
"""

from __future__ import annotations

import mmap

import numpy as np

_FLOAT32 = 4


def _anonymous(nbytes: int) -> mmap.mmap:
    flags = getattr(mmap, "MAP_PRIVATE", 0) | getattr(mmap, "MAP_ANONYMOUS", 0)
    # An anonymous mapping cannot be empty; a page is the least the kernel gives anyway.
    size = max(nbytes, mmap.PAGESIZE)
    return mmap.mmap(-1, size, flags=flags) if flags else mmap.mmap(-1, size)


class GrowableMatrix:
    """``array`` is a (rows, dim) float32 view, zero where never written; ``resize`` grows it
    (or shrinks it) keeping the first rows. Hold no view of ``array`` across a resize."""

    def __init__(self, rows: int, dim: int) -> None:
        self.dim = dim
        self.copies = 0  # resizes that had to copy (a view was alive, or no mremap)
        self._map = _anonymous(rows * dim * _FLOAT32)
        self.array = self._view(rows)

    def _view(self, rows: int) -> np.ndarray:
        return np.frombuffer(self._map, dtype=np.float32, count=rows * self.dim).reshape(rows, self.dim)

    def resize(self, rows: int) -> None:
        kept = min(rows, len(self.array))
        nbytes = max(rows * self.dim * _FLOAT32, mmap.PAGESIZE)
        self.array = np.empty((0, self.dim), dtype=np.float32)  # drop our view of the mapping
        try:
            self._map.resize(nbytes)
        except (BufferError, OSError, SystemError, ValueError):
            self._copy_into_new_mapping(nbytes, kept)
        self.array = self._view(rows)

    def _copy_into_new_mapping(self, nbytes: int, kept: int) -> None:
        fresh = _anonymous(nbytes)
        count = kept * self.dim
        target = np.frombuffer(fresh, dtype=np.float32, count=count)
        target[:] = np.frombuffer(self._map, dtype=np.float32, count=count)
        del target
        self._map = fresh  # the old mapping goes when the last view of it does
        self.copies += 1
