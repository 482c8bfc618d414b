"""Opening a store leaves no cache of what the loaders read (the searches use the in-memory
indexes), loads or computes every vector whatever the chunking, and keeps DuckDB's memory_limit.

Most stores here keep their vectors in the file (StoredOfflineEmbedder): that makes tables
large enough for DuckDB's cache to matter."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from ventros_server.heap import release_free_heap
from ventros_server.memory import duckdb_store, load_demo, open_store
from ventros_server.memory.memory_rows import MemoryRows
from ventros_server.memory.store import NewMemory, SearchMode, SearchQuery

from .conftest import StoredOfflineEmbedder

MiB = 1024 * 1024


def _cached_table_bytes(store: duckdb_store.DuckDBStore) -> int:
    row = store._con.execute(
        "SELECT coalesce(sum(memory_usage_bytes), 0) FROM duckdb_memory() WHERE tag = 'BASE_TABLE'"
    ).fetchone()
    return int(row[0]) if row else 0


@pytest.fixture
def filled(tmp_path: Path) -> tuple[Path, list[str], int]:
    path = tmp_path / "m.duckdb"
    contact = str(uuid.uuid4())
    with open_store(str(path), embedder=StoredOfflineEmbedder()) as store:
        load_demo(store)
        records = [
            NewMemory(contact_id=contact, content=f"order {i} delivered late", memory_type="conversation")
            for i in range(3_000)
        ]
        store.add_memories(records)
        store._con.execute("CHECKPOINT")
        # Reading every vector fills DuckDB's cache the way opening does.
        store._con.execute("SELECT embedding FROM memories").fetchall()
        cached = _cached_table_bytes(store)
        assert cached >= 2 * MiB, "the premise: a full read caches the table"
    return path, [contact], cached


def test_open_leaves_no_table_cache_and_keeps_the_limit(filled: tuple[Path, list[str], int]) -> None:
    path, _, cached = filled
    with open_store(str(path), embedder=StoredOfflineEmbedder()) as store:
        released = _cached_table_bytes(store)
        assert released <= cached // 2
        assert store._scalar("SELECT current_setting('memory_limit')").endswith("GiB")
        # The limit is back: a full read caches blocks again, and a write needing far more
        # than the lowered limit succeeds.
        store._con.execute("SELECT embedding FROM memories").fetchall()
        assert _cached_table_bytes(store) > released
        more = [NewMemory(contact_id=str(uuid.uuid4()), content="x " * 2_000, memory_type="fact")] * 500
        assert store.add_memories(more) == 500


def test_vectors_loaded_in_chunks_equal_the_stored_ones(
    filled: tuple[Path, list[str], int], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, [contact], _ = filled
    monkeypatch.setattr(duckdb_store, "_LOAD_CHUNK", 1_000)  # many ranges, one partly empty
    with open_store(str(path), embedder=StoredOfflineEmbedder()) as store:
        seqs, blobs = zip(
            *store._con.execute("SELECT seq, embedding FROM memories WHERE embedding IS NOT NULL").fetchall(),
            strict=True,
        )
        expected = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(seqs), -1)
        assert store.vectors.count == len(seqs)
        np.testing.assert_array_equal(store.vectors.vectors(np.array(seqs)), expected)
        found = store.search(SearchQuery(contact, "order 17 delivered", mode=SearchMode.VECTOR))
        assert found.vector_matches > 0


def test_a_recomputable_embedders_vectors_are_computed_at_open_not_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The offline embedder's vectors are not in the file; opening computes each embedded
    memory's vector from its content, bit for bit what StoreMemory returned, and none for a
    memory stored without one."""
    path, contact = str(tmp_path / "r.duckdb"), str(uuid.uuid4())
    with open_store(path) as store:
        written = [
            store.store_memory(
                NewMemory(
                    contact_id=contact,
                    content=f"parcel {i} held at customs",
                    memory_type="fact",
                    embed=i % 3 > 0,
                )
            )
            for i in range(60)
        ]
        written.append(store.store_memory(NewMemory(contact_id=contact, content="", memory_type="fact")))
    monkeypatch.setattr(duckdb_store, "_COMPUTE_CHUNK", 7)  # many ranges, some with no vector to compute
    with open_store(path) as store:
        assert store._con.execute("SELECT count(embedding), count_if(embedded) FROM memories").fetchone() == (
            0,
            41,
        )
        seqs = np.arange(len(written))
        present = store.vectors.has(seqs)
        assert present.tolist() == [record.embedding is not None for record in written]
        for seq, record in zip(seqs[present], [r for r in written if r.embedding is not None], strict=True):
            np.testing.assert_array_equal(store.vectors.vectors(np.array([seq]))[0], record.embedding)
        found = store.search(SearchQuery(contact, "parcel 17 customs", mode=SearchMode.VECTOR, limit=1))
        assert found.memories[0].memory.id == written[17].id


