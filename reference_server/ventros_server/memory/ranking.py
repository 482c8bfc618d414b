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

from dataclasses import dataclass

import numpy as np

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


#: A source's matches: memory seqs (unique) and their scores in [0, 1], aligned.
Scores = tuple[np.ndarray, np.ndarray]
NO_SCORES: Scores = (np.empty(0, np.int64), np.empty(0, np.float64))


def normalise_keyword(seqs: np.ndarray, raw: np.ndarray, ceiling: float) -> Scores:
    if len(raw) == 0:
        return NO_SCORES
    scale = max(float(raw.max()), KEYWORD_CEILING_SHARE * ceiling, 1e-9)
    return seqs, np.minimum(raw / scale, 1.0)


@dataclass
class Fused:
    total: int  # memories some weighted source matched
    #: the best ``limit`` of them, best first (ties: higher seq first): (seq, fused score,
    #: the score of each weighted source that matched it)
    top: list[tuple[int, float, dict[str, float]]]


def fuse(weights: FusionWeights, vector: Scores, keyword: Scores, graph: Scores, limit: int) -> Fused:
    """Weighted fusion (module docstring) of every memory a weighted source matched, ranked.

    In numpy: a hot contact's vector source alone matches thousands of memories, and a Python
    loop over them cost more than the search (3.9 ms of ~8 ms, 10,000 memories, cProfile).
    """
    sources = [
        (name, weight, *_ascending(seqs, np.asarray(scores, np.float64)))
        for name, weight, (seqs, scores) in (
            ("vector", weights.vector, vector),
            ("keyword", weights.keyword, keyword),
            ("graph", weights.graph, graph),
        )
        if weight > 0 and len(seqs)
    ]
    if not sources:
        return Fused(0, [])
    # One source's seqs are already ascending and unique (np.unique would only copy them).
    every = sources[0][2] if len(sources) == 1 else np.unique(np.concatenate([s[2] for s in sources]))
    total = np.zeros(len(every))
    for _, weight, seqs, scores in sources:  # in this order, as a sum over the sources would
        total[np.searchsorted(every, seqs)] += weight * scores
    fused = np.clip(total / (weights.vector + weights.keyword + weights.graph), 0.0, 1.0)
    best = _best(every, fused, limit)
    top_seqs = every[best]
    top: list[tuple[int, float, dict[str, float]]] = [
        (seq, score, {}) for seq, score in zip(top_seqs.tolist(), fused[best].tolist(), strict=True)
    ]
    for name, _, seqs, scores in sources:  # each source's score of each top memory it matched
        at = np.minimum(np.searchsorted(seqs, top_seqs), len(seqs) - 1)
        for (_, _, parts), found, score in zip(
            top, (seqs[at] == top_seqs).tolist(), scores[at].tolist(), strict=True
        ):
            if found:
                parts[name] = score
    return Fused(len(every), top)


def _best(seqs: np.ndarray, scores: np.ndarray, limit: int) -> np.ndarray:
    """Positions of the ``limit`` best (score descending, then seq descending)."""
    if len(scores) > limit:
        threshold = np.partition(scores, len(scores) - limit)[len(scores) - limit]
        pool = np.flatnonzero(scores >= threshold)  # ties with the last kept included
    else:
        pool = np.arange(len(scores))
    order = np.lexsort((-seqs[pool], -scores[pool]))
    return pool[order][:limit]


def _ascending(seqs: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(seqs) < 2 or (seqs[1:] > seqs[:-1]).all():
        return seqs, scores
    order = np.argsort(seqs)
    return seqs[order], scores[order]
