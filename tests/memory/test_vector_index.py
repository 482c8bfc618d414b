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


def test_contact_blocks_give_the_same_scores_as_gathering_as_the_contact_grows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(vectors_mod, "BLOCK_MIN", 8)
    rng = np.random.default_rng(3)
    index = VectorIndex(DIM, embedder_name="t")
    # Two contacts interleaved by seq; contact "a" owns the even seqs; 10 has no vector (a
    # memory stored with auto_embed off), nor has 40 yet.
    index.add(np.array([s for s in range(40) if s != 10]), unit_rows(rng, 39))
    a_seqs = np.arange(0, 42, 2)
    query = unit_rows(rng, 1)[0]

    def check(seqs: np.ndarray) -> None:
        got = index.contact_similarities(query, "a", seqs)
        np.testing.assert_allclose(got, index.similarities(query, seqs), rtol=1e-6, equal_nan=True)

    check(a_seqs)
    assert np.isnan(index.contact_similarities(query, "a", a_seqs)[-1])
    assert np.isnan(index.contact_similarities(query, "a", a_seqs)[5])
    index.add(np.array([40, 44]), unit_rows(rng, 2))  # 40 gains a vector: the block is stale
    check(np.append(a_seqs, 44))  # the block is rebuilt (40 scored) and extended (44)
    assert np.isnan(index.contact_similarities(query, "a", np.append(a_seqs, 44))).sum() == 1
    index.add(np.arange(45, 60), unit_rows(rng, 15))
    check(np.append(a_seqs, [44, 46, 48, 50]))  # extended again, in place


def test_contact_blocks_stay_within_their_byte_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vectors_mod, "BLOCK_MIN", 4)
    rng = np.random.default_rng(4)
    index = VectorIndex(DIM, embedder_name="t")
    index.add(np.arange(0, 400), unit_rows(rng, 400))
    index._blocks._budget = 3 * 100 * DIM * 4  # three contacts of 100 vectors
    query = unit_rows(rng, 1)[0]
    for contact in range(4):
        index.contact_similarities(query, f"c{contact}", np.arange(contact, 400, 4))
    assert list(index._blocks._blocks) == ["c1", "c2", "c3"]  # the least recently used went
    assert index._blocks._bytes <= index._blocks._budget
