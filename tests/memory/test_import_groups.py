"""A bulk load commits its writes in groups (DuckDBStore.bulk_load): the same store whatever the
group size, nothing of a failed group left in the file or in the search indexes, and no other
caller's write slipped into a group."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from ventros_server.memory import DuckDBStore, duckdb_store, import_jsonl, make_embedder
from ventros_server.memory.store import NewMemory, SearchMode, SearchQuery

from .conftest import AS_OF, JOAO
from .test_import_bulk import _lines, _snapshot


class Stop(Exception):
    pass


def _open(path: str = ":memory:") -> DuckDBStore:
    return DuckDBStore(path, make_embedder("offline"), clock=lambda: AS_OF)


def _stop_after(line: int):  # type: ignore[no-untyped-def]
    def progress(done: int) -> None:
        if done >= line:
            raise Stop

    return progress


def _keyword_hits(store: DuckDBStore, contact_id: str, words: str) -> int:
    query = SearchQuery(contact_id=contact_id, query=words, mode=SearchMode.KEYWORD, limit=100)
    return store.search(query).total_count


def test_small_groups_give_the_same_store_as_one(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = _lines()
    one, many = _open(), _open()
    try:
        import_jsonl(one, lines, batch_size=5, parallel=False)
        monkeypatch.setattr(duckdb_store, "BULK_GROUP_ROWS", 9)
        import_jsonl(many, lines, batch_size=5, parallel=False)
        assert _snapshot(many) == _snapshot(one)
    finally:
        one.close()
        many.close()


def test_a_failed_import_leaves_only_the_groups_committed_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = _lines()
    db = str(tmp_path / "m.duckdb")
    monkeypatch.setattr(duckdb_store, "BULK_GROUP_ROWS", 10)
    store = _open(db)
    try:
        with pytest.raises(Stop):
            import_jsonl(store, lines, batch_size=5, parallel=False, progress=_stop_after(40))
        kept = store.counts()["memories"]
        assert 0 < kept < 40
        # The indexes were rebuilt from the file: what they hold is what a reopen finds.
        in_memory = _snapshot(store)
        assert _keyword_hits(store, JOAO, "atraso") == sum(1 for row in in_memory[0] if row[2] == JOAO)
    finally:
        store.close()
    reopened = _open(db)
    try:
        assert _snapshot(reopened) == in_memory
        reopened.store_memory(NewMemory(JOAO, "depois da falha", "fact"))  # still writable
        assert reopened.counts()["memories"] == kept + 1
    finally:
        reopened.close()


def test_an_import_of_one_group_is_all_or_nothing(tmp_path: Path) -> None:
    store = _open(str(tmp_path / "m.duckdb"))
    try:
        with pytest.raises(Stop):
            import_jsonl(store, _lines(), batch_size=5, parallel=False, progress=_stop_after(40))
        assert store.counts()["memories"] == 0
        assert _keyword_hits(store, JOAO, "atraso") == 0
        empty = _open()
        assert store.contacts.export() == empty.contacts.export()
        empty.close()
        import_jsonl(store, _lines(), batch_size=5, parallel=False)  # then the whole file goes in
        assert store.counts()["memories"] == 40
    finally:
        store.close()


def test_another_callers_write_waits_for_the_bulk_load(tmp_path: Path) -> None:
    """A write during a bulk load would join its open transaction and be acknowledged before it
    is durable: it waits until the load ends, then commits on its own."""
    db = str(tmp_path / "m.duckdb")
    store = _open(db)
    loading, written = threading.Event(), threading.Event()

    def write() -> None:
        loading.wait()
        store.store_memory(NewMemory(JOAO, "escrita concorrente", "fact"))
        written.set()

    writer = threading.Thread(target=write)
    writer.start()

    def progress(done: int) -> None:
        loading.set()
        assert not written.wait(0.2)  # held back while the load's transaction is open
        stop(done)

    stop = _stop_after(40)

    try:
        with pytest.raises(Stop):
            import_jsonl(store, _lines(), batch_size=5, parallel=False, progress=progress)
        writer.join(10)
        assert (
            written.is_set() and store.counts()["memories"] == 1
        )  # the failed load is gone, the write is not
    finally:
        store.close()
    reopened = _open(db)
    try:
        assert reopened.counts()["memories"] == 1
    finally:
        reopened.close()
