"""Bulk import rate: our JSONL importer next to LanceDB loading the same corpus, in one run.

    python -m benchmarks.memory_import                       # 200,000 memories, ~2 minutes
    python -m benchmarks.memory_import --sizes 1000000       # 1M (~5 GB of RAM for both sides)
    python -m benchmarks.memory_import --no-peer --runs 3    # ours only, three runs

The corpus (benchmarks/memory_corpus.py: ~100-character CRM memories in Portuguese and English,
20 per contact, 30% linked to a product entity) is written to a JSONL file first (not timed).

* **ours**: ``open_store(fresh DuckDB file)`` + ``import_jsonl(file)`` + ``close()`` with the
  default (offline) embedder: JSON parsing and validation, embedding, BM25 postings, entity
  links and edges, all durable (the close includes DuckDB's checkpoint). Since schema version
  4 the file does not hold the offline embedder's vectors (they are computed again when the
  store opens: docs/memory.md, "Storage and durability"); they are computed during the import
  and in the in-memory index when it returns. Cells: seconds of the import call, of the
  close, and memories per second open to close.
* **lancedb** (0.40, in-process, loaded by benchmarks.memory_search's peer loader): the same
  file read with ``pyarrow.json.read_json`` (C++, multi-threaded: the fastest reader its stack
  offers), the vectors computed by **our** offline embedder (LanceDB embeds nothing itself
  here: it is given the same vectors we compute), ``create_table`` (contact_id, content,
  memory_type, created_at, vector), then its full-text index on content
  (``create_fts_index``, the equivalent of our postings). Cells: seconds per step, and memories
  per second for all steps, and without the embedding step.

The load average is printed before each system runs, since the machine is shared.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ventros_server  # noqa: E402
from ventros_server.memory import DuckDBStore, import_jsonl, make_embedder, open_store  # noqa: E402

from benchmarks.memory_corpus import contact_ids, write_jsonl  # noqa: E402
from benchmarks.memory_search import lancedb_module  # noqa: E402


def write_corpus(path: str, size: int) -> None:
    write_jsonl(path, size, contact_ids(max(size // 20, 1)))


def ours(corpus: str, workdir: str, size: int) -> dict[str, float]:
    path = os.path.join(workdir, f"ours-{time.monotonic_ns()}.duckdb")
    started = time.perf_counter()
    # DuckDBStore is imported with the module, before this: loading modules is not the import.
    store: DuckDBStore = open_store(path)
    opened = time.perf_counter()
    report = import_jsonl(store, corpus)
    imported = time.perf_counter()
    store.close()
    closed = time.perf_counter()
    assert report.counts["memory"] == size and not report.errors, (report.counts, report.errors[:3])
    for suffix in ("", ".wal", ".hnsw", ".hnsw.json"):
        Path(path + suffix).unlink(missing_ok=True)
    return {
        "open": opened - started,
        "import": imported - opened,
        "close": closed - imported,
        "total": closed - started,
    }


def lancedb(corpus: str, workdir: str, size: int) -> dict[str, float] | None:
    module = lancedb_module()
    if module is None:
        return None
    import pyarrow as pa  # lancedb's own dependency
    import pyarrow.json as pa_json

    embedder = make_embedder("offline")
    t0 = time.perf_counter()
    records = pa_json.read_json(corpus)
    t1 = time.perf_counter()
    vectors = embedder.embed(records.column("content").to_pylist())
    t2 = time.perf_counter()
    table_data = pa.table(
        {
            "contact_id": records.column("contact_id"),
            "content": records.column("content"),
            "memory_type": records.column("memory_type"),
            "created_at": records.column("created_at"),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), embedder.dim),
        }
    )
    db = module.connect(os.path.join(workdir, f"lance-{time.monotonic_ns()}"))
    table = db.create_table("memories", table_data, mode="overwrite")
    t3 = time.perf_counter()
    with warnings.catch_warnings():  # "use create_index(config=FTS())": the same index builder
        warnings.simplefilter("ignore", DeprecationWarning)
        table.create_fts_index("content", replace=True)
    t4 = time.perf_counter()
    assert table.count_rows() == size
    return {"parse": t1 - t0, "embed": t2 - t1, "write": t3 - t2, "index": t4 - t3, "total": t4 - t0}


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.1f}/{five:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[200_000])
    parser.add_argument("--runs", type=int, default=1, help="runs of each system per size")
    parser.add_argument("--no-peer", action="store_true", help="skip LanceDB")
    args = parser.parse_args()
    print(
        "reproduce: python -m benchmarks.memory_import --sizes "
        + " ".join(map(str, args.sizes))
        + f" --runs {args.runs}"
        + (" --no-peer" if args.no_peer else "")
    )
    print(
        f"machine: {os.cpu_count()} cores; {load()} at start; ventros_server from {Path(ventros_server.__file__).parent}"
    )
    rows: list[str] = []
    header = (
        f"{'system':<9}{'memories':>10}{'parse s':>9}{'embed s':>9}{'write s':>9}{'index s':>9}"
        f"{'close s':>9}{'total s':>9}{'memories/s':>12}{'w/o embed/s':>13}  load"
    )
    with tempfile.TemporaryDirectory() as workdir:
        for size in args.sizes:
            corpus = os.path.join(workdir, f"corpus-{size}.jsonl")
            write_corpus(corpus, size)
            for _ in range(args.runs):
                before = load()
                gc.collect()
                r = ours(corpus, workdir, size)
                rows.append(
                    f"{'ventros':<9}{size:>10}{'':>9}{'':>9}{r['import']:>9.2f}{'':>9}{r['close']:>9.2f}"
                    f"{r['total']:>9.2f}{size / r['total']:>12,.0f}{'':>13}  {before}"
                )
                print(rows[-1], flush=True)
            if args.no_peer:
                continue
            for _ in range(args.runs):
                before = load()
                gc.collect()
                peer: Any = lancedb(corpus, workdir, size)
                if peer is None:
                    rows.append(f"{'lancedb':<9}{size:>10}  not available (see message above)")
                    break
                rows.append(
                    f"{'lancedb':<9}{size:>10}{peer['parse']:>9.2f}{peer['embed']:>9.2f}{peer['write']:>9.2f}"
                    f"{peer['index']:>9.2f}{'':>9}{peer['total']:>9.2f}{size / peer['total']:>12,.0f}"
                    f"{size / (peer['total'] - peer['embed']):>13,.0f}  {before}"
                )
                print(rows[-1], flush=True)
    print()
    print(header)
    for row in rows:
        print(row)
    print(
        "ventros 'write s' is the whole import_jsonl call (parse, validate, embed, postings, links,"
        " DuckDB), 'total s' open to close; its file holds no vectors (the offline embedder's are"
        " computed at open);\nlancedb is given the vectors of our offline embedder (its 'embed s'"
        " is our embedder) and stores them, 'index s' is its full-text index build."
    )


if __name__ == "__main__":
    main()
