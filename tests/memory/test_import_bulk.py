"""The bulk import path: chunks parsed (and embedded) in a worker process give exactly what the
one-process path and the per-record parser give; bad lines keep their numbers across chunks;
the offline embedder's output is pinned (stored databases depend on it)."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ventros_server.memory import DuckDBStore, contact_index, import_jsonl, make_embedder, text
from ventros_server.memory.batch import base64_rows
from ventros_server.memory.importer import BadRecord, _main_module_not_inherited, _parse
from ventros_server.memory.store import NewMemory, RelatedRef, SearchMode, SearchQuery

from .conftest import AS_OF, JOAO, OTHER

UPPER = "AAAAAAAA-BBBB-4CCC-8DDD-EEEEEEEEEEEE"


def _memory(i: int, **extra: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "kind": "memory",
        "contact_id": [JOAO, OTHER, UPPER][i % 3],
        "content": f"Reclamação {i}: atraso na entrega do pedido {i % 5}, prefers WhatsApp",
        "memory_type": ["complaint", "preference", "fact"][i % 3],
    }
    record.update(extra)
    return record


def _lines() -> list[str]:
    """Memories of every shape the parser accepts, other kinds, and bad lines in between."""
    records: list[Any] = [
        {"kind": "contact", "id": OTHER, "name": "Ana", "tags": ["vip"]},
        {"kind": "entity", "id": "prod-1", "type": "product", "properties": {"name": "Cafeteira"}},
    ]
    for i in range(40):
        extra: dict[str, Any] = {}
        if i % 4 == 0:
            extra["created_at"] = f"2024-0{1 + i % 9}-0{1 + i % 8}T10:00:00Z"
        if i % 4 == 1:
            extra["created_at"] = "2024-05-06T07:08:09.123456-03:00"
        if i % 4 == 2:
            extra["created_at"] = "2024-05-06T07:08:09"  # naive: taken as UTC
        if i % 5 == 0:
            extra["id"] = f"00000000-0000-4000-8000-{i:012d}".upper()
        if i % 3 == 0:
            extra["metadata"] = {"channel": "whatsapp", "n": i, "nested": {"ç": [1, 2]}}
        if i % 6 == 1:
            extra["related"] = [
                {"entity_type": "product", "entity_id": f"prod-{i % 4}", "strength": 0.5},
                {"entity_type": "order", "entity_id": f"ord-{i}", "relationship": "placed"},
            ]
        if i == 7:
            extra["related"] = []
            extra["metadata"] = {}
        records.append(_memory(i, **extra))
        if i == 11:  # the same given id again, in a later chunk: skipped
            records.append(_memory(0, id="00000000-0000-4000-8000-000000000000"))
    records[10:10] = [
        "{not json",
        _memory(1, contact_id="nope"),
        _memory(2, memory_type="Not Snake"),
        _memory(3, content="   "),
        _memory(4, related=[{"entity_type": "product", "entity_id": "bad id!"}]),
        _memory(5, created_at="yesterday"),
        _memory(6, metadata=[1]),
        _memory(7, id=12),
        "",
        "[1, 2]",
    ]
    return [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in records]


def _store() -> DuckDBStore:
    return DuckDBStore(":memory:", make_embedder("offline"), clock=lambda: AS_OF)


def _rows(store: DuckDBStore) -> list[tuple[Any, ...]]:
    """Every memory as stored, generated ids blanked (they are random)."""
    rows = store._con.execute(
        """SELECT seq, CASE WHEN id LIKE '00000000-%' THEN id END, contact_id, content, memory_type,
                  metadata, created_at, doc_len, embedding FROM memories ORDER BY seq"""
    ).fetchall()
    return rows


def _snapshot(store: DuckDBStore) -> tuple[Any, ...]:
    links = store._con.execute("SELECT * FROM memory_links ORDER BY seq, rowid").fetchall()
    postings = store._con.execute("SELECT * FROM postings ORDER BY seq, term").fetchall()
    edges = store._con.execute("SELECT * FROM edges ORDER BY ALL").fetchall()
    entities = store._con.execute("SELECT * FROM entities ORDER BY id").fetchall()
    return _rows(store), links, postings, edges, entities, store.contacts.export(), store.counts()


def test_worker_chunks_match_one_process_and_the_record_parser(tmp_path: Path) -> None:
    lines = _lines()
    path = tmp_path / "crm.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    parallel, serial = _store(), _store()
    try:
        seen: list[int] = []
        report = import_jsonl(parallel, path, batch_size=7, progress=seen.append)  # 8 chunks: a worker
        again = import_jsonl(serial, iter(lines), batch_size=7, parallel=False)
        assert report.errors == again.errors and report.counts == again.counts
        assert _snapshot(parallel) == _snapshot(serial)
        assert seen == sorted(seen) and seen[-1] == len(lines)
        assert [n for n, _ in report.errors] == [11, 12, 13, 14, 15, 16, 17, 18, 20]
        reasons = [reason for _, reason in report.errors]
        assert "invalid JSON" in reasons[0] and "not a UUID" in reasons[1] and "snake" in reasons[2]
        assert "blank" in reasons[3] and "entity_id" in reasons[4] and "ISO 8601" in reasons[5]
        assert "'metadata' must be an object" in reasons[6] and "'id' must be a string" in reasons[7]
        assert report.counts["memory"] == 40 and report.counts["contact"] == 1

        # The same memories through the per-record parser and add_memories (the NewMemory path).
        reference = _store()
        try:
            memories = []
            for line in lines:
                try:
                    record = json.loads(line)
                    kind, item = _parse(record) if isinstance(record, dict) else ("", None)
                except (ValueError, BadRecord):
                    continue
                if kind == "memory":
                    memories.append(item)
                elif kind == "contact":
                    reference.add_contacts([item])
                elif kind == "entity":
                    reference.add_entities([item])
            assert reference.add_memories(memories) == 40
            assert _snapshot(reference) == _snapshot(serial)
        finally:
            reference.close()
    finally:
        parallel.close()
        serial.close()


def test_parallel_import_into_a_file_survives_reopen(tmp_path: Path) -> None:
    lines = _lines()
    db = str(tmp_path / "m.duckdb")
    store = DuckDBStore(db, make_embedder("offline"), clock=lambda: AS_OF)
    report = import_jsonl(store, lines, batch_size=5)
    snapshot = _snapshot(store)
    store.close()
    reopened = DuckDBStore(db, make_embedder("offline"), clock=lambda: AS_OF)
    try:
        assert report.counts["memory"] == 40
        assert _snapshot(reopened) == snapshot
        assert import_jsonl(reopened, lines, batch_size=5).counts["memory"] == 40 - 8  # given ids skipped
    finally:
        reopened.close()


def test_store_memory_and_add_memories_agree() -> None:
    a, b = _store(), _store()
    try:
        memory = NewMemory(JOAO, "Prefere café forte", "preference", {"k": "v"}, id=UPPER)
        record = a.store_memory(memory)
        assert record.id == UPPER.lower() and record.created_at == AS_OF and record.embedding is not None
        assert b.add_memories([memory, memory]) == 1
        assert _rows(a)[0][2:] == _rows(b)[0][2:]
        no_vector = a.store_memory(NewMemory(JOAO, "sem vetor", "fact", embed=False))
        assert no_vector.embedding is None and _rows(a)[1][-1] is None
    finally:
        a.close()
        b.close()


# -- the offline embedder and the keyword terms must never change -------------------------------

PINNED_TEXTS = [
    "Customer purchased product Y on 2024-09-15",
    "Reclamação: atraso na entrega do pedido #123, cliente chateada",
    "Prefere WhatsApp à tarde; não gosta de ligações",
    "Straße, Æsir, ĳssel, ǅemal: letters that fold into two",
    "ÀÉÎÕÜ çñ ÿ — Ǆ ǈ ǋ Ǳ",
    "emoji 😀 and 中文 and Ελληνικά ΣΑΣ",
    "",
    "   ",
    "snake_case_word and under__scores",
]
#: sha256 of the vectors / terms of PINNED_TEXTS, computed with the code of commit 75f4d31
#: (before the numpy fold and the shared hashing pass). Stored databases hold such vectors and
#: terms under the name offline-hash-v1-<dim>: a change here means a new embedder name.
PINNED = {
    384: "ea0ef3bdfdfa479f4dfc0f07e471a0921a71b2d840ccd02d60ec5bdca3d3ff86",
    100: "aed07149c6734bb4bb834b8cf7cb67a3d8009fbeacb3284713575b12168eca57",
    "terms": "dda5651fe488098b810814a8134c2a0217d07a980a788053f4a343b3f2a9df4d",
}


@pytest.mark.parametrize("dim", [384, 100])
def test_offline_vectors_are_pinned(dim: int) -> None:
    embedder = make_embedder("offline", dim=dim)
    vectors = embedder.embed(PINNED_TEXTS)
    assert hashlib.sha256(vectors.tobytes()).hexdigest() == PINNED[dim]
    both, terms = embedder.embed_with_terms(PINNED_TEXTS)  # type: ignore[attr-defined]
    assert both.tobytes() == vectors.tobytes()
    single = text.term_hashes(PINNED_TEXTS)
    assert np.array_equal(terms.doc, single.doc) and np.array_equal(terms.hash, single.hash)


def test_terms_are_pinned() -> None:
    g = text.term_hashes(PINNED_TEXTS)
    digest = hashlib.sha256(g.doc.astype("<i8").tobytes() + g.hash.astype("<i8").tobytes()).hexdigest()
    assert digest == PINNED["terms"]


def test_a_text_holding_the_separator_is_one_text() -> None:
    vectors = make_embedder("offline").embed(["a\x01b", "x", "a b"])
    assert vectors.shape == (3, 384) and np.array_equal(vectors[0], vectors[2])
    assert text.term_hashes(["a\x01b c", "x"]).doc.tolist() == [0, 0, 1]  # "a" is a stop word


_LETTERS = st.characters(min_codepoint=0x20, max_codepoint=0x2FF) | st.sampled_from(list("ßæÆĲǄǅǈΣς😀中"))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(_LETTERS, max_size=30), max_size=8))
def test_numpy_fold_is_str_translate(texts: list[str]) -> None:
    lowered = f" {' '.join(texts)} ".lower()
    expected = np.frombuffer(lowered.translate(text._FOLD).encode("utf-32-le"), dtype=np.uint32)
    assert np.array_equal(text._folded_codes(lowered), expected)


# -- the contact index's bulk segments ------------------------------------------------------------


def test_bulk_segments_equal_an_index_loaded_from_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bulk batches become segments (small thresholds here, so that segments, contacts with
    arrays of their own, and the automatic folding all happen); reads see every write at once,
    and the index equals the one rebuilt from the file, before and after compaction."""
    monkeypatch.setattr(contact_index, "_SEGMENT_MIN", 10)
    monkeypatch.setattr(contact_index, "_SEGMENTS_MAX", 3)
    contacts = [JOAO, OTHER, UPPER.lower(), "33333333-4444-4555-8666-777777777777"]
    path = str(tmp_path / "m.duckdb")
    store = DuckDBStore(path, make_embedder("offline"), clock=lambda: AS_OF)
    written = dict.fromkeys(contacts, 0)
    for round_ in range(7):
        batch = [
            NewMemory(
                contacts[(i + round_) % 4], f"round {round_} delivery note {i}", ["fact", "complaint"][i % 2],
                related=[RelatedRef("order", f"ord-{i % 3}", "mentioned", 0.5)] if i % 3 == 0 else [],
            )
            for i in range(12 + round_)
        ]  # fmt: skip
        assert store.add_memories(batch) == len(batch)
        for m in batch:
            written[m.contact_id] += 1
        store.store_memory(NewMemory(JOAO, f"single delivery write {round_}", "fact"))  # own arrays
        written[JOAO] += 1
        for contact, count in written.items():  # read-your-writes through segments and own arrays
            found = store.search(SearchQuery(contact, "delivery", mode=SearchMode.KEYWORD, limit=100))
            assert found.total_count == count
        assert len(store.contacts._segments) <= 3
    maintained = store.contacts.export()
    store.compact_indexes()
    assert store.contacts.export() == maintained and not store.contacts._segments
    store.close()
    reopened = DuckDBStore(path, make_embedder("offline"), clock=lambda: AS_OF)
    try:
        assert reopened.contacts.export() == maintained
    finally:
        reopened.close()


