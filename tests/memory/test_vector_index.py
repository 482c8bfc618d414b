"""VectorIndex: the hnswlib graph is built and caught up without stalling writers."""

from __future__ import annotations

import threading
from typing import Any

import hnswlib
import numpy as np
import pytest
from ventros_server.memory import vectors as vectors_mod
from ventros_server.memory.vectors import VectorIndex

DIM = 16


def unit_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    rows = rng.standard_normal((n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def lock_is_free(lock: Any) -> bool:
    """Whether another thread could take ``lock`` right now (asked from a fresh thread, since
    an RLock is re-entrant for its owner)."""
    answer: list[bool] = []

    def probe() -> None:
        got = lock.acquire(blocking=False)
        if got:
            lock.release()
        answer.append(got)

    prober = threading.Thread(target=probe)
    prober.start()
    prober.join()
    return answer[0]


def test_build_adds_the_bulk_with_the_lock_released_and_catches_up_with_writers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(vectors_mod, "_BUILD_CHUNK", 100)
    monkeypatch.setattr(vectors_mod, "_INSTALL_TAIL", 10)
    rng = np.random.default_rng(3)
    index = VectorIndex(DIM, embedder_name="test", exact_max=10**9)  # no automatic build
    index.add(np.arange(500), unit_rows(rng, 500))
    calls: list[tuple[int, bool]] = []
    late_rows = unit_rows(rng, 150)
    original = hnswlib.Index.add_items

    def recording_add_items(self: Any, data: Any, ids: Any = None, **kwargs: Any) -> Any:
        calls.append((len(data), lock_is_free(index._lock)))
        if len(calls) == 1:  # a writer commits while the graph is being built
            index.add(np.arange(500, 650), late_rows)
        return original(self, data, ids, **kwargs)

    monkeypatch.setattr(hnswlib.Index, "add_items", recording_add_items)
    index.build_hnsw()

    assert index.hnsw_ready
    assert len(calls) >= 6, calls  # 650 vectors in chunks of 100
    assert all(free for size, free in calls if size > 10), calls
    # Every vector, including those written during the build, is in the graph.
    for seq in (0, 499, 500, 649):
        seqs, sims = index.top_k(index.vectors(np.array([seq]))[0], None, 1)
        assert int(seqs[0]) == seq and sims[0] == pytest.approx(1.0, abs=1e-4)


def test_a_saved_graph_far_behind_is_caught_up_in_the_background(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vectors_mod, "_INSTALL_TAIL", 10)
    rng = np.random.default_rng(4)
    rows = unit_rows(rng, 300)
    sidecar = tmp_path / "v.hnsw"
    first = VectorIndex(DIM, embedder_name="test", sidecar=sidecar, exact_max=10**9)
    first.add(np.arange(100), rows[:100])
    first.build_hnsw()
    first.save()

    reopened = VectorIndex(DIM, embedder_name="test", sidecar=sidecar, exact_max=50)
    reopened.add(np.arange(300), rows)  # 200 written after the save (a crash before the next one)
    loaded: list[int] = []
    original = hnswlib.Index.load_index

    def counting_load_index(self: Any, *args: Any, **kwargs: Any) -> Any:
        loaded.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(hnswlib.Index, "load_index", counting_load_index)
    assert not reopened.hnsw_ready  # nothing is loaded until a search needs the graph
    reopened.top_k(rows[0], None, 1)
    assert reopened.wait_for_hnsw(timeout=30)
    assert loaded == [1]  # the saved graph was used, not rebuilt
    seqs, _ = reopened.top_k(rows[250], None, 1)
    assert int(seqs[0]) == 250


def test_the_graph_is_built_only_when_a_search_has_more_candidates_than_the_switch_point() -> None:
    rng = np.random.default_rng(5)
    rows = unit_rows(rng, 200)
    index = VectorIndex(DIM, embedder_name="test", exact_max=100)
    index.add(np.arange(200), rows)
    seqs, _ = index.top_k(rows[7], np.arange(50), 1)  # 50 candidates: exact, no graph
    assert int(seqs[0]) == 7 and not index.building and not index.hnsw_ready
    seqs, _ = index.top_k(rows[150], np.arange(200), 1)  # 200: exact now, graph started
    assert int(seqs[0]) == 150
    assert index.wait_for_hnsw(timeout=30)
    seqs, _ = index.top_k(rows[180], np.arange(200), 1)
    assert int(seqs[0]) == 180
