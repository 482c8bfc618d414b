"""The in-memory search state (contact_index.py, edge_index.py, memory_rows.py) against its
source, DuckDB.

A search reads only these derived structures, not DuckDB, so: they must be
updated by every committed write (read-your-writes), an index rebuilt from the file must equal
the one maintained write by write, and its answers must match what the tables say.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from ventros_server.memory import DuckDBStore, make_embedder, ranking, text
from ventros_server.memory.store import EdgeRecord, NewMemory, RelatedRef, SearchMode, SearchQuery

from .conftest import AS_OF, JOAO, OTHER

THIRD = "22222222-3333-4444-8555-666666666666"
T0 = datetime(2024, 5, 1, tzinfo=UTC)


def open_file(path: Path) -> DuckDBStore:
    return DuckDBStore(str(path), make_embedder("offline"), clock=lambda: AS_OF)


def memory(contact: str, content: str, memory_type: str = "fact", *related: RelatedRef) -> NewMemory:
    return NewMemory(contact_id=contact, content=content, memory_type=memory_type, related=list(related))


def write_history(store: DuckDBStore) -> None:
    """Single writes and batches, several contacts and types, links, imported edges (one of
    them raising the weight of an edge a link created)."""
    product = RelatedRef("product", "prod-9", "purchased", 0.6)
    store.store_memory(memory(JOAO, "Entrega atrasada do fone de ouvido", "complaint", product))
    store.store_memory(memory(OTHER, "Prefers WhatsApp over e-mail", "preference"))
    store.add_memories(
        [
            memory([JOAO, OTHER, THIRD][i % 3], f"note {i} about the delivery of order {i % 7}", "fact",
                   *([RelatedRef("order", f"ord-{i % 7}", "mentioned", 0.5)] if i % 2 else []))
            for i in range(40)
        ]
    )  # fmt: skip
    store.add_edges(
        [
            EdgeRecord(JOAO, "prod-9", "purchased", 0.9, T0),
            EdgeRecord("prod-9", "cat-audio", "in_category", 1.0, T0 + timedelta(days=1)),
        ]
    )
    store.store_memory(memory(JOAO, "Asked about the prod-9 warranty", "fact", product))


def test_reopened_index_equals_the_one_maintained_by_writes(tmp_path: Path) -> None:
    path = tmp_path / "m.duckdb"
    with open_file(path) as store:
        write_history(store)
        contacts, edges = store.contacts.export(), store.edges.export()
    with open_file(path) as reopened:
        assert reopened.contacts.export() == contacts
        assert reopened.edges.export() == edges
        write_history(reopened)  # writes on top of the loaded (shared) arrays
        contacts, edges = reopened.contacts.export(), reopened.edges.export()
        reopened.compact_indexes()
        assert reopened.contacts.export() == contacts
        assert reopened.edges.export() == edges
        assert reopened.search(SearchQuery(THIRD, "delivery", mode=SearchMode.KEYWORD)).total_count == 26
    with open_file(path) as again:
        assert again.contacts.export() == contacts
        assert again.edges.export() == edges
    assert set(contacts) == {JOAO, OTHER, THIRD}
    assert ("prod-9", "cat-audio", "in_category", 1.0) in [e[:4] for e in edges]
    # The imported 0.9 raised the 0.6 edge that the first memory's link had created.
    assert [e[3] for e in edges if e[:3] == (JOAO, "prod-9", "purchased")] == [pytest.approx(0.9)]


def table_rows(store: DuckDBStore) -> list[tuple[object, ...]]:
    return [
        (seq, mid, cid, content, mtype, metadata, created.replace(tzinfo=UTC))
        for seq, mid, cid, content, mtype, metadata, created in store._con.execute(
            "SELECT seq, id, contact_id, content, memory_type, metadata, created_at FROM memories ORDER BY seq"
        ).fetchall()
    ]


def test_memory_rows_equal_the_table_when_written_and_when_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "m.duckdb"
    with open_file(path) as store:
        write_history(store)
        store.store_memory(
            NewMemory(JOAO, "Reclamação: não recebeu o pedido 🙁", "complaint", metadata={"canal": "WhatsApp"},
                      created_at=datetime(2024, 2, 29, 23, 59, 59, 123456, tzinfo=UTC))
        )  # fmt: skip
        expected = table_rows(store)
        assert store.rows.fetch([r[0] for r in expected]) == expected
    with open_file(path) as reopened:
        assert reopened.rows.fetch([r[0] for r in expected]) == expected
        write_history(reopened)  # appends after the loaded rows
        everything = table_rows(reopened)
        assert reopened.rows.fetch([r[0] for r in everything]) == everything
    assert expected[-1][3:6] == ("Reclamação: não recebeu o pedido 🙁", "complaint", '{"canal": "WhatsApp"}')
    assert expected[-1][6] == datetime(2024, 2, 29, 23, 59, 59, 123456, tzinfo=UTC)


def test_memory_rows_fetch_skips_unknown_seqs_and_keeps_the_order_asked(store: DuckDBStore) -> None:
    write_history(store)
    assert [r[0] for r in store.rows.fetch([7, 2, 10**9, -1, 5])] == [7, 2, 5]
    with pytest.raises(ValueError, match="increasing seq"):
        store.rows.add(np.array([0]), ["x"], [JOAO], ["late"], ["fact"], [""], [0])


def test_each_write_is_searchable_through_the_index_at_once(store: DuckDBStore) -> None:
    for i in range(5):
        stored = store.store_memory(
            memory(JOAO, f"zebra{i} crossing", "event", RelatedRef("place", f"zoo-{i}", "visited", 1.0))
        )
        for mode, query in ((SearchMode.KEYWORD, f"zebra{i}"), (SearchMode.VECTOR, f"zebra{i} crossing"),
                            (SearchMode.GRAPH, f"zoo-{i}")):  # fmt: skip
            found = store.search(SearchQuery(JOAO, query, mode=mode)).memories
            assert found and found[0].memory.id == stored.id, (mode, query)
        assert [r.entity_id for r in found[0].memory.related] == [f"zoo-{i}"]


def test_memory_types_filter_applies_to_every_source(store: DuckDBStore) -> None:
    write_history(store)
    for mode in SearchMode:
        result = store.search(
            SearchQuery(JOAO, "delivery prod-9 entrega", mode=mode, memory_types=frozenset({"complaint"}))
        )
        assert {m.memory.memory_type for m in result.memories} <= {"complaint"}, mode
        assert result.total_count == len(result.memories) <= 1
    unknown = store.search(SearchQuery(JOAO, "delivery", memory_types=frozenset({"no_such_type"})))
    assert unknown.memories == [] and unknown.total_count == 0


def test_a_contact_never_sees_another_contacts_postings_or_links(store: DuckDBStore) -> None:
    write_history(store)
    secret = str(uuid.uuid4())
    store.store_memory(
        memory(secret, "quetzal delivery", "fact", RelatedRef("order", "ord-1", "mentioned", 1.0))
    )
    owner_of = dict(store._con.execute("SELECT id, contact_id FROM memories").fetchall())
    for contact in (JOAO, OTHER, THIRD):
        for mode in SearchMode:
            result = store.search(SearchQuery(contact, "quetzal delivery ord-1", mode=mode, limit=100))
            assert {owner_of[m.memory.id] for m in result.memories} <= {contact}, (contact, mode)
    assert store.search(SearchQuery(secret, "quetzal", mode=SearchMode.KEYWORD)).total_count == 1


def test_keyword_scores_equal_bm25_computed_from_the_tables(store: DuckDBStore) -> None:
    """The index's BM25 against one written directly over DuckDB's postings and memories."""
    write_history(store)
    query = "delivery order note entrega"
    got = {
        m.memory.id: m.score
        for m in store.search(SearchQuery(JOAO, query, mode=SearchMode.KEYWORD, limit=100)).memories
    }
    terms = sorted({int(t) for t in text.term_hashes([query]).hash})
    con = store._con
    n, total = con.execute("SELECT count(*), sum(doc_len) FROM memories").fetchone()
    df = dict(
        con.execute(
            f"SELECT term, count(*) FROM postings WHERE term IN ({', '.join(map(str, terms))}) GROUP BY term"
        ).fetchall()
    )
    idf = {t: math.log(1 + (n - df.get(t, 0) + 0.5) / (df.get(t, 0) + 0.5)) for t in terms}
    k1, b, avgdl = ranking.BM25_K1, ranking.BM25_B, total / n
    raw: dict[str, float] = {}
    for mid, term, tf, dl in con.execute(
        f"""SELECT m.id, p.term, p.tf, m.doc_len FROM postings p JOIN memories m USING (seq)
            WHERE m.contact_id = ? AND p.term IN ({', '.join(map(str, terms))})""", [JOAO]
    ).fetchall():  # fmt: skip
        raw[mid] = raw.get(mid, 0.0) + idf[term] * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))
    ceiling = sum(idf[t] for t in terms if df.get(t)) * (k1 + 1)
    scale = max(max(raw.values()), ranking.KEYWORD_CEILING_SHARE * ceiling)
    expected = {mid: min(score / scale, 1.0) for mid, score in raw.items()}
    assert len(expected) > 5
    assert got == pytest.approx(expected)