def _bulk_write(store: DuckDBStore) -> None:
    with store.bulk_load():
        links = [[RelatedRef("order", f"ord-{i % 4}", "mentioned", 0.5)] for i in range(40)]
        owners = [JOAO if i % 2 else OTHER for i in range(40)]
        store.add_memories(
            [NewMemory(owners[i], f"bulk delivery note {i}", "fact", related=links[i]) for i in range(40)]
        )
        store.store_memory(NewMemory(JOAO, "one more delivery note", "fact"))


def test_a_bulk_load_ends_with_its_indexes_folded(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fold runs beside the last COMMIT: afterwards no contact or node has arrays of its
    own, and the indexes hold what they held before folding."""
    monkeypatch.setattr(contact_index, "_SEGMENT_MIN", 10**9)  # every contact gets own arrays
    store = DuckDBStore(":memory:", make_embedder("offline"), clock=lambda: AS_OF)
    folded: list[object] = []
    fold = store._fold_indexes

    def noting_fold() -> None:
        folded.append((store.contacts.export(), sorted(store.edges.export())))
        fold()

    monkeypatch.setattr(store, "_fold_indexes", noting_fold)
    _bulk_write(store)
    assert folded == [(store.contacts.export(), sorted(store.edges.export()))]
    assert not store.contacts._own and not store.contacts._segments and not store.edges._adj_own
    found = store.search(SearchQuery(JOAO, "delivery", mode=SearchMode.KEYWORD, limit=100))
    assert found.total_count == 21
    store.close()


def test_a_failed_fold_rebuilds_the_indexes_from_what_was_committed(monkeypatch: pytest.MonkeyPatch) -> None:
    store = DuckDBStore(":memory:", make_embedder("offline"), clock=lambda: AS_OF)

    def failing() -> None:
        raise MemoryError("no room to fold")

    monkeypatch.setattr(store, "_fold_indexes", failing)
    with pytest.raises(MemoryError, match="no room to fold"):
        _bulk_write(store)
    assert store.counts()["memories"] == 41  # the COMMIT beside the fold went through
    found = store.search(SearchQuery(JOAO, "delivery", mode=SearchMode.KEYWORD, limit=100))
    assert found.total_count == 21
    store.close()


def test_a_script_without_a_main_guard_imports_with_its_worker(tmp_path: Path) -> None:
    """A 'spawn' worker used to re-run the parent's main module: an unguarded script ran
    again in it and died (the DuckDB file is locked by the parent). The worker no longer
    inherits the main module, so it works for such a script too."""
    data = tmp_path / "in.jsonl"
    data.write_text("\n".join(_lines()) + "\n", encoding="utf-8")
    db = tmp_path / "m.duckdb"
    script = tmp_path / "unguarded.py"
    script.write_text(
        "from ventros_server.memory import DuckDBStore, import_jsonl, make_embedder\n"
        f"store = DuckDBStore({str(db)!r}, make_embedder('offline'))\n"
        f"report = import_jsonl(store, {str(data)!r}, batch_size=5)\n"
        "print('memories', report.counts['memory'])\n"
        "store.close()\n",
        encoding="utf-8",
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "memories 40" in done.stdout
    assert "worker process died" not in done.stderr, done.stderr[-2000:]
    with DuckDBStore(str(db), make_embedder("offline")) as reopened:
        assert reopened.counts()["memories"] == 40


def test_the_main_module_is_given_back_once_the_worker_started() -> None:
    main = sys.modules["__main__"]
    before = (main.__dict__.get("__file__"), main.__spec__)
    with pytest.raises(RuntimeError), _main_module_not_inherited():
        assert main.__spec__ is None and "__file__" not in vars(main)
        raise RuntimeError("the worker failed to start")
    assert (main.__dict__.get("__file__"), main.__spec__) == before


def test_the_import_worker_starts_without_duckdb_grpclib_or_the_sdk() -> None:
    """What the worker imports is its start-up time, during which the importing process
    parses chunks itself: importer.py must not pull in the store, the server or the SDK."""
    code = (
        "import sys, ventros_server.memory.importer\n"
        "print(sorted(m for m in ('duckdb', 'grpclib', 'ventros', 'httpx') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_every_export_of_the_memory_package_resolves_on_first_use() -> None:
    code = (
        "import ventros_server.memory as m\n"
        "assert set(m.__all__) <= set(dir(m))\n"
        "print(sorted(n for n in m.__all__ if getattr(m, n) is None))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("dim", [384, 128], ids=["rows-on-base64-groups", "row-by-row"])
def test_base64_rows_decode_to_each_embedded_row(dim: int) -> None:
    """What the store inserts when it stores vectors: one base64 text per embedded memory, in
    order, None for the others; 384 dims (a multiple of 3 bytes per row) slice one encoding,
    128 encode row by row."""
    rng = np.random.default_rng(3)
    mask = np.array([True, False, True, True, False])
    rows = rng.standard_normal((int(mask.sum()), dim)).astype(np.float32)
    texts = base64_rows(rows, mask)
    assert [t is None for t in texts] == [not m for m in mask]
    decoded = [np.frombuffer(base64.b64decode(t), np.float32) for t in texts if t is not None]
    np.testing.assert_array_equal(np.stack(decoded), rows)