def test_memory_rows_give_contents_by_seq_and_refuse_seqs_they_lack() -> None:
    rows = MemoryRows()
    rows.add(
        np.array([0, 1, 3]),
        ["a", "b", "c"],
        ["k"] * 3,
        ["zero", "um", "três"],
        ["fact"] * 3,
        [""] * 3,
        [0] * 3,
    )
    assert rows.contents(np.array([0, 3])) == ["zero", "três"]
    assert rows.contents(np.array([], dtype=np.int64)) == []
    for missing in ([2], [3, 5]):
        with pytest.raises(KeyError):
            rows.contents(np.array(missing))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_release_free_heap_available_on_linux() -> None:
    assert release_free_heap() is True


def test_checkpoint_during_writes_leaves_no_table_cache(tmp_path: Path) -> None:
    """A server writing memories: DuckDB checkpoints inside a COMMIT and keeps the blocks it
    wrote cached; the store releases them after that commit."""
    with open_store(str(tmp_path / "w.duckdb"), embedder=StoredOfflineEmbedder()) as store:
        store._con.execute("SET checkpoint_threshold = '512KB'")
        contact = str(uuid.uuid4())
        wal = tmp_path / "w.duckdb.wal"
        checkpoints = 0
        for batch in range(40):
            before = wal.stat().st_size if wal.exists() else 0
            memories = [
                NewMemory(contact_id=contact, content=f"note {batch} {i} " * 10, memory_type="fact")
                for i in range(100)
            ]
            store.add_memories(memories)
            if (wal.stat().st_size if wal.exists() else 0) < before:  # this commit checkpointed
                checkpoints += 1
                assert _cached_table_bytes(store) <= 1 * MiB
        assert checkpoints >= 2, "the premise: the writes crossed the threshold"
        store._con.execute("SELECT embedding FROM memories").fetchall()
        assert _cached_table_bytes(store) >= 2 * MiB, "the premise: reading caches blocks"


_CRASHING_WRITER = """
import os, sys, uuid
from ventros_server.memory import open_store
from ventros_server.memory.store import NewMemory
store = open_store(sys.argv[1])
store._con.execute("SET checkpoint_threshold = '1GB'")  # everything stays in the log
contact = sys.argv[2]
store.add_memories([
    NewMemory(contact_id=contact, content=f"parcel {i} left the depot", memory_type="fact")
    for i in range(8_000)  # > 1 MiB of log: the file holds no vectors (offline embedder)
])
os._exit(0)  # like kill -9: no close, no checkpoint
"""


def test_open_after_a_crash_reads_the_replayed_rows(tmp_path: Path) -> None:
    """Rows replayed from the log at open live in temporary blocks until checkpointed; the
    release at open must not swap them out (DuckDB 1.5.5 failed reading such blocks back)."""
    path, contact = tmp_path / "c.duckdb", str(uuid.uuid4())
    subprocess.run([sys.executable, "-c", _CRASHING_WRITER, str(path), contact], check=True, timeout=120)
    assert (tmp_path / "c.duckdb.wal").stat().st_size > 1 * MiB, "the premise: rows only in the log"
    with open_store(str(path)) as store:
        assert store.vectors.count == 8_000
        rows = store._con.execute("SELECT seq, content, embedding FROM memories ORDER BY seq").fetchall()
        assert [r[1] for r in rows] == [f"parcel {i} left the depot" for i in range(8_000)]
        found = store.search(SearchQuery(contact, "parcel 1234 depot", mode=SearchMode.KEYWORD))
        assert found.keyword_matches > 0


def test_import_returns_the_free_heap_once_everything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The import's chunks and batches are garbage when it returns; the heap is trimmed then
    (a server importing 200k memories at start held ~200 MiB more than a plain open)."""
    from ventros_server.memory import importer

    calls: list[int] = []
    with open_store(str(tmp_path / "i.duckdb")) as store:
        monkeypatch.setattr(importer, "release_free_heap", lambda: calls.append(store.counts()["memories"]))
        load_demo(store)
        assert calls == [store.counts()["memories"]]  # once, with every memory written
