"""GetContactContext and GetRelatedEntities, on the demo data set and on small hand-made graphs."""

from __future__ import annotations

from datetime import timedelta

import pytest
import ventros
from ventros_server.demo_data import FALL_SALE_ID, PRODUCT_Y_ID, load_demo
from ventros_server.memory import DuckDBStore
from ventros_server.memory.churn import ChurnInputs, churn_risk
from ventros_server.memory.store import Contact, EdgeRecord, Entity, MessageRecord, NewMemory

from .conftest import AS_OF, JOAO, OTHER


async def test_joao_context_matches_the_spec_story(client: ventros.MemoryClient, store: DuckDBStore) -> None:
    load_demo(store)
    ctx = await client.get_contact_context(contact_id=JOAO, include_graph=True, history_limit=20)
    assert ctx.profile is not None and ctx.profile.name == "João Silva" and ctx.profile.tier == "premium"
    assert ctx.stats is not None and ctx.stats.lifetime_value == pytest.approx(5000.0)
    assert 0.0 <= ctx.stats.churn_risk <= 1.0
    contents = [m.content for m in ctx.recent_memories]
    assert contents[:5] == [
        'Opened email campaign "Fall Sale" on 2024-09-25',
        "Received discount coupon on 2024-09-22",
        "Support ticket resolved on 2024-09-20",
        "Complained about delivery delay on 2024-09-18",
        "Customer purchased product Y on 2024-09-15",
    ]
    times = [m.created_at for m in ctx.recent_memories]
    assert times == sorted(times, reverse=True)
    sent = [m.sent_at for m in ctx.recent_messages]
    assert sent == sorted(sent, reverse=True) and len(sent) == 4
    assert ctx.graph is not None
    assert 0 < len(ctx.graph.nodes) <= 200 and len(ctx.graph.edges) <= 500
    node_ids = {n.id for n in ctx.graph.nodes}
    assert {JOAO, PRODUCT_Y_ID, FALL_SALE_ID, "ticket-789"} <= node_ids
    assert all(e.from_id in node_ids and e.to_id in node_ids for e in ctx.graph.edges)


async def test_context_defaults_and_filters(client: ventros.MemoryClient, store: DuckDBStore) -> None:
    load_demo(store)
    plain = await client.get_contact_context(contact_id=JOAO)
    assert plain.graph is None or (plain.graph.nodes == [] and plain.graph.edges == [])
    assert len(plain.recent_memories) == 6  # all of them (default history_limit is 50)
    limited = await client.get_contact_context(contact_id=JOAO, history_limit=2)
    assert len(limited.recent_memories) == 2 and len(limited.recent_messages) == 2
    only = await client.get_contact_context(
        contact_id=JOAO, entity_types=["purchase", "product"], include_graph=True
    )
    assert [m.memory_type for m in only.recent_memories] == ["purchase"]
    assert only.recent_messages == []  # "message" not listed
    assert only.graph is not None
    assert {n.type for n in only.graph.nodes if n.id != JOAO} == {"product"}
    with_messages = await client.get_contact_context(contact_id=JOAO, entity_types=["message"])
    assert len(with_messages.recent_messages) == 4 and with_messages.recent_memories == []


async def test_contact_known_only_by_a_memory(client: ventros.MemoryClient, store: DuckDBStore) -> None:
    store.store_memory(NewMemory(OTHER, "First note", "fact"))
    ctx = await client.get_contact_context(contact_id=OTHER)
    assert ctx.profile is not None and ctx.profile.contact_id == OTHER and ctx.profile.name == ""
    assert [m.content for m in ctx.recent_memories] == ["First note"]


def test_graph_caps(store: DuckDBStore) -> None:
    """A hub contact with 300 neighbours: the context graph stops at 200 nodes and 500 edges."""
    store.add_contacts([Contact(JOAO, "Hub")])
    store.add_edges([EdgeRecord(JOAO, f"p-{i}", "purchased", 1.0) for i in range(300)])
    store.add_edges([EdgeRecord(f"p-{i}", f"p-{i + 1}", "similar_to", 0.5) for i in range(299)])
    store.add_edges([EdgeRecord(f"p-{i}", f"c-{i % 7}", "in_category", 0.5) for i in range(300)])
    ctx = store.contact_context(JOAO, history_limit=10, entity_types=frozenset(), include_graph=True)
    assert ctx is not None and ctx.graph is not None
    assert len(ctx.graph.nodes) == 200 and len(ctx.graph.edges) <= 500
    assert ctx.graph.nodes[0].id == JOAO


def test_churn_formula() -> None:
    assert churn_risk(ChurnInputs(None, 0, 0), AS_OF) == pytest.approx(0.75)
    fresh = churn_risk(ChurnInputs(AS_OF, 10, 0), AS_OF)
    assert fresh == pytest.approx(0.30 * 2.718281828 ** (-2.5), rel=1e-4)
    stale = churn_risk(ChurnInputs(AS_OF - timedelta(days=90), 0, 3), AS_OF)
    assert 0.9 < stale <= 1.0
    assert churn_risk(ChurnInputs(AS_OF, 2, 2), AS_OF) > churn_risk(ChurnInputs(AS_OF, 2, 0), AS_OF)


