"""The in-memory entities and contact ids (node_index.py) against their source, DuckDB.

Graph reads (GetContactContext's graph, GetRelatedEntities, GRAPH scoring) name the nodes they
reach from this index instead of querying DuckDB, so: every write function must update it, an
index loaded from the file must equal the one maintained write by write, and the nodes and
contact statistics it gives must be what the tables say (checked against the SQL the store used
before the index).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import ventros
from ventros_server.demo_data import load_demo
from ventros_server.memory import DuckDBStore, MemoryService, churn, make_embedder
from ventros_server.memory.node_index import NodeIndex
from ventros_server.memory.store import (
    Contact,
    EdgeRecord,
    Entity,
    MessageRecord,
    NewMemory,
    Purchase,
    RelatedRef,
)
from ventros_server.server import build_server

from .conftest import AS_OF, JOAO, OTHER

MSG_ONLY = "33333333-4444-4555-8666-777777777777"
BUYER_ONLY = "44444444-5555-4666-8777-888888888888"
T0 = datetime(2024, 9, 1, tzinfo=UTC)


def open_file(path: Path) -> DuckDBStore:
    return DuckDBStore(str(path), make_embedder("offline"), clock=lambda: AS_OF)


def write_history(store: DuckDBStore) -> None:
    """Every write function that creates nodes: imported entities (one re-imported with other
    properties, one with none), profiles, memory links naming new and known entities, messages
    and purchases naming contacts without a profile, edges to ids known nowhere else."""
    store.add_entities([Entity("prod-1", "product", {"name": "Fone X"}), Entity("camp-1", "campaign")])
    store.add_entities([Entity("prod-1", "product", {"name": "Fone X2", "sku": "FX2"})])
    store.add_contacts([Contact(JOAO, "João", email="joao@example.com", tier="gold")])
    store.store_memory(
        NewMemory(JOAO, "Comprou o Fone X2", "fact", related=[
            RelatedRef("product", "prod-1", "purchased", 0.9),  # known: keeps its type and properties
            RelatedRef("order", "ord-7", "placed", 0.5),
            RelatedRef("ticket", "ord-7", "about", 0.4),  # same id twice: the last type wins
        ]),
    )  # fmt: skip
    store.add_memories(
        [NewMemory(OTHER, "Prefers e-mail", "preference", related=[RelatedRef("topic", "t-1", "likes", 1.0)])]
    )
    store.add_messages([MessageRecord("m-1", MSG_ONLY.upper(), "Oi", True, "whatsapp", T0)])
    store.add_purchases([Purchase("p-1", BUYER_ONLY, "prod-1", 99.0, "BRL", T0)])
    store.add_edges(
        [EdgeRecord(MSG_ONLY, "prod-1", "asked_about", 0.7), EdgeRecord(BUYER_ONLY, "ghost", "saw", 0.3)]
    )


def reference_nodes(store: DuckDBStore, ids: list[str], reveal: str | None) -> list[tuple[str, str, dict]]:
    """What DuckDBStore._nodes answered from the tables before the index (one query per id)."""
    con, out = store._con, []
    for node_id in ids:
        entity = con.execute("SELECT type, properties FROM entities WHERE id = ?", [node_id]).fetchone()
        contact = con.execute("SELECT name, tier, email FROM contacts WHERE id = ?", [node_id]).fetchone()
        named = con.execute(
            """SELECT count(*) FROM (SELECT contact_id FROM memories UNION ALL SELECT contact_id FROM messages
               UNION ALL SELECT contact_id FROM purchases) WHERE contact_id = ?""",
            [node_id],
        ).fetchone()
        if entity is not None:
            out.append((node_id, entity[0], json.loads(entity[1]) if entity[1] else {}))
        elif contact is not None:
            props = {k: v for k, v in zip(("name", "tier", "email"), contact, strict=True) if v}
            out.append((node_id, "contact", props if node_id == reveal else {}))
        elif named and named[0]:
            out.append((node_id, "contact", {}))
        else:
            out.append((node_id, "unknown", {}))
    return out


def every_id(store: DuckDBStore) -> list[str]:
    rows = store._con.execute(
        """SELECT id FROM entities UNION SELECT id FROM contacts UNION SELECT from_id FROM edges
           UNION SELECT to_id FROM edges UNION SELECT contact_id FROM messages"""
    ).fetchall()
    return [*sorted(r[0] for r in rows), "nobody", MSG_ONLY.upper()]


def test_reopened_index_equals_the_one_maintained_by_writes(tmp_path: Path) -> None:
    path = tmp_path / "n.duckdb"
    with open_file(path) as store:
        write_history(store)
        written = store.nodes.export()
    with open_file(path) as reopened:
        assert reopened.nodes.export() == written
    entities, contacts = written
    assert entities["prod-1"] == (
        "product",
        json.dumps({"name": "Fone X2", "sku": "FX2"}, ensure_ascii=False),
    )
    assert entities["ord-7"] == ("ticket", None) and entities["camp-1"] == ("campaign", None)
    assert set(contacts) == {JOAO, MSG_ONLY, BUYER_ONLY}


def test_nodes_are_what_the_tables_say(tmp_path: Path) -> None:
    with open_file(tmp_path / "n.duckdb") as store:
        write_history(store)
        ids = every_id(store)
        for reveal in (None, JOAO, MSG_ONLY):
            got = [(n.id, n.type, n.properties) for n in store._nodes(ids, reveal=reveal)]
            assert got == reference_nodes(store, ids, reveal)
        types = {n.id: n.type for n in store._nodes(ids)}
        assert types["ghost"] == "unknown" and types["nobody"] == "unknown"
        assert types[OTHER] == types[MSG_ONLY] == types[BUYER_ONLY] == "contact"


def reference_stats(store: DuckDBStore, contact_id: str) -> tuple:
    """The counts the store computed in one SQL statement before (scalar subqueries, EXISTS)."""
    since = (AS_OF - timedelta(days=churn.WINDOW_DAYS)).replace(tzinfo=None)
    return store._con.execute(
        """SELECT (SELECT count(*) FROM messages WHERE contact_id = $c),
                  (SELECT count(*) FROM purchases WHERE contact_id = $c),
                  (SELECT coalesce(sum(amount), 0) FROM purchases WHERE contact_id = $c),
                  (SELECT max(t) FROM (SELECT max(sent_at) t FROM messages WHERE contact_id = $c
                      UNION ALL SELECT max(purchased_at) FROM purchases WHERE contact_id = $c
                      UNION ALL SELECT max(created_at) FROM memories WHERE contact_id = $c)),
                  (SELECT count(*) FROM messages WHERE contact_id = $c AND is_inbound AND sent_at >= $since)
                    + (SELECT count(*) FROM purchases WHERE contact_id = $c AND purchased_at >= $since),
                  (SELECT count(*) FROM memories m WHERE contact_id = $c AND created_at >= $since AND (
                      list_contains($types, memory_type) OR EXISTS (SELECT 1 FROM memory_links l
                          WHERE l.seq = m.seq AND l.relationship = $rel)))""",
        {"c": contact_id, "since": since, "types": list(churn.COMPLAINT_TYPES), "rel": churn.COMPLAINT_RELATIONSHIP},
    ).fetchone()  # fmt: skip


def test_stats_match_the_tables_for_every_demo_contact() -> None:
    store = DuckDBStore(":memory:", make_embedder("offline"), clock=lambda: AS_OF)
    try:
        load_demo(store)
        store.store_memory(NewMemory(JOAO, "Reclamou de novo", "fact", related=[
            RelatedRef("ticket", "tk-9", churn.COMPLAINT_RELATIONSHIP, 1.0)]))  # fmt: skip
        contacts = [r[0] for r in store._con.execute("SELECT DISTINCT contact_id FROM memories").fetchall()]
        complaints: dict[str, int] = {}
        for contact_id in contacts:
            stats = store._stats(contact_id, store._profile(contact_id))
            messages, purchases, ltv, last, interactions, complaint_count = reference_stats(store, contact_id)
            assert (stats.total_messages, stats.total_purchases) == (messages, purchases)
            assert stats.lifetime_value == pytest.approx(ltv)
            last = last.replace(tzinfo=UTC) if last else None
            assert stats.last_activity == last
            inputs = churn.ChurnInputs(last, interactions, complaint_count)
            assert stats.churn_risk == pytest.approx(churn.churn_risk(inputs, AS_OF))
            complaints[contact_id] = complaint_count
        assert complaints[JOAO] > 0 and sum(complaints.values()) > complaints[JOAO]  # links and types
    finally:
        store.close()


@asynccontextmanager
async def serving(path: Path) -> AsyncIterator[ventros.MemoryClient]:
    store = open_file(path)
    server, _ = build_server([MemoryService(store)])
    await server.start("127.0.0.1", 0)
    port = server._server.sockets[0].getsockname()[1]
    try:
        async with ventros.MemoryClient(f"127.0.0.1:{port}") as client:
            yield client
    finally:
        server.close()
        await server.wait_closed()
        store.close()


async def test_found_after_write_and_after_restart_unknown_is_not_found(tmp_path: Path) -> None:
    path = tmp_path / "n.duckdb"
    async with serving(path) as client:
        await client.store_memory(
            contact_id=JOAO, content="Quer o Fone X", memory_type="fact",
            related=[ventros.memory.RelatedEntity(entity_type="product", entity_id="prod-new",
                                                  relationship="interested_in", strength=0.8)],
        )  # fmt: skip
        before = await client.get_related_entities(entity_id="prod-new", entity_type="product")
        assert [r.entity.id for r in before.entities] == [JOAO]
        with pytest.raises(ventros.NotFoundError):
            await client.get_related_entities(entity_id="prod-unknown")
    async with serving(path) as client:
        after = await client.get_related_entities(entity_id="prod-new", entity_type="product")
        assert [(r.entity.id, r.entity.type) for r in after.entities] == [(JOAO, "contact")]
        context = await client.get_contact_context(contact_id=JOAO, include_graph=True)
        assert {(n.id, n.type) for n in context.graph.nodes} >= {(JOAO, "contact"), ("prod-new", "product")}
        with pytest.raises(ventros.NotFoundError):
            await client.get_related_entities(entity_id="prod-unknown")
        with pytest.raises(ventros.NotFoundError):
            await client.get_contact_context(contact_id=OTHER)


async def test_contact_known_by_a_message_only(tmp_path: Path) -> None:
    """A message makes a contact known to GetContactContext; a purchase alone does not (as before)."""
    path = tmp_path / "n.duckdb"
    with open_file(path) as store:
        store.add_messages([MessageRecord("m-1", MSG_ONLY, "Oi", True, "whatsapp", T0)])
        store.add_purchases([Purchase("p-1", BUYER_ONLY, "prod-1", 10.0, "BRL", T0)])
    async with serving(path) as client:
        context = await client.get_contact_context(contact_id=MSG_ONLY)
        assert context.stats.total_messages == 1
        with pytest.raises(ventros.NotFoundError):
            await client.get_contact_context(contact_id=BUYER_ONLY)


def test_linked_entities_are_added_when_new_the_last_link_type_winning() -> None:
    index = NodeIndex()
    index.add_entities([Entity("prod-1", "product", {"name": "Fone X"})])
    index.add_linked(["prod-1", "ord-7", "ord-7"], ["order", "order", "ticket"])
    assert index.entity("prod-1") == ("product", '{"name": "Fone X"}')
    assert index.entity("ord-7") == ("ticket", None) and index.entity("nope") is None
