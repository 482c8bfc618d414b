"""GrowableMatrix: rows kept across resizes, new rows zero, no copy while no view is alive,
a copy (not a crash) when one is, and rows never written not resident."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from ventros_server.memory.growable import GrowableMatrix
from ventros_server.memory.vectors import VectorIndex


def _filled(rows: int, dim: int = 8) -> GrowableMatrix:
    matrix = GrowableMatrix(rows, dim)
    matrix.array[:] = np.arange(rows * dim, dtype=np.float32).reshape(rows, dim)
    return matrix


def test_grows_in_place_keeping_rows_and_zeroing_new_ones() -> None:
    matrix = _filled(1_000)
    before = matrix.array.copy()
    matrix.resize(5_000)
    assert matrix.array.shape == (5_000, 8)
    np.testing.assert_array_equal(matrix.array[:1_000], before)
    assert not matrix.array[1_000:].any()
    matrix.array[4_999] = 7.0  # the new rows are writable
    if sys.platform.startswith("linux"):
        assert matrix.copies == 0  # mremap: no row was copied


def test_shrinks_keeping_the_first_rows() -> None:
    matrix = _filled(1_000)
    before = matrix.array[:10].copy()
    matrix.resize(10)
    np.testing.assert_array_equal(matrix.array, before)


def test_a_live_view_makes_it_copy_and_stay_valid() -> None:
    matrix = _filled(100)
    view = matrix.array[:50]  # someone still holds a view of the mapping
    expected = view.copy()
    matrix.resize(10_000)
    assert matrix.copies == 1
    np.testing.assert_array_equal(view, expected)  # still readable: the old mapping lives on
    np.testing.assert_array_equal(matrix.array[:50], expected)
    assert not matrix.array[100:].any()


def test_empty_matrix_grows() -> None:
    matrix = GrowableMatrix(0, 4)
    assert matrix.array.shape == (0, 4)
    matrix.resize(3)
    assert matrix.array.shape == (3, 4) and not matrix.array.any()


def _rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_rows_never_written_are_not_resident() -> None:
    matrix = GrowableMatrix(1_000, 384)
    before = _rss_bytes()
    matrix.resize(300_000)  # 460 MB of address space
    assert _rss_bytes() - before < 50 * 1024 * 1024
    matrix.array[-1] = 1.0
    assert _rss_bytes() - before < 50 * 1024 * 1024


def test_vector_index_grows_its_matrix_in_place() -> None:
    index = VectorIndex(8, embedder_name="test")
    for start in range(0, 20_000, 1_000):
        index.add(np.arange(start, start + 1_000), np.full((1_000, 8), start, dtype=np.float32))
    assert len(index._present) >= 20_000  # grown many times from 1,024 rows
    np.testing.assert_array_equal(index.vectors(np.array([0, 999, 19_999]))[:, 0], [0, 0, 19_000])
    if sys.platform.startswith("linux"):
        assert index._rows.copies == 0  # every growth in place: the index held no view across it
