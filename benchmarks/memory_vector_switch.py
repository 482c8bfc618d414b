"""Where exact cosine stops beating hnswlib: the switch point of vectors.VectorIndex.

    python -m benchmarks.memory_vector_switch              # 100k vectors, ~2 minutes
    python -m benchmarks.memory_vector_switch --total 200000

A search is scoped to one contact, i.e. to a candidate set of n vectors among all of them.
Exact: numpy ``matrix[candidates] @ q`` then top-10 (what the store does up to the switch).
hnswlib: one graph over all vectors, queried with a filter that admits only the candidates
(ef = max(2k, 100)). For each n this prints the median latency of both and hnswlib's recall@10
against the exact answer (tie-aware: a result as similar as the exact 10th counts as found). Vectors are real offline-embedder vectors of synthetic CRM sentences.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ventros_server.memory import make_embedder
from ventros_server.memory.vectors import VectorIndex

from benchmarks.memory_corpus import sentences

SIZES = [100, 1_000, 5_000, 10_000, 20_000, 50_000, 100_000]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--total", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=30)
    args = parser.parse_args()
    print(f"reproduce: python -m benchmarks.memory_vector_switch --total {args.total}")
    embedder = make_embedder("offline")
    texts = [text for _, text in sentences(args.total, seed=3)]
    vectors = embedder.embed(texts)
    queries = embedder.embed([text for _, text in sentences(args.queries, seed=4)])
    index = VectorIndex(embedder.dim, embedder_name=embedder.name, exact_max=0)
    index.add(np.arange(args.total), vectors)
    started = time.perf_counter()
    index.build_hnsw()
    print(f"hnswlib build over {args.total} vectors: {time.perf_counter() - started:.1f} s")
    rng = np.random.default_rng(0)
    print(f"{'candidates':>10} {'exact p50 ms':>13} {'hnsw p50 ms':>12} {'hnsw recall@10':>15}")
    for n in [s for s in SIZES if s <= args.total]:
        exact_times, hnsw_times, recalls = [], [], []
        for q in queries:
            candidates = np.sort(rng.choice(args.total, size=n, replace=False))
            t0 = time.perf_counter()
            index.exact_max = n  # forces the exact path
            exact, exact_sims = index.top_k(q, candidates, 10)
            t1 = time.perf_counter()
            index.exact_max = 0  # forces the hnsw path
            _approx, approx_sims = index.top_k(q, candidates, 10)
            t2 = time.perf_counter()
            exact_times.append(t1 - t0)
            hnsw_times.append(t2 - t1)
            # Tie-aware recall: template sentences make many neighbours exactly as similar as the
            # 10th; any of them is a correct answer.
            threshold = exact_sims[-1] - 1e-6
            recalls.append(float(np.sum(approx_sims >= threshold)) / max(len(exact), 1))
        print(
            f"{n:>10} {statistics.median(exact_times) * 1000:>13.2f} {statistics.median(hnsw_times) * 1000:>12.2f}"
            f" {statistics.mean(recalls):>15.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
