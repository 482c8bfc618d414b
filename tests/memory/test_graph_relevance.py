"""EdgeIndex.relevance (numpy, what GRAPH scoring uses) against graph.best_paths (the walk
GetRelatedEntities uses), on random graphs: the same relevance for every node."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ventros_server.memory import graph
from ventros_server.memory.edge_index import EdgeIndex
from ventros_server.memory.store import EdgeRecord

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


@settings(max_examples=300, deadline=None)
@given(st.lists(edge, max_size=30), st.sampled_from(NODES))
def test_relevance_equals_the_best_path_walk(edges, start) -> None:
    index = index_of(edges)
    walked = graph.best_paths(start, lambda ids: index.fetch(ids, 10**6), 2)
    targets = [*NODES, "unknown"]
    got = index.relevance(start, targets, decay=graph.DECAY, max_visited=graph.MAX_VISITED)
    expected = [walked[n].relevance if n in walked and n != start else 0.0 for n in targets]
    assert got.tolist() == pytest.approx(expected)


def test_depth_two_is_skipped_past_max_visited_like_the_walk() -> None:
    index = index_of([("c", "a", "r", 1.0), ("c", "b", "r", 1.0), ("a", "x", "r", 1.0)])
    assert index.relevance("c", ["x"], decay=0.5, max_visited=5).tolist() == [0.5]
    assert index.relevance("c", ["x"], decay=0.5, max_visited=1).tolist() == [0.0]
    assert graph.best_paths("c", lambda ids: index.fetch(ids, 100), 2)["x"].relevance == 0.5
