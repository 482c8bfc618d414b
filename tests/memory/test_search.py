"""SearchMemories: each mode's ranking on a small hand-checked set, fusion, defaults, read-your-writes."""

from __future__ import annotations

import uuid

import pytest
import ventros
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ventros import memory as pb
from ventros_server.memory import DuckDBStore, make_embedder
from ventros_server.memory.store import Entity, NewMemory, RelatedRef, SearchMode, SearchQuery

from .conftest import AS_OF, JOAO, OTHER

PRODUCT_Y = "prod-y"


def seed(store: DuckDBStore) -> dict[str, str]:
    """Five memories of JOAO, one of OTHER; returns content -> id."""
    store.add_entities(
        [Entity(PRODUCT_Y, "product", {"name": "Product Y"}), Entity("t-1", "ticket", {"title": "Late box"})]
    )
    memories = [
        NewMemory(JOAO, "Customer purchased product Y on 2024-09-15", "purchase",
                  related=[RelatedRef("product", PRODUCT_Y, "purchased", 1.0)]),
        NewMemory(JOAO, "Complained about delivery delay on 2024-09-18", "support_ticket",
                  related=[RelatedRef("ticket", "t-1", "complained_about", 0.9)]),
        NewMemory(JOAO, "Reclamou do atraso na entrega", "support_ticket"),
        NewMemory(JOAO, "Prefers communication after 2pm", "preference"),
        NewMemory(JOAO, "Has two kids and buys gifts every December", "fact"),
        NewMemory(OTHER, "Complained about delivery delay as well", "support_ticket"),
    ]  # fmt: skip
    return {m.content: store.store_memory(m).id for m in memories}


def run(store: DuckDBStore, query: str, mode: SearchMode, **kw: object) -> list[str]:
    result = store.search(SearchQuery(JOAO, query, mode=mode, **kw))  # type: ignore[arg-type]
    return [s.memory.content for s in result.memories]


def test_keyword_mode_matches_exact_folded_words(store: DuckDBStore) -> None:
    seed(store)
    assert run(store, "delivery delay", SearchMode.KEYWORD) == [
        "Complained about delivery delay on 2024-09-18"
    ]
    # Accents and case are folded: "ATRASO" matches "atraso".
    assert run(store, "ATRASO", SearchMode.KEYWORD) == ["Reclamou do atraso na entrega"]
    # Stop words alone match nothing.
    assert run(store, "the and of", SearchMode.KEYWORD) == []


def test_keyword_ranks_more_matched_terms_higher(store: DuckDBStore) -> None:
    seed(store)
    got = run(store, "product delivery delay complained", SearchMode.KEYWORD)
    assert got[0] == "Complained about delivery delay on 2024-09-18"
    assert got[1] == "Customer purchased product Y on 2024-09-15"


def test_vector_mode_finds_paraphrase_across_languages(store: DuckDBStore) -> None:
    seed(store)
    # No shared word with either target: the concept lexicon links late/atraso, shipping/entrega.
    got = run(store, "late shipping", SearchMode.VECTOR)
    assert set(got[:2]) == {"Reclamou do atraso na entrega", "Complained about delivery delay on 2024-09-18"}


def test_graph_mode_prefers_the_named_entity(store: DuckDBStore) -> None:
    seed(store)
    result = store.search(SearchQuery(JOAO, "anything about Product Y?", mode=SearchMode.GRAPH))
    assert result.memories[0].memory.content.startswith("Customer purchased product Y")
    assert result.memories[0].score == pytest.approx(1.0)
    # The ticket memory is in the contact's neighbourhood only: 0.9 (link) x 0.5 x 0.9 (edge).
    assert result.memories[1].score == pytest.approx(0.9 * 0.5 * 0.9, rel=1e-5)
    assert result.graph_matches == 2


def test_graph_mode_without_query_uses_neighbourhood(store: DuckDBStore) -> None:
    seed(store)
    result = store.search(SearchQuery(JOAO, "", mode=SearchMode.GRAPH))
    assert [s.memory.content[:8] for s in result.memories] == ["Customer", "Complain"]


def test_hybrid_fuses_weighted_scores(store: DuckDBStore) -> None:
    seed(store)
    result = store.search(SearchQuery(JOAO, "complained delivery delay", mode=SearchMode.HYBRID))
    top = result.memories[0]
    assert top.memory.content == "Complained about delivery delay on 2024-09-18"
    w = store.weights
    expected = sum(getattr(w, name) * top.sources.get(name, 0.0) for name in ("vector", "keyword", "graph"))
    assert top.score == pytest.approx(expected / (w.vector + w.keyword + w.graph), rel=1e-5)
    assert result.total_count >= len(result.memories)
    assert result.keyword_matches == 1 and result.vector_matches >= 2


def test_memory_types_filter_and_limit(store: DuckDBStore) -> None:
    seed(store)
    result = store.search(SearchQuery(JOAO, "delivery", memory_types=frozenset({"preference"})))
    assert all(s.memory.memory_type == "preference" for s in result.memories)
    limited = store.search(SearchQuery(JOAO, "customer delivery gifts", mode=SearchMode.VECTOR, limit=1))
    assert len(limited.memories) == 1 and limited.total_count >= 1


