"""The write path's bulk shortcuts keep the data exact: the vector matrix's growth and reserve,
registering columns with DuckDB's one-value type sample, and the importer's size estimate."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pytest
from ventros_server.memory import DuckDBStore, duckdb_store, import_jsonl, importer, make_embedder, schema
from ventros_server.memory.store import EdgeRecord, NewMemory, RelatedRef, SearchMode, SearchQuery
from ventros_server.memory.vectors import GROWTH, VectorIndex

from .conftest import StoredOfflineEmbedder

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


@pytest.mark.parametrize("stored", [False, True], ids=["recomputed", "stored"])
def test_a_batch_starting_with_a_memory_without_vector_is_written(stored: bool) -> None:
    """The vector column of such a batch starts with None: registered with DuckDB's full type
    sample, not the one-value one (which fails on a leading None). A recomputable embedder's
    vectors are not in the file at all, only whether the memory has one."""
    store = DuckDBStore(":memory:", StoredOfflineEmbedder() if stored else make_embedder("offline"))
    contact = str(uuid.uuid4())
    memories = [
        NewMemory(contact_id=contact, content=f"nota {i} sobre entrega", memory_type="fact", embed=i % 2 == 1)
        for i in range(200)  # above the VALUES-list size: the registered-columns path
    ]
    assert store.add_memories(memories) == 200
    counts = store._con.execute(
        "SELECT count(*), count_if(embedded), count(embedding), count(DISTINCT id) FROM memories"
    ).fetchone()
    assert counts == (200, 100, 100 if stored else 0, 200)
    assert store.vectors.count == 100


def test_a_batchs_links_to_one_entity_become_one_edge_with_the_strongest_and_earliest() -> None:
    """Memories of one batch linking a contact to the same entity (same relationship) make one
    contact -> entity edge: the strongest link's weight, the earliest memory's time."""
    store = DuckDBStore(":memory:", make_embedder("offline"))
    contact, other = str(uuid.uuid4()), str(uuid.uuid4())
    day = datetime(2024, 5, 1, tzinfo=UTC)
    links = [  # (contact, strength, days after `day`, relationship)
        (contact, 0.3, 2, "mentioned"),
        (contact, 0.8, 3, "mentioned"),
        (contact, 0.5, 1, "mentioned"),
        (contact, 0.2, 4, "bought"),
        (other, 0.4, 5, "mentioned"),
    ]
    store.add_memories(
        [
            NewMemory(
                contact_id=owner,
                content=f"note {i}",
                memory_type="fact",
                created_at=day + timedelta(days=days),
                related=[RelatedRef("product", "p1", relationship, strength)],
            )
            for i, (owner, strength, days, relationship) in enumerate(links)
        ]
    )
    rows = store._con.execute(
        "SELECT from_id, relationship, weight, created_at FROM edges WHERE to_id = 'p1' ORDER BY from_id, relationship"
    ).fetchall()
    naive = day.replace(tzinfo=None)
    assert sorted(rows) == sorted(
        [
            (contact, "bought", pytest.approx(0.2), naive + timedelta(days=4)),
            (contact, "mentioned", pytest.approx(0.8), naive + timedelta(days=1)),
            (other, "mentioned", pytest.approx(0.4), naive + timedelta(days=5)),
        ]
    )
    assert sorted((f, r, round(w, 6)) for f, t, r, w, _ in store.edges.export() if t == "p1") == sorted(
        [(contact, "bought", 0.2), (contact, "mentioned", 0.8), (other, "mentioned", 0.4)]
    )


_COUNT_PANDAS_IMPORTS = """
import builtins, sys, uuid
from ventros_server.memory import DuckDBStore, make_embedder
from ventros_server.memory.store import NewMemory, RelatedRef
tries = 0
real_import = builtins.__import__
def counting(name, *args, **kwargs):
    global tries
    tries += name == "pandas"
    return real_import(name, *args, **kwargs)
