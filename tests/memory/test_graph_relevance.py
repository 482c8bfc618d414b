"""GRAPH scoring's parts against their definitions: EdgeIndex.relevance (numpy) against
graph.best_paths (the walk GetRelatedEntities uses) on random graphs, and the entities a query
names (linked_entities.py) against the contract's rule written as a loop."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ventros_server.memory import DuckDBStore, graph, linked_entities, make_embedder, text
from ventros_server.memory.edge_index import EdgeIndex
from ventros_server.memory.store import EdgeRecord, Entity, NewMemory, RelatedRef

NODES = [f"n{i}" for i in range(8)]
edge = st.tuples(
    st.sampled_from(NODES),
    st.sampled_from(NODES),
    st.sampled_from(["purchased", "mentioned"]),
    st.sampled_from([0.0, 0.2, 0.45, 0.5, 0.7, 1.0]),
)


def index_of(edges: list[tuple[str, str, str, float]]) -> EdgeIndex:
    index = EdgeIndex()
    merged: dict[tuple[str, str, str], float] = {}
    for f, t, r, w in edges:  # the store merges a batch's duplicate keys before upserting
        merged[(f, t, r)] = max(w, merged.get((f, t, r), 0.0))
    index.upsert([EdgeRecord(f, t, r, w, None) for (f, t, r), w in merged.items()])
    return index


def codes(index: EdgeIndex, ids: list[str]) -> np.ndarray:
    return np.array([index.nodes.code.get(i, -1) for i in ids], dtype=np.int64)


@settings(max_examples=300, deadline=None)
@given(st.lists(edge, max_size=30), st.sampled_from(NODES))
def test_relevance_equals_the_best_path_walk(edges, start) -> None:
    index = index_of(edges)
    walked = graph.best_paths(start, lambda ids: index.fetch(ids, 10**6), 2)
    targets = [*NODES, "unknown"]
    got = index.relevance(start, codes(index, targets), decay=graph.DECAY, max_visited=graph.MAX_VISITED)
    expected = [walked[n].relevance if n in walked and n != start else 0.0 for n in targets]
    assert got.tolist() == pytest.approx(expected)


def test_depth_two_is_skipped_past_max_visited_like_the_walk() -> None:
    index = index_of([("c", "a", "r", 1.0), ("c", "b", "r", 1.0), ("a", "x", "r", 1.0)])
    assert index.relevance("c", codes(index, ["x"]), decay=0.5, max_visited=5).tolist() == [0.5]
    assert index.relevance("c", codes(index, ["x"]), decay=0.5, max_visited=1).tolist() == [0.0]
    assert graph.best_paths("c", lambda ids: index.fetch(ids, 100), 2)["x"].relevance == 0.5


def named_by_definition(query: str, entities: dict[str, str | None]) -> set[str]:
    """docs/contract.md GRAPH_ONLY rule 1, written out: the id is a token of the query (any
    case), or the folded name/title appears in the folded query as whole words."""
    if not query.strip():
        return set()
    tokens = {t.lower() for t in re.findall(r"[A-Za-z0-9_.:-]+", query)}
    folded = f" {text.fold(query)} "
    named = set()
    for entity_id, props in entities.items():
        parsed = json.loads(props) if props else {}
        labels = [text.fold(str(parsed.get(k, ""))) for k in ("name", "title")]
        if entity_id.lower() in tokens or any(label and f" {label} " in folded for label in labels):
            named.add(entity_id)
    return named


WORDS = ["Fone", "bluetooth", "Ação", "acao", "prod-1", "PROD-2", "x.y", "black", "friday", "é", "-", "!"]
phrase = st.lists(st.sampled_from(WORDS), max_size=4).map(" ".join)


@settings(max_examples=100, deadline=None)  # a store per example: ~45 ms each
@given(
    st.dictionaries(
        st.sampled_from(["prod-1", "prod-2", "Fone", "x.y", "cat:audio", "black"]),
        st.one_of(
            st.none(),
            st.fixed_dictionaries({"name": phrase}),
            st.fixed_dictionaries({"title": phrase, "name": phrase}),
        ),
        max_size=6,
    ),
    st.lists(st.sampled_from(WORDS), max_size=8).map(" ".join),
)
def test_linked_entities_name_what_the_definition_names(entities, query) -> None:
    store = DuckDBStore(":memory:", make_embedder("offline"))
    try:
        store.add_entities([Entity(i, "product", p or {}) for i, p in entities.items()])
        contact = "550e8400-e29b-41d4-a716-446655440000"
        store.store_memory(
            NewMemory(
                contact,
                "note",
                "fact",
                related=[RelatedRef("product", i, "mentioned", 1.0) for i in entities],
            )
        )
        links = store.contacts.view(contact).links
        linked = store.linked.of(contact, links)
        names = store.contacts.entities.names
        got = {names[c] for c in linked.codes[linked.named(query)].tolist()}
        props = {i: store.nodes.properties(i) for i in entities}
        assert got == named_by_definition(query, props)
    finally:
        store.close()


def test_linked_entities_cache_follows_new_links_and_property_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(linked_entities, "CACHE_MIN_ENTITIES", 1)
    store = DuckDBStore(":memory:", make_embedder("offline"))
    contact = "550e8400-e29b-41d4-a716-446655440000"
    link = RelatedRef("product", "prod-1", "mentioned", 1.0)
    store.store_memory(NewMemory(contact, "note", "fact", related=[link]))
    named = lambda q: store.linked.of(contact, store.contacts.view(contact).links).named(q)  # noqa: E731
    assert named("fone") == []
    store.add_entities([Entity("prod-1", "product", {"name": "Fone"})])  # a property change
    assert named("fone") == [0]
    store.store_memory(
        NewMemory(contact, "more", "fact", related=[RelatedRef("product", "prod-0", "mentioned", 1.0)])
    )
    assert named("PROD-0 and the fone") == [0, 1]  # the new link is resolved too
    store.close()