def test_auto_embed_false_is_keyword_only(store: DuckDBStore) -> None:
    store.store_memory(NewMemory(JOAO, "Secret zebra code", "fact", embed=False))
    assert run(store, "zebra", SearchMode.KEYWORD) == ["Secret zebra code"]
    assert run(store, "zebra", SearchMode.VECTOR) == []


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    words=st.lists(
        st.sampled_from(["delay", "refund", "gift", "atraso", "laptop", "coupon"]), min_size=1, max_size=4
    ),
    owners=st.lists(st.booleans(), min_size=1, max_size=8),
    mode=st.sampled_from(list(SearchMode)),
)
def test_results_never_include_another_contacts_memories(
    words: list[str], owners: list[bool], mode: SearchMode
) -> None:
    store = DuckDBStore(":memory:", make_embedder("offline"), clock=lambda: AS_OF)
    try:
        contacts = [str(uuid.uuid4()), str(uuid.uuid4())]
        mine = set()
        for i, first in enumerate(owners):
            owner = contacts[0 if first else 1]
            rec = store.store_memory(
                NewMemory(
                    owner, f"{' '.join(words)} note {i}", "fact", related=[RelatedRef("product", "shared-p")]
                )
            )
            if first:
                mine.add(rec.id)
        result = store.search(SearchQuery(contacts[0], " ".join(words), mode=mode, limit=100))
        assert {s.memory.id for s in result.memories} <= mine
        assert all(s.memory.contact_id == contacts[0] for s in result.memories)
    finally:
        store.close()


# -- over gRPC ------------------------------------------------------------------------------------


async def test_read_your_writes_over_grpc(client: ventros.MemoryClient) -> None:
    stored = await client.store_memory(
        contact_id=JOAO, content="Customer prefers communication after 2pm", memory_type="preference",
        metadata={"source": "agent_inference", "confidence": "0.89"},
    )  # fmt: skip
    assert stored.success and uuid.UUID(stored.memory_id)
    keyword = await client.search_memories(
        contact_id=JOAO, query="communication", mode=pb.SearchMode.KEYWORD_ONLY
    )
    vector = await client.search_memories(
        contact_id=JOAO, query="prefers talking after 2pm", mode=pb.SearchMode.VECTOR_ONLY
    )
    assert [m.id for m in keyword.memories] == [stored.memory_id]
    assert vector.memories[0].id == stored.memory_id


async def test_defaults_and_include_fields(client: ventros.MemoryClient, store: DuckDBStore) -> None:
    seed(store)
    for i in range(12):
        store.store_memory(NewMemory(JOAO, f"delivery note number {i}", "fact"))
    found = await client.search_memories(contact_id=JOAO, query="delivery")
    assert len(found.memories) == 10  # default limit
    assert found.total_count >= 13
    meta = found.metadata
    assert meta is not None and meta.vector_weight > 0 and meta.keyword_weight > 0 and meta.graph_weight > 0
    scores = [m.relevance_score for m in found.memories]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    first = found.memories[0]
    assert first.content and first.embedding == [] and first.created_at is not None
    assert found.search_latency_ms > 0

    slim = await client.search_memories(
        contact_id=JOAO, query="delivery", include_fields=["embedding"], limit=1
    )
    memory = slim.memories[0]
    assert memory.content == "" and memory.metadata == {} and memory.related == []
    assert len(memory.embedding) == store.embedder.dim
    assert memory.id and memory.memory_type and memory.relevance_score > 0


async def test_single_mode_weights_and_counts(client: ventros.MemoryClient, store: DuckDBStore) -> None:
    seed(store)
    found = await client.search_memories(
        contact_id=JOAO, query="delivery delay", mode=pb.SearchMode.KEYWORD_ONLY
    )
    assert found.metadata is not None
    assert (found.metadata.vector_weight, found.metadata.keyword_weight, found.metadata.graph_weight) == (
        0,
        1,
        0,
    )
    assert found.metadata.keyword_matches == 1 and found.metadata.vector_matches == 0
    assert found.total_count == 1


async def test_contact_without_memories_is_ok_and_empty(client: ventros.MemoryClient) -> None:
    found = await client.search_memories(contact_id=OTHER, query="anything")
    assert found.memories == [] and found.total_count == 0


async def test_store_creates_unknown_entities_and_edges(
    client: ventros.MemoryClient, store: DuckDBStore
) -> None:
    await client.store_memory(
        contact_id=JOAO, content="Asked about the new widget", memory_type="agent_insight",
        related=[pb.RelatedEntity(entity_type="product", entity_id="widget-9")], auto_embed=None,
    )  # fmt: skip
    related = await client.get_related_entities(entity_id="widget-9", entity_type="product")
    assert [r.entity.id for r in related.entities] == [JOAO]
    assert related.entities[0].path[0].relationship == "mentioned"
    found = await client.search_memories(contact_id=JOAO, query="widget", include_fields=["related"])
    assert found.memories[0].related[0].strength == pytest.approx(1.0)
