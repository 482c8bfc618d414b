"""Restart durability, kill -9 after acknowledged writes, schema migrations, embedder mismatch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import numpy as np
import pytest
from ventros_server.memory import DuckDBStore, EmbedderMismatchError, SchemaTooNewError, open_store
from ventros_server.memory import schema as schema_mod
from ventros_server.memory.embedders.offline import OfflineEmbedder
from ventros_server.memory.store import NewMemory, RelatedRef, SearchMode, SearchQuery

from .conftest import JOAO, StoredOfflineEmbedder


def search_ids(store, query: str, mode: SearchMode) -> set[str]:  # type: ignore[no-untyped-def]
    return {s.memory.id for s in store.search(SearchQuery(JOAO, query, mode=mode, limit=100)).memories}


def test_file_store_survives_close_and_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "m.duckdb")
    store = open_store(path)
    ids = [
        store.store_memory(
            NewMemory(JOAO, f"Bought gadget number {i}", "purchase", related=[RelatedRef("product", f"g{i}")])
        ).id
        for i in range(5)
    ]
    store.close()
    again = open_store(path)
    try:
        assert search_ids(again, "gadget", SearchMode.KEYWORD) == set(ids)
        assert search_ids(again, "gadget bought", SearchMode.VECTOR) == set(ids)
        assert again.related_entities(
            "g3", entity_type="product", target_types=frozenset(), max_depth=1, limit=5
        )
    finally:
        again.close()


WRITER = textwrap.dedent(
    """
    import sys
    from ventros_server.memory import open_store
    from ventros_server.memory.store import NewMemory
    store = open_store(sys.argv[1])
    for i in range(int(sys.argv[2])):
        record = store.store_memory(NewMemory(sys.argv[3], f"Durable note {i} about refunds", "fact"))
        print(record.id, flush=True)  # acknowledged: printed only after the commit returned
    print("DONE", flush=True)
    sys.stdin.read()  # wait here to be killed
    """
)


def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    path = str(tmp_path / "killed.duckdb")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, path, "25", JOAO],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    acknowledged = []
    for line in proc.stdout:
        if line.strip() == "DONE":
            break
        acknowledged.append(line.strip())
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert len(acknowledged) == 25
    store = open_store(path)
    try:
        assert search_ids(store, "refunds", SearchMode.KEYWORD) == set(acknowledged)
        assert search_ids(store, "durable refunds note", SearchMode.VECTOR) == set(acknowledged)
    finally:
        store.close()


def test_hnsw_sidecar_is_caught_up_after_restart(tmp_path: Path) -> None:
    """The graph saved at close is loaded; memories written after it (a crash before the next
    save) are added from DuckDB on open."""
    path = str(tmp_path / "h.duckdb")
    store = open_store(path)
    store.vectors.exact_max = 10
    store.add_memories([NewMemory(JOAO, f"memory about topic {i}", "fact") for i in range(30)])
    store.search(SearchQuery(JOAO, "topic", mode=SearchMode.VECTOR))  # 30 > 10 candidates: builds
    assert store.vectors.wait_for_hnsw(timeout=30)
    store.close()
    meta = json.loads(Path(f"{path}.hnsw.json").read_text())
    assert meta["max_seq"] == 29
    # Write more without saving the sidecar (as if killed): copy the old sidecar back after.
    saved = Path(f"{path}.hnsw").read_bytes(), Path(f"{path}.hnsw.json").read_text()
    store = open_store(path)
    late = store.store_memory(NewMemory(JOAO, "zeppelin arrived late", "fact")).id
    store.close()
    Path(f"{path}.hnsw").write_bytes(saved[0])
    Path(f"{path}.hnsw.json").write_text(saved[1])
    store = open_store(path)
    try:
        store.vectors.exact_max = 10
        store.search(SearchQuery(JOAO, "topic", mode=SearchMode.VECTOR))  # loads the saved graph
        assert store.vectors.wait_for_hnsw(timeout=30)
        seqs, _ = store.vectors.top_k(store.embedder.embed(["zeppelin arrived late"])[0], None, 1)
        found = store.search(SearchQuery(JOAO, "zeppelin", mode=SearchMode.VECTOR, limit=1))
        assert found.memories[0].memory.id == late
        assert int(seqs[0]) == 30
    finally:
        store.close()


def test_older_schema_is_migrated(tmp_path: Path) -> None:
    path = str(tmp_path / "old.duckdb")
    con = duckdb.connect(path)
    schema_mod.migrate(con, target=1)
    con.execute("INSERT INTO edges VALUES ('a', 'b', 'r', 1.0, NULL)")
    con.close()
    store = open_store(path)
    try:
        assert store.schema_version() == schema_mod.LATEST
        got = store.related_entities("a", entity_type=None, target_types=frozenset(), max_depth=1, limit=5)
        assert got is not None and [r.entity.id for r in got] == ["b"]
    finally:
        store.close()


def test_newer_schema_is_refused_untouched(tmp_path: Path) -> None:
    path = str(tmp_path / "new.duckdb")
    open_store(path).close()
    con = duckdb.connect(path)
    con.execute("INSERT INTO schema_version VALUES (99, 'from the future', now())")
    con.close()
    with pytest.raises(SchemaTooNewError, match="Upgrade ventros"):
        open_store(path)
    con = duckdb.connect(path)
    assert con.execute("SELECT max(version) FROM schema_version").fetchone() == (99,)
    con.close()


def test_embedder_mismatch_is_refused_and_reembed_fixes_it(tmp_path: Path) -> None:
    path = str(tmp_path / "e.duckdb")
    store = open_store(path)
    store.store_memory(NewMemory(JOAO, "Loves espresso", "preference"))
    store.close()
    with pytest.raises(EmbedderMismatchError, match="reembed=True") as info:
        open_store(path, embedder=OfflineEmbedder(dim=128))
    assert "offline-hash-v1-384" in str(info.value)
    store = open_store(path, embedder=OfflineEmbedder(dim=128), reembed=True)
    try:
        assert store.embedder.dim == 128
        assert len(search_ids(store, "espresso lover", SearchMode.VECTOR)) == 1
    finally:
        store.close()
    open_store(path, embedder=OfflineEmbedder(dim=128)).close()  # now recorded as the embedder


def test_reembedding_moves_vectors_into_and_out_of_the_file(tmp_path: Path) -> None:
    """An embedder that is not recomputable gets every vector written into the file; back to
    the offline one, the bytes are dropped and opening computes the vectors again."""
    path = str(tmp_path / "moves.duckdb")
    with open_store(path) as store:
        store.store_memory(NewMemory(JOAO, "Loves espresso", "preference"))
        store.store_memory(NewMemory(JOAO, "no vector for this one", "fact", embed=False))
    stored = StoredOfflineEmbedder()
    with open_store(path, embedder=stored, reembed=True) as store:
        assert _vector_columns(store) == [(True, 1536), (False, None)]
        assert search_ids(store, "espresso lover", SearchMode.VECTOR)
    with open_store(path, reembed=True) as store:
        assert _vector_columns(store) == [(True, None), (False, None)]
        assert store.vectors.count == 1
        assert (
            store.vectors.vectors(np.array([0]))[0].tobytes() == stored.embed(["Loves espresso"])[0].tobytes()
        )


def _vector_columns(store: DuckDBStore) -> list[tuple[bool, int | None]]:
    return store._con.execute(
        "SELECT embedded, octet_length(embedding) FROM memories ORDER BY seq"
    ).fetchall()


def test_the_store_connection_runs_without_late_materialization(tmp_path: Path) -> None:
    """DuckDB 1.5 holds ~3 KB of native memory per ORDER BY ... LIMIT query while that
    optimizer is on (benchmarks/duckdb_query_growth.py); the soak's RSS grew by it."""
    store = open_store(str(tmp_path / "lm.duckdb"))
    try:
        setting = store._con.execute("SELECT current_setting('disabled_optimizers')").fetchone()
        assert setting is not None and "late_materialization" in str(setting[0]).lower()
    finally:
        store.close()


def test_the_store_connection_draws_no_progress_bar(tmp_path: Path) -> None:
    """DuckDB prints its progress bar on stdout (seen when opening a 1M-memory store)."""
    store = open_store(str(tmp_path / "pb.duckdb"))
    try:
        setting = store._con.execute("SELECT current_setting('enable_progress_bar')").fetchone()
        assert setting is not None and setting[0] is False
    finally:
        store.close()
