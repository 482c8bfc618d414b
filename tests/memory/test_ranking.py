"""ranking.fuse (numpy) against the definition written as a plain loop over dicts."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from ventros_server.memory import ranking
from ventros_server.memory.store import FusionWeights

# Few distinct values, so equal fused scores (ties) are common.
score = st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.75, 1.0])
source = st.dictionaries(st.integers(0, 60), score, max_size=40)
weight = st.sampled_from([0.0, 0.1, 0.35, 0.55, 1.0])


def reference(weights: FusionWeights, sources: dict[str, dict[int, float]], limit: int):
    named = [("vector", weights.vector), ("keyword", weights.keyword), ("graph", weights.graph)]
    total = weights.vector + weights.keyword + weights.graph
    seqs = {seq for name, w in named if w > 0 for seq in sources[name]}
    fused = {}
    for seq in seqs:
        parts = {name: sources[name][seq] for name, w in named if w > 0 and seq in sources[name]}
        value = sum(w * sources[name].get(seq, 0.0) for name, w in named) / total
        fused[seq] = (min(max(value, 0.0), 1.0), parts)
    ranked = sorted(fused.items(), key=lambda item: (-item[1][0], -item[0]))[:limit]
    return len(fused), [(seq, value, parts) for seq, (value, parts) in ranked]


def as_scores(scores: dict[int, float]) -> ranking.Scores:
    items = list(scores.items())  # insertion order: not necessarily ascending
    return np.array([s for s, _ in items], np.int64), np.array([v for _, v in items], np.float64)


@settings(max_examples=300, deadline=None)
@given(source, source, source, weight, weight, weight, st.integers(1, 30))
def test_fuse_matches_the_definition(vector, keyword, graph, wv, wk, wg, limit) -> None:
    weights = FusionWeights(wv, wk, wg + (0.1 if wv + wk + wg == 0 else 0.0))
    fused = ranking.fuse(weights, as_scores(vector), as_scores(keyword), as_scores(graph), limit)
    total, top = reference(weights, {"vector": vector, "keyword": keyword, "graph": graph}, limit)
    assert fused.total == total
    assert fused.top == top


def test_normalise_keyword_divides_by_the_best_or_half_the_ceiling() -> None:
    seqs = np.array([3, 5], np.int64)
    _, strong = ranking.normalise_keyword(seqs, np.array([2.0, 4.0]), ceiling=6.0)
    assert strong.tolist() == [0.5, 1.0]
    _, weak = ranking.normalise_keyword(seqs, np.array([1.0, 2.0]), ceiling=10.0)
    assert weak.tolist() == [0.2, 0.4]  # the best hit covers little of a long query
