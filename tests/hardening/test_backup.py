"""The backup and restore paths docs/operations.md gives, done for real on a small store.

1. Cold copy: stop the server (it checkpoints on close), copy the .duckdb file (the .hnsw
   sidecar is optional: it is rebuilt from the file when missing), start on the copy.
2. Logical export: EXPORT DATABASE to a folder of Parquet files (portable across DuckDB
   versions), IMPORT DATABASE into a new file, open it as the store.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
from ventros_server.memory import open_store
from ventros_server.memory.store import NewMemory, RelatedRef, SearchMode, SearchQuery

CONTACT = "550e8400-e29b-41d4-a716-446655440000"


def _fill(path: Path) -> dict[str, str]:
    store = open_store(str(path))
    try:
        ids = {}
        for word in ("kettle", "toaster", "blender"):
            record = store.store_memory(
                NewMemory(CONTACT, f"Asked about the {word} warranty", "conversation",
                          related=[RelatedRef("product", f"p-{word}", "asked_about")])
            )  # fmt: skip
            ids[word] = record.id
        return ids
    finally:
        store.close()


def _assert_restored(path: Path, ids: dict[str, str]) -> None:
    store = open_store(str(path))
    try:
        for word, memory_id in ids.items():
            for mode, query in ((SearchMode.KEYWORD, word), (SearchMode.VECTOR, f"the {word} warranty")):
                found = store.search(SearchQuery(CONTACT, query, mode=mode, limit=10))
                assert memory_id in [s.memory.id for s in found.memories], (mode, word)
        related = store.related_entities(
            CONTACT, entity_type="contact", target_types=frozenset(), max_depth=1, limit=10
        )
        assert related
    finally:
        store.close()


def test_cold_copy_of_a_closed_store_restores(tmp_path: Path) -> None:
    live = tmp_path / "live" / "memory.duckdb"
    live.parent.mkdir()
    ids = _fill(live)
    assert not Path(f"{live}.wal").exists()  # closed = checkpointed: the file alone is the database
    backup = tmp_path / "backup" / "memory.duckdb"
    backup.parent.mkdir()
    shutil.copy2(live, backup)  # the .hnsw sidecar is left behind on purpose
    _assert_restored(backup, ids)


def test_export_and_import_database_restores(tmp_path: Path) -> None:
    live = tmp_path / "memory.duckdb"
    ids = _fill(live)
    export = tmp_path / "export"
    con = duckdb.connect(str(live), read_only=True)
    try:
        con.execute(f"EXPORT DATABASE '{export}' (FORMAT PARQUET)")
    finally:
        con.close()
    restored = tmp_path / "restored.duckdb"
    con = duckdb.connect(str(restored))
    try:
        con.execute(f"IMPORT DATABASE '{export}'")
    finally:
        con.close()
    _assert_restored(restored, ids)
