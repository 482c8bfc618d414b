"""Keyword index: DuckDB's fts extension (full rebuild) against our incremental BM25 postings.

    python -m benchmarks.memory_keyword_index              # 10k and 100k memories, ~2 minutes
    python -m benchmarks.memory_keyword_index --sizes 10000

The contract requires read-your-writes: a memory is found by KEYWORD_ONLY as soon as
StoreMemory returns. DuckDB's fts index (PRAGMA create_fts_index) is a snapshot: rows written
after it are not in it until it is rebuilt in full. So with fts every StoreMemory would pay a
rebuild (or searches would miss fresh memories). The postings table is appended to inside the
StoreMemory transaction instead. Both answer the same BM25 query over the same rows; this
prints what each costs. The fts extension is loaded from the duckdb-extension-fts wheel by file
path (never INSTALLed from the network).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import duckdb_extension_fts

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ventros_server.memory import DuckDBStore, import_jsonl, make_embedder
from ventros_server.memory.store import NewMemory, SearchMode, SearchQuery

from benchmarks.memory_corpus import contact_ids, jsonl_lines, sentences

QUERIES = [
    "atraso na entrega",
    "delivery delay",
    "coupon discount",
    "premium plan",
    "presente dezembro",
    "refund",
]


def fts_extension_path() -> str:
    root = Path(duckdb_extension_fts.__file__).parent / "extensions"
    return str(next(root.glob("*/fts.duckdb_extension")))


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:8.2f}"


def run(size: int) -> list[str]:
    contacts = contact_ids(max(size // 20, 1))
    store = DuckDBStore(":memory:", make_embedder("offline"))
    import_jsonl(store, jsonl_lines(size, contacts))
    con = store._con
    rows = []

    # Incremental postings: StoreMemory without and with embedding, then a BM25 search.
    new = [
        NewMemory(contacts[i % 50], text, mtype, embed=False)
        for i, (mtype, text) in enumerate(sentences(200, seed=99))
    ]
    timings = []
    for memory in new:
        started = time.perf_counter()
        store.store_memory(memory)
        timings.append(time.perf_counter() - started)
    rows.append(f"{size:>8} {'postings: StoreMemory (no embedding)':<44}{ms(timings)}")
    searches = []
    for i in range(200):
        started = time.perf_counter()
        store.search(
            SearchQuery(contacts[i % len(contacts)], QUERIES[i % len(QUERIES)], mode=SearchMode.KEYWORD)
        )
        searches.append(time.perf_counter() - started)
    rows.append(f"{size:>8} {'postings: KEYWORD search of one contact':<44}{ms(searches)}")

    # DuckDB fts: a rebuild is what a write costs if searches must see it.
    con.execute(f"LOAD '{fts_extension_path()}'")
    rebuilds = []
    for _ in range(3):
        started = time.perf_counter()
        con.execute(
            "PRAGMA create_fts_index('memories', 'seq', 'content', stemmer='none', stopwords='english', "
            "strip_accents=1, lower=1, overwrite=1)"
        )
        rebuilds.append(time.perf_counter() - started)
    rows.append(f"{size:>8} {'fts: full index rebuild (= cost per write)':<44}{ms(rebuilds)}")
    fts_searches = []
    for i in range(200):
        started = time.perf_counter()
        con.execute(
            """SELECT seq, score FROM (SELECT seq, fts_main_memories.match_bm25(seq, ?) AS score
               FROM memories WHERE contact_id = ?) WHERE score IS NOT NULL ORDER BY score DESC LIMIT 10""",
            [QUERIES[i % len(QUERIES)], contacts[i % len(contacts)]],
        ).fetchall()
        fts_searches.append(time.perf_counter() - started)
    rows.append(f"{size:>8} {'fts: BM25 search of one contact':<44}{ms(fts_searches)}")
    store.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    args = parser.parse_args()
    print("reproduce: python -m benchmarks.memory_keyword_index --sizes " + " ".join(map(str, args.sizes)))
    print(f"{'memories':>8} {'operation':<44}{'p50 ms':>8}")
    for size in args.sizes:
        for row in run(size):
            print(row, flush=True)


if __name__ == "__main__":
    main()