store = DuckDBStore(":memory:", make_embedder("offline"))
builtins.__import__ = counting
contact = str(uuid.uuid4())
store.add_memories([
    NewMemory(contact, f"note {i} about the delivery", "fact", related=[RelatedRef("order", f"o{i}", "mentioned", 0.5)])
    for i in range(3_000)
])
builtins.__import__ = real_import
print(tries, store.counts()["memories"])
"""


@pytest.mark.skipif(not duckdb_store._PANDAS_MISSING, reason="pandas is installed: DuckDB finds the real one")
def test_converting_rows_makes_duckdb_try_no_pandas_import() -> None:
    """Without pandas, DuckDB tried `import pandas` for about every value of a string column
    it scanned (42,934 tries for 60k memories). The store primes DuckDB's import cache with a
    stand-in once per process (a fresh process here: that cache is global to it)."""
    done = subprocess.run(
        [sys.executable, "-c", _COUNT_PANDAS_IMPORTS], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["0", "3000"]


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


def _file_at_version(path: str, version: int, contact: str, contents: list[str]) -> np.ndarray:
    """A file as release ``version`` wrote it: memories with their vector bytes (all but the
    first, written without a vector); returns the vectors."""
    con = duckdb.connect(path)
    schema.migrate(con, target=version)
    con.execute(
        "INSERT INTO store_info VALUES ('embedder_name', 'offline-hash-v1-384'), ('embedder_dim', '384')"
    )
    vectors = make_embedder("offline").embed(contents)
    for seq, (content, vector) in enumerate(zip(contents, vectors, strict=True)):
        con.execute(
            "INSERT INTO memories VALUES (?, ?, ?, ?, 'complaint', NULL, now()::TIMESTAMP, 4, ?)",
            [seq, str(uuid.uuid4()), contact, content, vector.tobytes() if seq else None],
        )
    con.close()
    return vectors


@pytest.mark.parametrize("version", [2, 3])
def test_an_older_file_is_migrated_with_its_memories_and_vectors(tmp_path: Path, version: int) -> None:
    """Version 3 rebuilds the memories table (embedding stored uncompressed); version 4 marks
    the memories that have a vector. Rows, stored vectors and search survive; a memory without
    a vector stays without; later checkpoints write the embedding column uncompressed."""
    path = str(tmp_path / f"v{version}.duckdb")
    contact = str(uuid.uuid4())
    vectors = _file_at_version(path, version, contact, [f"pedido {i} atrasado na entrega" for i in range(30)])
    with DuckDBStore(path, make_embedder("offline")) as store:
        assert store.schema_version() == schema.LATEST == 4
        assert store._con.execute("SELECT count_if(embedded), count(embedding) FROM memories").fetchone() == (
            29,
            29,
        )
        assert store.vectors.count == 29
        np.testing.assert_array_equal(store.vectors.vectors(np.arange(1, 30)), vectors[1:])
        found = store.search(SearchQuery(contact, "pedido 7 atrasado", mode=SearchMode.VECTOR, limit=1))
        assert found.memories[0].memory.content == "pedido 7 atrasado na entrega"
        store._con.execute("CHECKPOINT")
        methods = {
            row[0]
            for row in store._con.execute(
                "SELECT DISTINCT compression FROM pragma_storage_info('memories') "
                "WHERE column_name = 'embedding' AND segment_type = 'BLOB'"
            ).fetchall()
        }
        assert methods == {"Uncompressed"}


def test_edge_upserts_decided_by_the_index_match_the_table() -> None:
    """_write_edges asks the edge index which keys exist: heavier weights raise the stored
    edge, lighter ones leave it, new keys are added once; table and index agree."""
    store = DuckDBStore(":memory:", make_embedder("offline"))
    contact = str(uuid.uuid4())
    first = [EdgeRecord(f"n{i}", f"m{i % 7}", "knows", 0.5) for i in range(100)]
    store.add_edges(first)
    again = [
        EdgeRecord("n1", "m1", "knows", 0.9),  # heavier: raised
        EdgeRecord("n2", "m2", "knows", 0.1),  # lighter: kept at 0.5
        EdgeRecord("n3", "m3", "likes", 0.3),  # new relationship: a new edge
        EdgeRecord("n1", "m1", "knows", 0.7),  # same key twice in a batch: the heaviest wins
        *[EdgeRecord(f"x{i}", "m1", "knows", 0.2) for i in range(80)],  # new, registered path
    ]
    store.add_edges(again)
    store.store_memory(
        NewMemory(
            contact, "comprou a cafeteira", "purchase", related=[RelatedRef("product", "m1", "bought", 0.8)]
        )
    )
    store.store_memory(
        NewMemory(
            contact, "elogiou a cafeteira", "feedback", related=[RelatedRef("product", "m1", "bought", 0.4)]
        )
    )
    table = {
        (f, t, r): w
        for f, t, r, w in store._con.execute(
            "SELECT from_id, to_id, relationship, weight FROM edges"
        ).fetchall()
    }
    assert store._scalar("SELECT count(*) FROM edges") == len(table) == 100 + 1 + 80 + 1
    assert table[("n1", "m1", "knows")] == pytest.approx(0.9)
    assert table[("n2", "m2", "knows")] == pytest.approx(0.5)
    assert table[("n3", "m3", "likes")] == pytest.approx(0.3)
    assert table[(contact, "m1", "bought")] == pytest.approx(0.8)
    index = {(f, t, r): w for f, t, r, w, _ in store.edges.export()}
    assert index.keys() == table.keys()
    assert all(index[k] == pytest.approx(table[k]) for k in table)


def test_chunks_come_back_in_order_when_this_process_helps_the_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While the worker process is busy (here: still starting), the importing process parses
    the next chunks itself; the chunks still come back in file order, each once."""
    lines = [
        json.dumps(
            {
                "kind": "memory",
                "contact_id": str(uuid.UUID(int=i % 5)),
                "content": f"nota {i}",
                "memory_type": "fact",
            }
        )
        for i in range(400)
    ]
    here: list[int] = []
    original = importer._parse_chunk

    def counting(first_line: int, chunk: list[str], embed_dim: int | None) -> importer._Parsed:
        here.append(first_line)
        return original(first_line, chunk, embed_dim)

    # Sent to the worker by name, where it is the original function.
    counting.__module__, counting.__qualname__ = original.__module__, original.__qualname__
    monkeypatch.setattr(importer, "_parse_chunk", counting)
    parsed = list(importer._parsed_chunks(importer._chunks(lines, 10), 384, True, depth=3))
    assert [p.last_line for p in parsed] == list(range(10, 401, 10))
    contents = [c for p in parsed if p.memories is not None for c in p.memories.contents]
    assert contents == [f"nota {i}" for i in range(400)]
    assert len(here) > 1, "the worker's start-up left chunks for this process to parse"
    assert len(here) < 40, "and the worker parsed the rest"


