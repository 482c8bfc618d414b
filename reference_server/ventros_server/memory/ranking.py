"""Score normalisation and weighted fusion of the three sources (vector, keyword, graph).

Each source gives a score in [0, 1] per memory it matched:

* vector:  cosine similarity, clipped at 0 (vectors are L2-normalised);
* keyword: BM25 divided by the best BM25 among the contact's matches, but never by less than
           half the query's BM25 ceiling (sum over query terms of idf * (k1 + 1)). The best
           keyword hit scores 1.0 when it is a real match, while a hit on one rare-ish word of a
           long query is not inflated to 1.0;
* graph:   see graph_scores in duckdb_store (link strength x entity relevance).

HYBRID = (w_v * vector + w_k * keyword + w_g * graph) / (w_v + w_k + w_g), a source that did
not match a memory contributing 0. This is a weighted *score* fusion (the scores keep their
magnitude), not reciprocal-rank fusion, which throws away how much better the first hit is.
In a single-source mode that source weighs 1.0 and the others 0.
"""

from __future__ import annotations

from .store import FusionWeights, SearchMode

#: Tuned on benchmarks/retrieval_eval.py (see docs/memory.md for the figures).
DEFAULT_WEIGHTS = FusionWeights(vector=0.55, keyword=0.35, graph=0.10)

BM25_K1 = 1.2
BM25_B = 0.75
#: The keyword normaliser is max(best score, KEYWORD_CEILING_SHARE * ceiling).
KEYWORD_CEILING_SHARE = 0.5


def mode_weights(mode: SearchMode, hybrid: FusionWeights) -> FusionWeights:
    if mode is SearchMode.VECTOR:
        return FusionWeights(1.0, 0.0, 0.0)
    if mode is SearchMode.KEYWORD:
        return FusionWeights(0.0, 1.0, 0.0)
    if mode is SearchMode.GRAPH:
        return FusionWeights(0.0, 0.0, 1.0)
    return hybrid


def normalise_keyword(raw: dict[int, float], ceiling: float) -> dict[int, float]:
    if not raw:
        return {}
    scale = max(max(raw.values()), KEYWORD_CEILING_SHARE * ceiling, 1e-9)
    return {seq: min(score / scale, 1.0) for seq, score in raw.items()}


def fuse(
    weights: FusionWeights,
    vector: dict[int, float],
    keyword: dict[int, float],
    graph: dict[int, float],
) -> dict[int, tuple[float, dict[str, float]]]:
    """seq -> (fused score, per-source scores) for every memory some weighted source matched."""
    total = weights.vector + weights.keyword + weights.graph
    sources = [
        ("vector", weights.vector, vector),
        ("keyword", weights.keyword, keyword),
        ("graph", weights.graph, graph),
    ]
    fused: dict[int, tuple[float, dict[str, float]]] = {}
    seqs: set[int] = set()
    for _, weight, scores in sources:
        if weight > 0:
            seqs.update(scores)
    for seq in seqs:
        parts = {name: scores[seq] for name, weight, scores in sources if weight > 0 and seq in scores}
        score = sum(weight * scores.get(seq, 0.0) for _, weight, scores in sources) / total
        fused[seq] = (min(max(score, 0.0), 1.0), parts)
    return fused
