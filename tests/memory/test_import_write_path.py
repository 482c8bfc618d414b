"""The write path's bulk shortcuts keep the data exact: the vector matrix's growth and reserve,
registering columns with DuckDB's one-value type sample, and the importer's size estimate."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pytest
from ventros_server.memory import DuckDBStore, import_jsonl, make_embedder
from ventros_server.memory.store import NewMemory
from ventros_server.memory.vectors import GROWTH, VectorIndex

DIM = 8


def _rows(n: int, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_growth_keeps_every_vector_and_is_bounded() -> None:
    index = VectorIndex(DIM, embedder_name="t")
    rows = _rows(5_000)
    for start in range(0, 5_000, 700):  # many growths, with gaps of seqs without a vector
        seqs = np.arange(start, min(start + 700, 5_000))
        keep = seqs % 7 != 3
        index.add(seqs[keep], rows[seqs[keep]])
    held = np.arange(5_000)
    present = held % 7 != 3
    np.testing.assert_array_equal(index.has(held), present)
    np.testing.assert_array_equal(index.vectors(held[present]), rows[present])
    assert index.count == int(present.sum())
    # Capacity grows by GROWTH (or to what a write needs), not by doubling: the slack is
    # below GROWTH - 1 of the rows needed.
    assert 5_000 <= len(index._present) < GROWTH * 5_000


def test_reserve_makes_room_once() -> None:
    index = VectorIndex(DIM, embedder_name="t")
    index.add(np.arange(10), _rows(10))
    index.reserve(3_000)
    matrix = index._matrix
    rows = _rows(3_000, seed=1)
    for start in range(10, 3_000, 500):
        seqs = np.arange(start, min(start + 500, 3_000))
        index.add(seqs, rows[seqs])
    assert index._matrix is matrix, "adds within the reserved room do not copy the matrix"
    np.testing.assert_array_equal(index.vectors(np.arange(10, 3_000)), rows[10:])
    np.testing.assert_array_equal(index.vectors(np.arange(10)), _rows(10))
    index.reserve(100)  # never shrinks
    assert index._matrix is matrix


def test_a_batch_starting_with_a_memory_without_vector_is_written() -> None:
    """The embedding column of such a batch starts with None: registered with DuckDB's full type
    sample, not the one-value one (which fails on a leading None)."""
    store = DuckDBStore(":memory:", make_embedder("offline"))
    contact = str(uuid.uuid4())
    memories = [
        NewMemory(contact_id=contact, content=f"nota {i} sobre entrega", memory_type="fact", embed=i % 2 == 1)
        for i in range(200)  # above the VALUES-list size: the registered-columns path
    ]
    assert store.add_memories(memories) == 200
    counts = store._con.execute(
        "SELECT count(*), count(embedding), count(DISTINCT id) FROM memories"
    ).fetchone()
    assert counts == (200, 100, 200)
    assert store.vectors.count == 100


def test_mixed_and_uniform_columns_register_as_their_types() -> None:
    store = DuckDBStore(":memory:", make_embedder("offline"))
    cases = {
        "text": np.array(["a", "b", "c"], dtype=object),
        "fixed": np.array(["x1", "y22", "z"]),  # fixed-width unicode goes in as objects
        "leading_none": np.array([None, "q", "r"], dtype=object),
        "blob": np.array([b"\x00\x01", b"\x02", b""], dtype=object),
        "number": np.arange(3),
    }
    with store._registered("cases", cases):
        got = store._con.execute(
            "SELECT typeof(text), typeof(fixed), typeof(leading_none), typeof(blob), "
            "list(text), list(fixed), list(leading_none), list(blob) FROM cases GROUP BY ALL"
        ).fetchone()
    assert got is not None
    assert got[:4] == ("VARCHAR", "VARCHAR", "VARCHAR", "BLOB")
    assert got[4:] == (["a", "b", "c"], ["x1", "y22", "z"], [None, "q", "r"], [b"\x00\x01", b"\x02", b""])
    # The sample setting is put back for everyone else on the connection.
    assert store._scalar("SELECT current_setting('pandas_analyze_sample')") == 1000


@pytest.mark.parametrize("parallel", [False, True])
def test_import_reserves_from_the_file_size(tmp_path: Path, parallel: bool) -> None:
    contacts = [str(uuid.uuid4()) for _ in range(50)]
    path = tmp_path / "m.jsonl"
    with path.open("w", encoding="utf-8") as out:
        for i in range(2_500):
            record = {
                "kind": "memory",
                "contact_id": contacts[i % 50],
                "content": f"pedido {i} chegou atrasado, cliente pediu reembolso",
                "memory_type": "complaint",
            }
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    store = DuckDBStore(str(tmp_path / "m.duckdb"), make_embedder("offline"))
    try:
        report = import_jsonl(store, path, batch_size=1_000, parallel=parallel)
        assert report.counts["memory"] == 2_500 and not report.errors
        capacity = len(store.vectors._present)
        # Sized once from the estimate (size / characters per line of the first chunk), which
        # errs high by at most a few lines' length here (all lines are about equally long).
        assert 2_500 <= capacity <= 2_600
        assert store.vectors.count == 2_500
    finally:
        store.close()