def _memory_lines(count: int) -> list[str]:
    return [
        json.dumps({"kind": "memory", "contact_id": str(uuid.UUID(int=i % 7)), "content": f"nota número {i} café", "memory_type": "fact"})
        for i in range(count)
    ]  # fmt: skip


def test_worker_vectors_come_back_through_shared_memory_exact_and_unlinked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worker hands a chunk's vectors over in a shared memory block: the importing process
    gets the same float32 rows as parsing the chunk itself, and unlinks it."""
    names: list[str] = []
    original = importer._from_shared

    def recording(parsed: importer._Parsed) -> importer._Parsed:
        if parsed.shared is not None:
            names.append(parsed.shared[0])
        return original(parsed)

    monkeypatch.setattr(importer, "_from_shared", recording)
    lines = _memory_lines(300)
    parsed = list(importer._parsed_chunks(importer._chunks(lines, 50), 384, True, depth=2))
    assert names, "some chunks came from the worker"
    assert not [n for n in names if Path("/dev/shm", n.lstrip("/")).exists()]
    for got in parsed:
        want = importer._parse_chunk(got.last_line - 49, lines[got.last_line - 50 : got.last_line], 384)
        assert got.memories is not None and want.memories is not None
        assert got.memories.vectors is not None and want.memories.vectors is not None
        assert got.memories.vectors.tobytes() == want.memories.vectors.tobytes()


def test_stopping_an_import_unlinks_the_blocks_of_chunks_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    names: list[str] = []
    original = importer._release

    def recording(future: importer.Future[importer._Parsed]) -> None:
        original(future)
        if not future.cancelled() and (shared := future.result().shared) is not None:
            names.append(shared[0])

    monkeypatch.setattr(importer, "_release", recording)
    chunks = importer._parsed_chunks(importer._chunks(_memory_lines(300), 50), 384, True, depth=3)
    assert next(chunks).last_line == 50  # parsed here; the worker has chunks in hand
    chunks.close()
    assert names, "the worker had finished chunks that were never read"
    assert not [n for n in names if Path("/dev/shm", n.lstrip("/")).exists()]


@pytest.mark.parametrize("distinct", [1, 3, duckdb_store._CODED_MAX - 1, duckdb_store._CODED_MAX + 1])
def test_a_batch_reaches_sql_unchanged_whether_its_strings_go_as_codes_or_not(distinct: int) -> None:
    """_rows sends a column of few distinct strings as codes into a list (the values at
    _CODED_MAX + 1 distinct go as strings): the relation holds the same rows either way."""
    count = 4 * duckdb_store._CODED_MAX + 7
    kinds = [None if i % 11 == 0 else f"kind-{i % distinct}-é" for i in range(count)]
    columns = {"seq": np.arange(count), "kind": kinds, "text": [f"text {i}" for i in range(count)]}
    with DuckDBStore(":memory:", make_embedder("offline")) as store:
        with store._rows("batch", columns) as (source, params):
            got = store._con.execute(f"SELECT seq, kind, text FROM {source} ORDER BY seq", params).fetchall()
            coded = bool(params)
    assert got == list(zip(range(count), kinds, columns["text"], strict=True))
    assert coded == (len(set(kinds)) <= duckdb_store._CODED_MAX)
