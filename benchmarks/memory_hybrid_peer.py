"""In-process hybrid search: our DuckDBStore next to LanceDB's hybrid query, on the same work.

    python -m benchmarks.memory_hybrid_peer                  # 100k memories, ~3 minutes
    python -m benchmarks.memory_hybrid_peer --size 20000     # quick

Both sides hold the same memories (benchmarks/memory_corpus.py, 20 per contact), the same
offline-embedder vectors, and answer the same (contact, query) pairs, in this process, no gRPC:

* ours HYBRID: ``store.search`` with the default weights: vector + BM25 + graph, fused;
* ours vector+keyword: the same with the graph weight at 0 (exactly LanceDB's two sources);
* LanceDB hybrid: ``table.search(query_type="hybrid")`` with a ``contact_id`` prefilter and
  its LinearCombinationReranker (a weighted score fusion like ours; its default RRF reranker
  is timed too), with a scalar (BTREE) index on ``contact_id``. LanceDB embeds nothing here: it gets the query vector, so the time we spend
  embedding the query (included in ours) is printed on its own line.

Each cell: p50 / p99 over ``--calls`` searches after a warm-up, and the ratio of p50s. The
load average is printed so a busy machine shows. LanceDB comes from benchmarks.memory_search's
peer loader (installed into a cache folder, never into the project's environment).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ventros_server.memory import import_jsonl, make_embedder, open_store  # noqa: E402
from ventros_server.memory.ranking import DEFAULT_WEIGHTS  # noqa: E402
from ventros_server.memory.store import FusionWeights, SearchMode, SearchQuery  # noqa: E402

from benchmarks.memory_corpus import contact_ids, jsonl_lines, memory_records  # noqa: E402
from benchmarks.memory_search import QUERIES, lancedb_module, pct  # noqa: E402


def timed(calls: list[tuple[str, str]], search: Callable[[str, str], object]) -> tuple[float, float]:
    for contact, query in calls[:20]:  # warm-up
        search(contact, query)
    timings = []
    for contact, query in calls:
        started = time.perf_counter()
        search(contact, query)
        timings.append(time.perf_counter() - started)
    return pct(timings, 0.5), pct(timings, 0.99)


def our_searches(path: str, size: int, contacts: list[str]) -> dict[str, Callable[[str, str], object]]:
    store = open_store(path)
    import_jsonl(store, jsonl_lines(size, contacts))
    no_graph = FusionWeights(DEFAULT_WEIGHTS.vector, DEFAULT_WEIGHTS.keyword, 0.0)

    def hybrid(contact: str, query: str) -> object:
        return store.search(SearchQuery(contact, query, mode=SearchMode.HYBRID))

    def vector_keyword(contact: str, query: str) -> object:
        store.weights = no_graph  # the same store, with the graph source switched off
        try:
            return store.search(SearchQuery(contact, query, mode=SearchMode.HYBRID))
        finally:
            store.weights = DEFAULT_WEIGHTS

    embedder = store.embedder
    return {
        "ours HYBRID (vector+BM25+graph)": hybrid,
        "ours vector+BM25": vector_keyword,
        "  of which: embedding the query": lambda _c, q: embedder.embed([q]),
    }


def lance_searches(workdir: str, size: int, contacts: list[str]) -> dict[str, Callable[[str, str], object]]:
    lancedb = lancedb_module()
    if lancedb is None:
        return {}
    import pyarrow as pa  # lancedb's own dependency
    from lancedb.rerankers import LinearCombinationReranker, RRFReranker

    embedder = make_embedder("offline")
    records = list(memory_records(size, contacts))
    texts = [str(r["content"]) for r in records]
    vectors = embedder.embed(texts)
    table = lancedb.connect(os.path.join(workdir, "lance")).create_table(
        "memories",
        pa.table(
            {
                "contact_id": [str(r["contact_id"]) for r in records],
                "content": texts,
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), embedder.dim),
            }
        ),
        mode="overwrite",
    )
    with warnings.catch_warnings():  # deprecated in 0.40 in favour of create_index(config=...)
        warnings.simplefilter("ignore")
        table.create_fts_index("content", replace=True)
        table.create_scalar_index("contact_id")  # its prefilter's best case: a BTREE on the scoping column
    query_vectors: dict[str, Any] = {q: embedder.embed([q])[0] for q in QUERIES}
    linear = LinearCombinationReranker(
        weight=DEFAULT_WEIGHTS.vector / (DEFAULT_WEIGHTS.vector + DEFAULT_WEIGHTS.keyword)
    )
    rrf = RRFReranker()

    def hybrid(reranker: Any) -> Callable[[str, str], object]:
        def run(contact: str, query: str) -> object:
            builder = table.search(query_type="hybrid").vector(query_vectors[query]).text(query)
            return (
                builder.where(f"contact_id = '{contact}'", prefilter=True)
                .limit(10)
                .rerank(reranker)
                .to_list()
            )

        return run

    return {"lancedb hybrid, linear combination": hybrid(linear), "lancedb hybrid, RRF": hybrid(rrf)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    print(f"reproduce: python -m benchmarks.memory_hybrid_peer --size {args.size} --calls {args.calls}")
    print(f"machine: {os.cpu_count()} cores; load average at start {os.getloadavg()[0]:.1f}")
    contacts = contact_ids(max(args.size // 20, 1))
    rng = random.Random(11)
    calls = [(rng.choice(contacts), rng.choice(QUERIES)) for _ in range(args.calls)]
    with tempfile.TemporaryDirectory() as workdir:
        searches = our_searches(os.path.join(workdir, "ours.duckdb"), args.size, contacts)
        searches.update(lance_searches(workdir, args.size, contacts))
        results = {name: timed(calls, search) for name, search in searches.items()}
    baseline = results.get("lancedb hybrid, linear combination")
    print(f"\n{args.size} memories, {len(contacts)} contacts; p50 / p99 ms in-process")
    print(f"{'search':<40}{'p50':>9}{'p99':>9}{'p50 vs lancedb linear':>24}")
    for name, (p50, p99) in results.items():
        ratio = f"{p50 / baseline[0]:.2f}x" if baseline else "n/a"
        print(f"{name:<40}{p50:>9.2f}{p99:>9.2f}{ratio:>24}")
    print(f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