def test_stats_count_and_sum(store: DuckDBStore) -> None:
    store.add_messages(
        [MessageRecord(f"m{i}", JOAO, "hi", i % 2 == 0, "email", AS_OF - timedelta(days=i)) for i in range(5)]
    )
    ctx = store.contact_context(JOAO, history_limit=50, entity_types=frozenset(), include_graph=False)
    assert ctx is not None
    assert ctx.stats.total_messages == 5 and ctx.stats.total_purchases == 0
    assert ctx.stats.last_activity == AS_OF and ctx.stats.first_contact == AS_OF - timedelta(days=4)


# -- GetRelatedEntities ------------------------------------------------------------------------------


def chain(store: DuckDBStore) -> None:
    """a -1.0- b -0.5- c -1.0- d, and a -0.2- d (a weak shortcut)."""
    store.add_entities([Entity(x, "node" if x != "d" else "target", {"name": x.upper()}) for x in "abcd"])
    store.add_edges(
        [
            EdgeRecord("a", "b", "r", 1.0),
            EdgeRecord("b", "c", "r", 0.5),
            EdgeRecord("d", "c", "r", 1.0),
            EdgeRecord("a", "d", "weak", 0.2),
        ]
    )


def test_best_path_and_relevance(store: DuckDBStore) -> None:
    chain(store)
    got = store.related_entities("a", entity_type=None, target_types=frozenset(), max_depth=3, limit=20)
    assert got is not None
    by_id = {r.entity.id: r for r in got}
    assert by_id["b"].relevance == pytest.approx(1.0)
    assert by_id["c"].relevance == pytest.approx(0.5 * 0.5)
    # d: direct weak edge 0.2, or a-b-c-d: 1.0*0.5*1.0*0.25 = 0.125 -> the direct edge wins.
    assert by_id["d"].relevance == pytest.approx(0.2)
    assert [e.relationship for e in by_id["d"].path] == ["weak"]
    assert [r.entity.id for r in got] == ["b", "c", "d"]
    assert [(e.from_id, e.to_id) for e in by_id["c"].path] == [("a", "b"), ("b", "c")]


def test_depth_limit_target_types_and_limit(store: DuckDBStore) -> None:
    chain(store)
    one = store.related_entities("a", entity_type=None, target_types=frozenset(), max_depth=1, limit=20)
    assert one is not None and {r.entity.id for r in one} == {"b", "d"}
    targets = store.related_entities(
        "a", entity_type=None, target_types=frozenset({"target"}), max_depth=3, limit=20
    )
    assert targets is not None and [r.entity.id for r in targets] == ["d"]
    top = store.related_entities("a", entity_type=None, target_types=frozenset(), max_depth=3, limit=1)
    assert top is not None and [r.entity.id for r in top] == ["b"]


def test_entity_type_must_match(store: DuckDBStore) -> None:
    chain(store)
    assert (
        store.related_entities("a", entity_type="product", target_types=frozenset(), max_depth=2, limit=5)
        is None
    )
    assert store.related_entities("a", entity_type="node", target_types=frozenset(), max_depth=2, limit=5)


async def test_related_over_grpc(client: ventros.MemoryClient, store: DuckDBStore) -> None:
    load_demo(store)
    got = await client.get_related_entities(entity_id=JOAO, entity_type="contact", target_types=["product"])
    assert got.entities and all(r.entity.type == "product" for r in got.entities)
    assert got.entities[0].entity.id == PRODUCT_Y_ID and got.entities[0].relevance == pytest.approx(1.0)
    relevances = [r.relevance for r in got.entities]
    assert relevances == sorted(relevances, reverse=True) and all(0 <= r <= 1 for r in relevances)
    assert len(got.entities) <= 20
    assert all(r.entity.id != JOAO for r in got.entities)
    for result in got.entities:
        path = result.path
        assert path and JOAO in (path[0].from_id, path[0].to_id)
        assert result.entity.id in (path[-1].from_id, path[-1].to_id)


def test_ids_with_quotes_are_literal_safe(store: DuckDBStore) -> None:
    """Imported ids are not validated like RPC ids; SQL literals must survive any of them."""
    odd = "o'brien'); DROP TABLE edges; --"
    store.add_entities([Entity(odd, "person", {"name": "O'Brien"})])
    store.add_edges([EdgeRecord("a", odd, "knows", 1.0)])
    got = store.related_entities("a", entity_type=None, target_types=frozenset(), max_depth=2, limit=5)
    assert got is not None and [r.entity.id for r in got] == [odd]
    assert store.counts()["edges"] == 1


def test_other_contacts_in_the_graph_carry_no_personal_data(store: DuckDBStore) -> None:
    store.add_contacts(
        [Contact(JOAO, "João Silva", email="joao@example.com"), Contact(OTHER, "Bea", email="b@x.com")]
    )
    store.add_edges([EdgeRecord(JOAO, "p-1", "purchased", 1.0), EdgeRecord(OTHER, "p-1", "purchased", 1.0)])
    ctx = store.contact_context(JOAO, history_limit=5, entity_types=frozenset(), include_graph=True)
    assert ctx is not None and ctx.graph is not None
    props = {n.id: n.properties for n in ctx.graph.nodes}
    assert props[JOAO]["name"] == "João Silva" and props[OTHER] == {}
    related = store.related_entities("p-1", entity_type=None, target_types=frozenset(), max_depth=1, limit=5)
    assert related is not None and all(r.entity.properties == {} for r in related)
    assert {r.entity.id for r in related} == {JOAO, OTHER}
