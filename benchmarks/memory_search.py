"""MemoryService under load: search latency per mode over gRPC, StoreMemory rate, import rate, RSS.

    python -m benchmarks.memory_search                  # 10k and 100k memories, ~6 minutes
    python -m benchmarks.memory_search --sizes 10000    # quick
    python -m benchmarks.memory_search --million        # adds 1M memories (~15 minutes more, ~4 GB)
    python -m benchmarks.memory_search --no-peer        # skip LanceDB

For each size: a DuckDB file is filled with the JSONL importer from a JSONL file written first,
untimed (size - 400 synthetic CRM
memories, benchmarks/memory_corpus.py, 20 per contact except one hot contact holding --hot of them
(default 10,000, at most a quarter of the size); the 400 StoreMemory calls complete it), then a
server process (`ventros_server.memory` behind build_server) is started on 127.0.0.1 and this
process calls it through ventros.MemoryClient, one call at a time: p50 / p99 of the
client-observed latency per mode, searching random contacts (row "ventros") and the hot contact
(row "  hot"), then StoreMemory calls per second (sequential, and 8 in flight), and the server's
RSS.

Peer: LanceDB (embedded, in this process, no gRPC), same vectors and texts, vector search with a
contact_id prefilter (a BTREE scalar index on contact_id, its best case) and its full-text search. It is used if importable, else installed with
`pip install --target` into a cache folder (never into the project's environment); when that
fails the table says so.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ventros  # noqa: E402
from ventros import memory as pb  # noqa: E402
from ventros_server.memory import import_jsonl, open_store  # noqa: E402

from benchmarks.memory_corpus import contact_ids, owner, sentences, write_jsonl  # noqa: E402

PEER_DIR = Path(tempfile.gettempdir()) / "ventros-bench-peers"
QUERIES = [
    "atraso na entrega", "delivery delay complaint", "coupon discount", "premium plan upgrade",
    "presente dezembro", "refund damaged product", "prefers whatsapp", "Black Friday campaign",
]  # fmt: skip
STORES = 400
#: Untimed searches per mode before the timed ones. With 100 calls the p99 is the slowest call,
#: so without this a one-off first-call cost would be reported as the p99.
WARMUP = 5
MODES = [
    pb.SearchMode.HYBRID,
    pb.SearchMode.VECTOR_ONLY,
    pb.SearchMode.KEYWORD_ONLY,
    pb.SearchMode.GRAPH_ONLY,
]
SERVER = textwrap.dedent(
    """
    import asyncio, sys, time
    from ventros_server.memory import MemoryService, open_store
    from ventros_server.server import build_server, tune_gc

    async def main():
        started = time.perf_counter()
        store = open_store(sys.argv[1])
        print(f"open {time.perf_counter() - started:.2f}", flush=True)
        server, _ = build_server([MemoryService(store)])
        tune_gc()  # as `ventros serve` does once loaded (server.tune_gc)
        await server.start("127.0.0.1", 0)
        print(server._server.sockets[0].getsockname()[1], flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            store.close()

    asyncio.run(main())
    """
)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def hot_count(size: int, hot: int) -> int:
    return min(hot, size // 4)


def fill(path: str, size: int, hot: int, *, wait_hnsw: bool) -> tuple[list[str], float]:
    contacts = contact_ids(max(size // 20, 2))
    # The corpus goes into a file first (not timed), as `ventros memory import` reads one: the
    # import/s cell is then the importer's rate, not also the corpus generator's (1M, session
    # 9: 36k/s with the generator timed, 55k/s from the file).
    corpus = f"{path}.jsonl"
    write_jsonl(corpus, size, contacts, hot=hot)
    store = open_store(path)
    started = time.perf_counter()
    try:
        import_jsonl(store, corpus)
        seconds = time.perf_counter() - started
    finally:
        os.unlink(corpus)
    if wait_hnsw:
        # If an hnswlib build was started (since 341411c only a search with more candidates than
        # the exact switch point starts one), let it finish so that close() saves it and the
        # server loads it instead of rebuilding it while being timed. --during-build skips this.
        store.vectors.wait_for_hnsw()
    store.close()
    return contacts, size / seconds


async def measure(port: int, contacts: list[str], calls: int) -> dict[str, Any]:
    rng = random.Random(5)
    out: dict[str, Any] = {}
    async with ventros.MemoryClient(f"127.0.0.1:{port}") as client:
        for mode in MODES:
            for key, pick in (
                (mode.name, lambda: rng.choice(contacts[1:])),
                (f"hot {mode.name}", lambda: contacts[0]),
            ):
                for _ in range(WARMUP):  # first calls of a mode pay one-off costs (imports, caches)
                    await client.search_memories(
                        contact_id=pick(), query=rng.choice(QUERIES), mode=mode, timeout=10
                    )
                timings = []
                for _ in range(calls):
                    started = time.perf_counter()
                    await client.search_memories(
                        contact_id=pick(), query=rng.choice(QUERIES), mode=mode, timeout=10
                    )
                    timings.append(time.perf_counter() - started)
                out[key] = (pct(timings, 0.5), pct(timings, 0.99))
        texts = [text for _, text in sentences(400, seed=77)]
        started = time.perf_counter()
        for text in texts[:200]:
            await client.store_memory(
                contact_id=rng.choice(contacts), content=text, memory_type="fact", timeout=10
            )
        out["store_seq"] = 200 / (time.perf_counter() - started)
        started = time.perf_counter()
        for i in range(0, 200, 8):
            await asyncio.gather(
                *(
                    client.store_memory(
                        contact_id=rng.choice(contacts), content=t, memory_type="fact", timeout=10
                    )
                    for t in texts[200 + i : 208 + i]
                )
            )
        out["store_par"] = 200 / (time.perf_counter() - started)
    return out


def _read_port(stream: Any) -> tuple[int, float]:
    """The server's open time (line "open <seconds>") and port (the first line that is a
    number); anything else the server logs before them is skipped."""
    opened = float("nan")
    for line in stream:
        if line.startswith("open "):
            opened = float(line.split()[1])
        elif line.strip().isdigit():
            return int(line), opened
    raise RuntimeError("the memory server exited before listening")


def serve_and_measure(path: str, contacts: list[str], calls: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", SERVER, path], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        port, opened = _read_port(proc.stdout)
        result = asyncio.run(measure(port, contacts, calls))
        result["open"] = opened
        result["rss"] = rss_mb(proc.pid)
        return result
    finally:
        proc.terminate()
        proc.wait(timeout=60)


#: DuckDBStore steps timed by --in-process (those absent from a version are skipped).
STEPS = ["_vector_scores", "_keyword_scores", "_graph_scores", "_memories_by_seq"]
OPEN_STEPS = ["_load_vectors"]


def _timed(cls: Any, name: str, totals: dict[str, float]) -> None:
    original = getattr(cls, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            totals[name] = totals.get(name, 0.0) + time.perf_counter() - started

    setattr(cls, name, timed)


def in_process(path: str, contacts: list[str], calls: int) -> None:
    """Searches in this process, no gRPC: p50/p99 per mode and the mean time of each step;
    open time and index sizes. No hnswlib build runs (exact_max above the store's size)."""
    import gc

    from ventros_server.memory import DuckDBStore, make_embedder
    from ventros_server.memory.store import SearchMode, SearchQuery

    totals: dict[str, float] = {}
    for name in STEPS + OPEN_STEPS:
        if hasattr(DuckDBStore, name):
            _timed(DuckDBStore, name, totals)
    started = time.perf_counter()
    store = DuckDBStore(path, make_embedder("offline"), exact_max=10**12)
    opened = time.perf_counter() - started
    sizes = ""
    if hasattr(store, "contacts"):
        sizes = f"; contact index {store.contacts.nbytes() / 1e6:.1f} MB, edge index {store.edges.nbytes() / 1e6:.1f} MB"
    print(f"  in-process: open {opened:.2f} s (vectors {totals.pop('_load_vectors', 0):.2f} s){sizes}; "
          f"GC-tracked objects {len(gc.get_objects())}")  # fmt: skip
    rng = random.Random(5)
    for mode in (SearchMode.HYBRID, SearchMode.VECTOR, SearchMode.KEYWORD, SearchMode.GRAPH):
        for label, pick in (("", lambda: rng.choice(contacts[1:])), ("hot ", lambda: contacts[0])):
            for _ in range(WARMUP):
                store.search(SearchQuery(pick(), rng.choice(QUERIES), mode=mode))
            totals.clear()
            timings = []
            for _ in range(calls):
                started = time.perf_counter()
                store.search(SearchQuery(pick(), rng.choice(QUERIES), mode=mode))
                timings.append(time.perf_counter() - started)
            steps = " ".join(f"{k.strip('_')}={v / calls * 1000:.2f}" for k, v in totals.items())
            print(
                f"  in-process {label + mode.name:<12} p50 {pct(timings, 0.5):6.2f} p99 {pct(timings, 0.99):6.2f} ms | {steps}"
            )
    store.close()


def lancedb_module() -> Any:
    try:
        return importlib.import_module("lancedb")
    except ImportError:
        pass
    if not PEER_DIR.exists():
        print(f"(installing lancedb into {PEER_DIR} for the peer column...)", flush=True)
        done = subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--target", str(PEER_DIR), "lancedb"],
            capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        if done.returncode != 0:
            print(f"lancedb could not be installed: {done.stderr.strip()[-300:]}")
            return None
    sys.path.insert(0, str(PEER_DIR))
    try:
        return importlib.import_module("lancedb")
    except ImportError as exc:
        print(f"lancedb not importable: {exc}")
        return None


def lancedb_peer(size: int, hot: int, calls: int, workdir: str) -> dict[str, Any] | None:
    lancedb = lancedb_module()
    if lancedb is None:
        return None
    import pyarrow as pa  # lancedb's own dependency
    from ventros_server.memory import make_embedder

    contacts = contact_ids(max(size // 20, 2))
    embedder = make_embedder("offline")
    texts = [text for _, text in sentences(size, seed=1)]
    started = time.perf_counter()
    vectors = embedder.embed(texts)
    owners = [owner(i, size, contacts, hot) for i in range(size)]
    table_data = pa.table(
        {
            "contact_id": owners,
            "content": texts,
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), embedder.dim),
        }
    )
    db = lancedb.connect(os.path.join(workdir, "lance"))
    table = db.create_table("memories", table_data, mode="overwrite")
    with warnings.catch_warnings():  # deprecated in 0.40 in favour of create_index(config=...)
        warnings.simplefilter("ignore")
        table.create_fts_index("content", replace=True)
        table.create_scalar_index("contact_id")  # its prefilter's best case: a BTREE on the scoping column
    load_rate = size / (time.perf_counter() - started)
    rng = random.Random(5)
    out: dict[str, Any] = {"import": load_rate}
    for prefix, pick in (("", lambda: rng.choice(contacts[1:])), ("hot ", lambda: contacts[0])):
        vec, fts = [], []
        for _ in range(calls):
            contact, query = pick(), rng.choice(QUERIES)
            t0 = time.perf_counter()
            q = embedder.embed([query])[0]
            table.search(q).where(f"contact_id = '{contact}'", prefilter=True).limit(10).to_list()
            t1 = time.perf_counter()
            table.search(query, query_type="fts").where(f"contact_id = '{contact}'", prefilter=True).limit(
                10
            ).to_list()
            t2 = time.perf_counter()
            vec.append(t1 - t0)
            fts.append(t2 - t1)
        out[prefix + "VECTOR_ONLY"] = (pct(vec, 0.5), pct(vec, 0.99))
        out[prefix + "KEYWORD_ONLY"] = (pct(fts, 0.5), pct(fts, 0.99))
    out["rss"] = rss_mb(os.getpid())
    return out


def hot_row(label: str, result: dict[str, Any]) -> str:
    cells = "".join(
        f"{result['hot ' + m.name][0]:>9.1f} /{result['hot ' + m.name][1]:>7.1f} ms"
        if "hot " + m.name in result
        else f"{'n/a':>20}"
        for m in MODES
    )
    return f"{label:<19}{'':>10}{cells}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--million", action="store_true", help="add a 1,000,000-memory run")
    parser.add_argument("--calls", type=int, default=200, help="searches per mode")
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument(
        "--hot", type=int, default=10_000, help="memories of the hot contact (at most size / 4)"
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="also time searches in this process (no gRPC), step by step, on a copy of the store",
    )
    parser.add_argument(
        "--during-build",
        action="store_true",
        help="do not wait for the hnswlib build after the import (searches then race a rebuild)",
    )
    args = parser.parse_args()
    sizes = args.sizes + ([1_000_000] if args.million else [])
    print("reproduce: python -m benchmarks.memory_search --sizes " + " ".join(map(str, args.sizes))
          + (" --million" if args.million else "") + (" --no-peer" if args.no_peer else "")
          + (" --during-build" if args.during_build else "") + (" --in-process" if args.in_process else "")
          + f" --hot {args.hot} --calls {args.calls}")  # fmt: skip
    print(f"machine: {os.cpu_count()} cores; load average at start {os.getloadavg()[0]:.1f}")
    header = f"{'system':<10}{'memories':>9}{'import/s':>10}" + "".join(f"{m.name:>20}" for m in MODES)
    header += f"{'store/s seq':>12}{'store/s x8':>11}{'RSS MB':>8}{'open s':>8}"
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for size in sizes:
            path = os.path.join(workdir, f"m{size}.duckdb")
            # The 400 StoreMemory calls bring the store to exactly `size`: crossing the
            # exact/hnswlib switch (100k) would start the background hnswlib build mid-run.
            hot = hot_count(size, args.hot)
            contacts, rate = fill(path, size - STORES, hot, wait_hnsw=not args.during_build)
            if args.in_process:
                copy = os.path.join(workdir, "in-process.duckdb")
                shutil.copy(path, copy)
                in_process(copy, contacts, args.calls)
            r = serve_and_measure(path, contacts, args.calls)
            cells = "".join(f"{r[m.name][0]:>9.1f} /{r[m.name][1]:>7.1f} ms" for m in MODES)
            rows.append(
                f"{'ventros':<10}{size:>9}{rate:>10.0f}{cells}{r['store_seq']:>12.0f}{r['store_par']:>11.0f}{r['rss']:>8.0f}{r['open']:>8.2f}"
            )
            print(rows[-1], flush=True)
            rows.append(hot_row(f"  hot {hot}", r))
            print(rows[-1], flush=True)
            if not args.no_peer:
                peer = lancedb_peer(size, hot, args.calls, workdir)
                if peer is None:
                    rows.append(f"{'lancedb':<10}{size:>9}  not available (see message above)")
                else:
                    cells = "".join(
                        f"{peer[m.name][0]:>9.1f} /{peer[m.name][1]:>7.1f} ms"
                        if m.name in peer
                        else f"{'n/a':>20}"
                        for m in MODES
                    )
                    rows.append(
                        f"{'lancedb':<10}{size:>9}{peer['import']:>10.0f}{cells}{'n/a':>12}{'n/a':>11}{peer['rss']:>8.0f}"
                    )
                    rows.append(hot_row(f"  hot {hot}", peer))
                print(rows[-1], flush=True)
    print("\nsearch cells: p50 / p99, client-observed over gRPC (ventros) or in-process (lancedb)")
    print(header)
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
