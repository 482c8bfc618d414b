"""MemoryStore on one DuckDB file, with an in-memory vector index derived from it.

Durability: everything a memory is made of (row, vector bytes, keyword postings, entity links,
new entities, contact->entity edges) is written in one DuckDB transaction; DuckDB syncs its
write-ahead log on COMMIT, so an acknowledged StoreMemory survives kill -9. The vector index
(vectors.py) is updated after the commit and rebuilt/caught up from the database on open;
so are the per-contact search index (contact_index.py: a contact's memories, postings and links)
and the edge index (edge_index.py), which is what a search reads instead of scanning tables.

Keyword search is BM25 over a postings table maintained inside that same transaction (so a
memory is searchable the moment StoreMemory returns). DuckDB's fts extension was measured as
the alternative; its index must be rebuilt in full after writes (docs/memory.md,
benchmarks/memory_keyword_index.py).

Concurrency: one connection guarded by one lock; the gRPC service calls in from worker threads.
A DuckDB file can be opened by one process at a time.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import logging
import math
import os
import sys
import threading
import types
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from ..heap import release_free_heap
from . import churn, graph, ranking, schema, text
from .batch import NO_TIME, MemoryBatch, base64_rows, embed_batch, from_micros, micros
from .contact_index import ContactIndex, ContactView, NewRows
from .edge_index import EdgeIndex
from .embedders import Embedder, recomputable
from .linked_entities import LinkedEntities
from .memory_rows import MemoryRows
from .node_index import MESSAGES, PROFILE, NodeIndex
from .store import (
    Contact,
    ContactContext,
    ContactStats,
    EdgeRecord,
    EmbedderMismatchError,
    Entity,
    FusionWeights,
    Graph,
    MemoryRecord,
    MessageRecord,
    NewMemory,
    Purchase,
    RelatedRef,
    RelatedResult,
    ScoredMemory,
    SearchQuery,
    SearchResult,
)
from .vectors import DEFAULT_EXACT_MAX, VectorIndex

log = logging.getLogger("ventros.memory.store")

#: Memories per query when loading the vectors at open (~12 MiB of BLOBs at 384 dimensions).
_LOAD_CHUNK = 8_192
#: Memories per query and per embedding task when computing vectors at open.
_COMPUTE_CHUNK = 32_768
#: DuckDB's checkpoint_threshold for the store (see DuckDBStore.__init__).
CHECKPOINT_THRESHOLD = "4MB"
#: What _release_cached_memory leaves of DuckDB's cache of file blocks (and its threshold).
_EVICT_MARGIN = 1024 * 1024

_PANDAS_MISSING = importlib.util.find_spec("pandas") is None


@functools.cache
def _prime_duckdb_without_pandas() -> None:
    """Give DuckDB's import cache a stand-in "pandas" once per process, when pandas is missing.

    Converting Python objects (a registered numpy object column, statement parameters),
    DuckDB 1.5 compares values with pandas.NA and pandas.NaT (duckdb/duckdb#18640) and imports
    pandas for that. A failed import is not cached, so it was tried again, ~1.6 times per
    scanned string: each try searched sys.path (registering 20k rows: 1.35 s instead of 0.09
    s), and with pandas marked absent in sys.modules around each call (what the store did
    before) it still cost 9.7 ms to insert 5,000 strings against 1.8 ms once DuckDB has a
    module (`/tmp` timings). The stand-in's NA and NaT are objects no value is (None still
    becomes NULL); DataFrame and Series are classes nothing is an instance of. It is in
    sys.modules only while DuckDB converts one parameter, which loads it into DuckDB's cache
    (global to the process) for good; nothing else sees it (a lasting marker broke pyarrow).
    Then an import of memories tries none (tests/memory/test_import_write_path.py counts), nor
    did demo data, the fixtures import, StoreMemory, searches and context calls (`/tmp` probe)."""
    if not _PANDAS_MISSING or "pandas" in sys.modules:
        return
    stand_in = types.ModuleType("pandas", "ventros_server: pandas is not installed (a stand-in for DuckDB)")
    stand_in.NA, stand_in.NaT = object(), object()  # type: ignore[attr-defined]
    stand_in.DataFrame = type("DataFrame", (), {})  # type: ignore[attr-defined]
    stand_in.Series = type("Series", (), {})  # type: ignore[attr-defined]
    sys.modules["pandas"] = stand_in
    try:
        duckdb.connect(":memory:").execute("SELECT ?", ["a str converts through the import cache"]).fetchall()
    finally:
        if sys.modules.get("pandas") is stand_in:
            del sys.modules["pandas"]


#: Rows per transaction in bulk loads: big enough to amortise, small enough to keep memory flat.
BULK_CHUNK = 20_000
#: Memories per transaction in a bulk load (`DuckDBStore.bulk_load`): many of DuckDB's row
#: groups (122,880 rows), so that the COMMIT writes the new rows straight into the file, and
#: bounded, since DuckDB holds an open group's new blocks in memory until then (+1.5 GiB at 1M).
BULK_GROUP_ROWS = 1 << 20
CONTEXT_GRAPH_DEPTH = 2
CONTEXT_GRAPH_MAX_NODES = 200
CONTEXT_GRAPH_MAX_EDGES = 500
#: Maximum number of edges read around one frontier of a traversal (hub protection).
EDGE_FETCH_LIMIT = 50_000
#: In GRAPH scoring, an entity reached through the contact's neighbourhood (not named by the
#: query) counts this much relative to one the query names.
NEIGHBOURHOOD_FACTOR = 0.5


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _naive(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


#: Up to this many rows a batch is sent as a VALUES list, above as a numpy scan (see _rows).
_VALUES_MAX_ROWS = 64
#: Stands for "no time" in numpy timestamp columns (they have no None); turned back into NULL.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _now() -> datetime:
    return datetime.now(UTC)


def _objects(values: Sequence[Any]) -> np.ndarray:
    """A numpy object column of strings (DuckDB scans a dict of numpy arrays as a table).

    Not a fixed-width unicode array: DuckDB runs np.unique over those at registration, so
    _register turns them back into objects; making one first only to convert it was work
    for nothing."""
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


#: A registered string column with at most this many distinct values goes in as codes (_rows).
_CODED_MAX = 64


def _few_values(column: np.ndarray) -> tuple[np.ndarray, list[str | None]] | None:
    """(int32 codes, the distinct values) of a column of strings (or None) with at most
    _CODED_MAX distinct values among at least 4x as many rows; None for any other column.
    A look at its first values rules out most columns (ids, texts) before hashing them all."""
    if column.dtype != object or len(column) < 4 * _CODED_MAX:
        return None
    values = column.tolist()
    if len(set(values[: 4 * _CODED_MAX])) > _CODED_MAX:
        return None
    distinct = dict.fromkeys(values)
    if len(distinct) > _CODED_MAX or not all(v is None or type(v) is str for v in distinct):
        return None
    index = {v: i for i, v in enumerate(distinct)}
    return np.fromiter(map(index.__getitem__, values), dtype=np.int32, count=len(values)), list(distinct)


#: Values sampled to type a registered object column known to hold one type (see _register).
_SAMPLE_UNIFORM = 1


def _one_type(column: np.ndarray) -> bool:
    """Whether ``column`` is not an object column, or holds only str or only bytes (no None)."""
    if column.dtype != object:
        return True
    kinds = set(map(type, column))
    return kinds == {str} or kinds == {bytes}


def _timestamps(values: Iterable[datetime]) -> np.ndarray:
    return np.array([_naive(v) for v in values], dtype="datetime64[us]")


class DuckDBStore:
    def __init__(
        self,
        path: str,
        embedder: Embedder,
        *,
        weights: FusionWeights = ranking.DEFAULT_WEIGHTS,
        vector_min_similarity: float = 0.1,
        exact_max: int = DEFAULT_EXACT_MAX,
        clock: Callable[[], datetime] = _now,
        reembed: bool = False,
    ) -> None:
        self.path = path
        self.embedder = embedder
        self.weights = weights
        self.vector_min_similarity = vector_min_similarity
        self.clock = clock
        self._lock = threading.RLock()
        _prime_duckdb_without_pandas()
        self._con = duckdb.connect(path)
        # DuckDB 1.5's late-materialization rewrite of ORDER BY ... LIMIT keeps ~3 KB of native
        # memory per query until the database closes: a long-running server grew by it
        # (benchmarks/duckdb_query_growth.py: 3,034 -> 1 byte per query with it disabled).
        self._con.execute("SET disabled_optimizers = 'late_materialization'")
        # DuckDB draws a progress bar on stdout for queries over ~2 s (opening a 1M-memory store
        # does), which would corrupt `--json` output and anything reading the process's stdout.
        self._con.execute("SET enable_progress_bar = false")
        # Rows committed since the last checkpoint live in DuckDB's memory as well as in its
        # log, until the first COMMIT after the log passes this size folds them into the file.
        # DuckDB's default, 16 MB, let a server writing memories hold up to ~16 MiB of them;
        # 4 MB bounds that at a few MiB for the same write rate (measured: 12k StoreMemory,
        # 278 vs 288 writes/s, in-memory table 12.8 vs 7.2 MiB at the end).
        self._con.execute(f"SET checkpoint_threshold = '{CHECKPOINT_THRESHOLD}'")
        self._closed = False
        self._wal = None if path == ":memory:" else Path(f"{path}.wal")
        self._wal_size = 0
        self._group_rows: int | None = None  # memories written in the open bulk-load group
        try:
            schema.migrate(self._con, where=path)
            self._check_embedder(reembed)
            self._exact_max = exact_max
            self._load_indexes()
            if self._wal is not None:  # rows replayed from the log (after a crash) go to the file
                self._con.execute("CHECKPOINT")
            self._release_cached_memory()
        except Exception:
            self._con.close()
            raise

    # -- opening --------------------------------------------------------------------------------

    def _load_indexes(self) -> None:
        """The in-memory search indexes, from what the file holds (at open, and after a bulk
        load's open group of writes was rolled back)."""
        sidecar = None if self.path == ":memory:" else Path(f"{self.path}.hnsw")
        self.vectors = VectorIndex(
            self.embedder.dim, embedder_name=self.embedder.name, sidecar=sidecar, exact_max=self._exact_max
        )
        self._next_seq = self._scalar("SELECT coalesce(max(seq) + 1, 0) FROM memories")
        self.corpus = CorpusStats()
        self.corpus.load(self._con)
        self.contacts = ContactIndex()
        self.contacts.load(self._con)
        self.edges = EdgeIndex()
        self.edges.load(self._con)
        self.rows = MemoryRows()
        self.rows.load(self._con)
        self.nodes = NodeIndex(self._lock)
        self.nodes.load(self._con)
        self.linked = LinkedEntities(self.contacts, self.edges, self.nodes)
        self._load_vectors()

    def _scalar(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
        row = self._con.execute(sql, params if isinstance(params, dict) else list(params)).fetchone()
        return row[0] if row else None

    def _check_embedder(self, reembed: bool) -> None:
        info = dict(self._con.execute("SELECT key, value FROM store_info").fetchall())
        name, dim = info.get("embedder_name"), info.get("embedder_dim")
        ours = (self.embedder.name, str(self.embedder.dim))
        if name is None:
            self._record_embedder()
        elif (name, dim) != ours:
            if not reembed:
                raise EmbedderMismatchError(
                    f"the memory database {self.path} holds vectors from embedder {name!r} "
                    f"(dim {dim}), but it was opened with {ours[0]!r} (dim {ours[1]}); vectors of "
                    f"two embedders cannot be compared. Open it with the embedder it was built "
                    f"with ({name!r}), or re-embed every memory with the new one: "
                    f"open_store(path, embedder=..., reembed=True) (CLI: ventros serve --reembed)."
                )
            self._reembed_all()

    def _record_embedder(self) -> None:
        self._con.execute(
            "INSERT OR REPLACE INTO store_info VALUES ('embedder_name', ?), ('embedder_dim', ?)",
            [self.embedder.name, str(self.embedder.dim)],
        )

    def _reembed_all(self) -> None:
        log.warning("re-embedding every memory of %s with %s", self.path, self.embedder.name)
        self._con.execute("BEGIN TRANSACTION")
        try:
            if recomputable(self.embedder):  # computed when the store opens, from now on
                self._con.execute("UPDATE memories SET embedding = NULL WHERE embedded")
            else:
                self._store_every_vector()
            self._record_embedder()
            self._con.execute("COMMIT")
        except Exception:
            self._con.execute("ROLLBACK")
            raise
        if self.path != ":memory:":
            for suffix in (".hnsw", ".hnsw.json"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    def _store_every_vector(self) -> None:
        """Embed every memory that has a vector and write the bytes into the file."""
        rows = self._con.execute("SELECT seq, content FROM memories WHERE embedded").fetchall()
        for start in range(0, len(rows), BULK_CHUNK):
            chunk = rows[start : start + BULK_CHUNK]
            vectors = self.embedder.embed([content for _, content in chunk])
            batch = {"seq": [s for s, _ in chunk], "b64": base64_rows(vectors, np.ones(len(chunk), bool))}
            with self._rows("b", batch) as (source, params):
                self._con.execute(
                    f"UPDATE memories SET embedding = from_base64(b.b64) FROM {source} WHERE memories.seq = b.seq",
                    params,
                )

    def _load_vectors(self) -> None:
        self.vectors.reserve(self._next_seq)  # sized once, not grown (and copied) per range
        self._load_stored_vectors()
        self._compute_vectors()

    def _load_stored_vectors(self) -> None:
        # In ranges of seq, one query each: a single query materialises every BLOB of the table
        # in DuckDB before the first fetch (a 14k-memory store: +30 MiB at open that stayed
        # resident; at 1M, gigabytes). Rows are stored in seq order, so each range reads only
        # its own row groups.
        for low in range(0, self._next_seq, _LOAD_CHUNK):
            rows = self._con.execute(
                "SELECT seq, embedding FROM memories WHERE seq >= ? AND seq < ? AND embedding IS NOT NULL",
                [low, low + _LOAD_CHUNK],
            ).fetchall()
            if rows:
                seqs = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
                flat = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32)
                self.vectors.add(seqs, flat.reshape(len(rows), self.embedder.dim))

    def _compute_vectors(self) -> None:
        """The vectors the file does not hold (a recomputable embedder's), from the contents
        the memory rows hold (loaded just before).

        Embedded on threads: the offline embedder's numpy work runs outside the GIL (200k
        contents in 1.4 s on two threads, 2.4 s on one). At most two ranges wait ahead of the
        one being added."""
        pending: deque[tuple[np.ndarray, Future[np.ndarray]]] = deque()
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            for low in range(0, self._next_seq, _COMPUTE_CHUNK):
                seqs = (
                    self._con.execute(
                        "SELECT seq FROM memories WHERE seq >= ? AND seq < ? AND embedded AND embedding IS NULL "
                        "ORDER BY seq",
                        [low, low + _COMPUTE_CHUNK],
                    )
                    .fetchnumpy()["seq"]
                    .astype(np.int64)
                )
                if len(seqs):
                    pending.append((seqs, pool.submit(self.embedder.embed, self.rows.contents(seqs))))
                while len(pending) > 2:
                    self._add_computed(pending.popleft())
            while pending:
                self._add_computed(pending.popleft())

    def _add_computed(self, task: tuple[np.ndarray, Future[np.ndarray]]) -> None:
        seqs, vectors = task
        self.vectors.add(seqs, vectors.result())

    def _release_cached_memory(self) -> None:
        """Give back DuckDB's cached copies of file blocks and glibc's free heap (called after
        opening, after a bulk load and after each checkpoint).

        Opening reads every table once and a checkpoint writes the new blocks; DuckDB keeps
        those blocks cached (up to its memory_limit, 80 % of RAM by default) although searches
        are answered from the in-memory indexes, and the loaders' transient Python objects
        leave glibc's heap with free memory it keeps. Measured on a store of 14k memories:
        +107 MiB over an empty store after opening, +42 MiB with chunked loading and this (the
        vectors alone are 21); at 1M, 4,531 -> 1,949 MiB.

        Only the cached copies of the file's blocks (duckdb_memory()'s BASE_TABLE) are
        dropped: the limit is lowered to what everything else uses, DuckDB evicts file blocks
        first, so rows not yet checkpointed and indexes stay in memory. Lowered further (to
        1 MB), DuckDB swaps those temporary blocks out to a file, and in DuckDB 1.5.5 reading
        them back failed ("INTERNAL Error: Bitpacking offset is out of range ... corrupt
        database file", found with ":memory:" stores, whose blocks are all temporary), so a
        ":memory:" store and a store with little cached are left alone.
        """
        if self._wal is None:
            release_free_heap()
            return
        usage = dict(self._con.execute("SELECT tag, memory_usage_bytes FROM duckdb_memory()").fetchall())
        cached = usage.get("BASE_TABLE", 0)
        if cached > _EVICT_MARGIN:
            self._evict_down_to(sum(usage.values()) - cached + _EVICT_MARGIN)
        release_free_heap()

    def _evict_down_to(self, limit_bytes: int) -> None:
        # Lowering memory_limit evicts unpinned blocks down to it; then the limit is set back
        # (as DuckDB prints it, rounded to 0.1 GiB). Not RESET: in DuckDB 1.5.5 it shows the
        # default again but leaves the buffer manager at the lowered limit.
        limit = self._scalar("SELECT current_setting('memory_limit')")
        try:
            self._con.execute(f"SET memory_limit = '{limit_bytes}B'")
        except duckdb.Error:  # nothing is lost if DuckDB cannot shrink that far
            pass
        finally:
            self._con.execute(f"SET memory_limit = '{limit}'")

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            # A graph still being built is not waited for (minutes at a million vectors): it
            # is derived state, rebuilt on the next open.
            if not self.vectors.building:
                self.vectors.save()
            self._con.execute("CHECKPOINT")
            self._con.close()

    def __enter__(self) -> DuckDBStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing memories -----------------------------------------------------------------------

    def store_memory(self, memory: NewMemory) -> MemoryRecord:
        batch = MemoryBatch.from_new([memory])
        embed_batch(batch, self.embedder)  # outside the lock: the slow, pure part
        batch, _ = self._write_batch(batch, skip_existing=False)
        assert batch.vectors is not None
        return MemoryRecord(
            id=batch.ids[0],
            contact_id=batch.contact_ids[0],
            content=memory.content,
            memory_type=memory.memory_type,
            metadata=dict(memory.metadata),
            created_at=from_micros(int(batch.created_us[0])),
            related=list(memory.related),
            embedding=batch.vectors[0] if memory.embed else None,
        )

    def add_memories(self, memories: list[NewMemory]) -> int:
        written = 0
        for start in range(0, len(memories), BULK_CHUNK):
            written += self.add_memory_batch(MemoryBatch.from_new(memories[start : start + BULK_CHUNK]))
        return written

    def add_memory_batch(self, batch: MemoryBatch) -> int:
        """Write a batch (the bulk importer's path): memories whose given id the store has are
        skipped; vectors and terms the batch does not carry are computed here."""
        embed_batch(batch, self.embedder)
        written, _ = self._write_batch(batch, skip_existing=True)
        return len(written)

    @contextlib.contextmanager
    def bulk_load(self) -> Iterator[None]:
        """Around a bulk import: its writes are committed in groups of at least BULK_GROUP_ROWS
        memories, then checkpointed once.

        DuckDB writes a transaction's new rows into the database file at COMMIT when it added
        at least a row group (122,880 rows) to a table; smaller transactions go through the
        write-ahead log, and the checkpoint copies them into the file a second time. For 200k
        memories of 1.5 KB vectors: insert + commit + checkpoint 1.3 s in one transaction, 2.7 s
        in 20k-row ones; 7.6 against 20.2 s for 1M (/tmp harness, a synthetic memories table).
        No automatic checkpoint runs during the load either.

        The store's lock is held throughout: another caller's write would otherwise join the
        open transaction and be acknowledged before it is durable. The in-memory indexes are
        updated as each batch is written; if anything fails, the open group is rolled back and
        the indexes are rebuilt from the file, which keeps every group committed before.
        At the end the per-contact and per-node parts of the indexes are folded (as
        compact_indexes does) while DuckDB runs the last COMMIT.
        """
        with self._lock:
            if self._group_rows is not None:  # already in a bulk load
                yield
                return
            previous = self._scalar("SELECT current_setting('checkpoint_threshold')")
            self._con.execute("SET checkpoint_threshold = '1000 GiB'")
            try:
                self._begin_group()
                try:
                    yield
                    with self._folding_indexes():
                        self._commit_group()
                except BaseException:
                    self._abort_group()
                    raise
            finally:
                self._con.execute(f"SET checkpoint_threshold = '{previous}'")
                if not self._closed:
                    self._con.execute("CHECKPOINT")
                    self._release_cached_memory()

    @contextlib.contextmanager
    def _folding_indexes(self) -> Iterator[None]:
        """compact_indexes on another thread while the block runs, for DuckDB statements (they
        run without the GIL): at the end of a 200k-memory import the fold (0.2 s) and the last
        COMMIT (0.27 s) ran one after the other. The caller holds the lock; a failed fold is
        raised once the block is done."""
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ventros-fold") as pool:
            folded = pool.submit(self._fold_indexes)
            yield
        folded.result()

    def _fold_indexes(self) -> None:
        self.contacts.compact()
        self.edges.compact()

    def _begin_group(self) -> None:
        self._con.execute("BEGIN TRANSACTION")
        self._group_rows = 0

    def _commit_group(self) -> None:
        self._group_rows = None
        self._con.execute("COMMIT")
        self._committed()

    def _abort_group(self) -> None:
        self._group_rows = None
        with contextlib.suppress(duckdb.Error):  # e.g. the failure was the COMMIT itself
            self._con.execute("ROLLBACK")
        self._load_indexes()

    def _grew_group(self, memories: int) -> None:
        """Count memories written in the open group; commit it once it is big enough."""
        if self._group_rows is None:
            return
        self._group_rows += memories
        if self._group_rows >= BULK_GROUP_ROWS:
            self._commit_group()
            self._begin_group()

    def reserve_memories(self, count: int) -> None:
        """Room in the in-memory vector matrix for ``count`` more memories (the bulk importer's
        estimate), so it is not copied as it grows; unused room costs address space only."""
        with self._lock:
            self.vectors.reserve(self._next_seq + count)

    def _write_batch(self, batch: MemoryBatch, *, skip_existing: bool) -> tuple[MemoryBatch, np.ndarray]:
        """One transaction; returns the memories written (those not skipped) and their seqs."""
        assert batch.vectors is not None and batch.terms is not None
        with self._lock:
            if skip_existing:
                batch = self._drop_existing(batch)
            if not len(batch):
                return batch, np.empty(0, np.int64)
            untimed = batch.created_us == NO_TIME
            if untimed.any():
                batch.created_us = np.where(untimed, micros(self.clock()), batch.created_us)
            seqs = np.arange(self._next_seq, self._next_seq + len(batch), dtype=np.int64)
            with self._transaction():
                postings, doc_len = self._insert_memory_rows(batch, seqs)
                edges = self._insert_links(batch, seqs)
            # Derived state, updated once the commit made the rows durable (in a bulk load's
            # group, before: a failed group rebuilds it from the file, see bulk_load).
            self._next_seq += len(batch)
            self.corpus.add(postings["term"], doc_len)
            self.contacts.add(
                NewRows(
                    contact_ids=batch.contact_ids,
                    seqs=seqs,
                    doc_len=doc_len,
                    memory_types=batch.memory_types,
                    posting_record=postings["seq"] - seqs[0],
                    posting_term=postings["term"],
                    posting_tf=postings["tf"],
                    link_record=batch.link_of,
                    link_entity_ids=batch.link_entity_ids,
                    link_entity_types=batch.link_entity_types,
                    link_relationships=batch.link_relationships,
                    link_strengths=batch.link_strengths,
                )
            )
            if edges:
                self.edges.upsert_columns(**edges)
            self.rows.add(
                seqs, batch.ids, batch.contact_ids, batch.contents, batch.memory_types, batch.metadata,
                batch.created_us,
            )  # fmt: skip
            self.nodes.add_linked(batch.link_entity_ids, batch.link_entity_types)
            assert batch.vectors is not None
            self.vectors.add(seqs[batch.embed], batch.vectors)
            self._grew_group(len(batch))
        return batch, seqs

    def _drop_existing(self, batch: MemoryBatch) -> MemoryBatch:
        """The batch without the memories whose given id is in the store or earlier in the
        batch (generated ids are random UUIDs: new by construction, not looked up)."""
        given = np.flatnonzero(batch.given_id)
        if not len(given):
            return batch
        ids = [batch.ids[i] for i in given.tolist()]
        with self._rows("incoming_ids", {"id": ids}) as (source, params):
            found = self._con.execute(
                f"SELECT id FROM memories SEMI JOIN {source} USING (id)", params
            ).fetchall()
        existing = {row[0] for row in found}
        keep = np.ones(len(batch), dtype=bool)
        seen: set[str] = set()
        for i, memory_id in zip(given.tolist(), ids, strict=True):
            if memory_id in existing or memory_id in seen:
                keep[i] = False
            seen.add(memory_id)
        return batch if keep.all() else batch.take(keep)

    def _insert_memory_rows(
        self, batch: MemoryBatch, seqs: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Rows and postings; returns (the postings: term, seq, tf columns; document lengths)."""
        terms = batch.terms
        assert terms is not None and batch.vectors is not None
        unique, tf = _term_frequencies(seqs[terms.doc], terms.hash)
        doc_len = np.bincount(terms.doc, minlength=len(batch)).astype(np.int32)
        memory_rows = {
            "seq": seqs,
            "id": batch.ids,
            "contact_id": batch.contact_ids,
            "content": batch.contents,
            "memory_type": batch.memory_types,
            "metadata": batch.metadata,
            "created_at": batch.created_us.astype("datetime64[us]"),
            "doc_len": doc_len,
            "embedded": batch.embed,
        }
        # With a recomputable embedder the file holds no vector bytes (schema.py, version 4):
        # they were ~90 % of the rows' bytes and the import's largest cost.
        embedding = "NULL"
        if not recomputable(self.embedder):
            memory_rows["b64"], embedding = base64_rows(batch.vectors, batch.embed), "from_base64(b64)"
        with self._rows("new_memories", memory_rows) as (source, params):
            self._con.execute(
                "INSERT INTO memories SELECT seq, id, contact_id, content, memory_type, metadata, created_at, "
                f"doc_len, {embedding}, embedded FROM {source}",
                params,
            )
        postings = {"term": unique[:, 1].astype(np.int64), "seq": unique[:, 0].astype(np.int64), "tf": tf}
        with self._rows("new_postings", postings) as (source, params):
            self._con.execute(f"INSERT INTO postings SELECT term, seq, tf FROM {source}", params)
        return postings, doc_len

    def _insert_links(self, batch: MemoryBatch, seqs: np.ndarray) -> dict[str, Any]:
        """Memory -> entity links, entities the store has not seen, and contact -> entity edges
        (returned, merged, as EdgeIndex.upsert_columns's arguments, for the edge index once the
        transaction commits)."""
        if not len(batch.link_of):
            return {}
        link_rows = {
            "seq": seqs[batch.link_of],
            "entity_id": batch.link_entity_ids,
            "entity_type": batch.link_entity_types,
            "relationship": batch.link_relationships,
            "strength": batch.link_strengths,
        }
        with self._rows("new_links", link_rows) as (source, params):
            self._con.execute(
                f"INSERT INTO memory_links SELECT seq, entity_id, entity_type, relationship, strength FROM {source}",
                params,
            )
        # Entities the store has not seen (the node index mirrors the table, under this lock):
        # a `WHERE id NOT IN (SELECT id FROM entities)` filter here was a query shape DuckDB
        # keeps memory for (docs/operations.md "Soak").
        entities = {
            i: t
            for i, t in zip(batch.link_entity_ids, batch.link_entity_types, strict=True)
            if self.nodes.entity(i) is None
        }
        if entities:
            with self._rows("new_entities", {"id": list(entities), "type": list(entities.values())}) as (
                source,
                params,
            ):
                self._con.execute(f"INSERT INTO entities SELECT id, type, '{{}}' FROM {source}", params)
        # The memory says the contact relates to the entity: that becomes a graph edge, so the
        # contact's neighbourhood (GetContactContext, GRAPH_ONLY, GetRelatedEntities) shows it.
        # Merged by key as _upsert_edges does, straight from the columns: an EdgeRecord per
        # link first cost ~0.3 s per 200k memories; for 60k links, a dict entry updated per
        # link took 74 ms, a group number per link and numpy reductions 27-36 ms.
        contacts = [batch.contact_ids[i] for i in batch.link_of.tolist()]
        groups: dict[tuple[str, str, str], int] = {}
        group = np.fromiter(
            (
                groups.setdefault(key, len(groups))
                for key in zip(contacts, batch.link_entity_ids, batch.link_relationships, strict=True)
            ),
            dtype=np.int64,
            count=len(contacts),
        )
        weight = np.full(len(groups), -np.inf)
        np.maximum.at(weight, group, batch.link_strengths)
        created_us = np.full(len(groups), np.iinfo(np.int64).max)
        np.minimum.at(created_us, group, batch.created_us[batch.link_of])
        keys = list(groups)
        columns: dict[str, Any] = {
            "from_id": [k[0] for k in keys],
            "to_id": [k[1] for k in keys],
            "relationship": [k[2] for k in keys],
            "weight": weight,
        }
        self._write_edges({**columns, "created_at": created_us.astype("datetime64[us]")}, source="memory")
        return {**columns, "created_us": created_us}

    def _upsert_edges(self, edges: list[EdgeRecord], *, source: str) -> list[EdgeRecord]:
        """Insert edges; an edge already there (same ends and label) keeps the larger weight.
        Returns the batch merged by key, for EdgeIndex.upsert after the commit."""
        merged: dict[tuple[str, str, str], EdgeRecord] = {}
        for edge in edges:
            key = (edge.from_id, edge.to_id, edge.relationship)
            created = edge.created_at or self.clock()
            known = merged.get(key)
            if known is None:
                merged[key] = EdgeRecord(*key, edge.weight, created)
            else:
                known.weight = max(known.weight, edge.weight)
                known.created_at = min(known.created_at or created, created)
        self._write_edges(
            {
                "from_id": [e.from_id for e in merged.values()],
                "to_id": [e.to_id for e in merged.values()],
                "relationship": [e.relationship for e in merged.values()],
                "weight": [e.weight for e in merged.values()],
                "created_at": [_naive(e.created_at or self.clock()) for e in merged.values()],
            },
            source=source,
        )
        return list(merged.values())

    def _write_edges(self, batch: dict[str, Any], *, source: str) -> None:
        """The SQL of an edge upsert (keys unique in ``batch``): raise weights, add new edges.

        Which keys the table holds, and their weights, come from the edge index, which mirrors
        the table under this lock: joining each batch with the whole edges table twice (an
        UPDATE ... FROM and an INSERT ... ANTI JOIN) was ~1 s of a 200k-memory import, growing
        with the table. Only the rows that need it reach DuckDB."""
        known = self.edges.known_weights(batch["from_id"], batch["to_id"], batch["relationship"])
        weight = np.asarray(batch["weight"], dtype=np.float64)
        new = np.isnan(known)
        heavier = ~new & (weight > known)  # known: the lightest edge of the key (SQL per row)
        if heavier.any():
            with self._rows("b", _subset(batch, heavier)) as (rows, params):
                self._con.execute(
                    f"""UPDATE edges SET weight = b.weight FROM {rows}
                        WHERE edges.from_id = b.from_id AND edges.to_id = b.to_id
                          AND edges.relationship = b.relationship AND b.weight > edges.weight""",
                    params,
                )
        if new.any():
            with self._rows("b", _subset(batch, new)) as (rows, params):
                self._con.execute(
                    f"INSERT INTO edges SELECT from_id, to_id, relationship, weight, created_at, ? FROM {rows}",
                    [source, *params],
                )

    @contextlib.contextmanager
    def _rows(self, name: str, columns: Mapping[str, Any]) -> Iterator[tuple[str, list[Any]]]:
        """A batch of rows as a SQL relation called ``name``: yields (SQL source, parameters).

        A few rows (one StoreMemory) become a VALUES list in the statement itself; DuckDB
        answers that in well under a millisecond, where registering numpy arrays costs ~2 ms per
        call. Many rows (imports) are registered as numpy arrays and scanned without copying,
        where a VALUES list of thousands of parameters would be slow to bind.
        """
        names = list(columns)
        count = len(columns[names[0]])
        if count == 0:  # an empty relation with the right columns (e.g. content with no terms)
            nulls = ", ".join(["NULL"] * len(names))
            yield f"(SELECT * FROM (VALUES ({nulls})) AS t({', '.join(names)}) WHERE false) AS {name}", []
            return
        if count <= _VALUES_MAX_ROWS:
            row = "(" + ", ".join(["?"] * len(names)) + ")"
            params = [_python(v) for values in zip(*columns.values(), strict=True) for v in values]
            source = f"(VALUES {', '.join([row] * count)}) AS {name}({', '.join(names)})"
            yield source, params
            return
        registered = {k: _column(v) for k, v in columns.items()}
        coded = {k: found for k, c in registered.items() if (found := _few_values(c)) is not None}
        if not coded:
            with self._registered(name, registered):
                yield name, []
            return
        # Columns of few distinct strings (memory types, relationships...) as codes into a list
        # parameter: DuckDB converts a Python str of a scanned column in ~0.4-1 us (measured,
        # per value), a code in a few ns (memory_type of 20k memories: 10.6 -> 2.4 ms).
        registered.update({k: codes for k, (codes, _) in coded.items()})
        select = ", ".join(f"list_extract(?::VARCHAR[], {k} + 1) AS {k}" if k in coded else k for k in names)
        with self._registered(name, registered):
            yield f"(SELECT {select} FROM {name}) AS {name}", [coded[k][1] for k in names if k in coded]

    # -- bulk loading of the rest of the CRM ----------------------------------------------------

    def add_contacts(self, contacts: Iterable[Contact]) -> int:
        """Insert or update contacts (a contact seen again is replaced: the last record wins)."""
        contacts = list({c.id.lower(): c for c in contacts}.values())
        batch = {
            "id": _objects([c.id.lower() for c in contacts]),
            "name": _objects([c.name for c in contacts]),
            "phone": _objects([c.phone for c in contacts]),
            "email": _objects([c.email for c in contacts]),
            "tier": _objects([c.tier for c in contacts]),
            "tags": _objects([json.dumps(c.tags, ensure_ascii=False) for c in contacts]),
            "custom_fields": _objects([json.dumps(c.custom_fields, ensure_ascii=False) for c in contacts]),
            "created_at": _timestamps(c.created_at or _EPOCH for c in contacts),
        }
        if contacts:
            with self._lock, self._transaction(), self._registered("incoming", batch):
                self._con.execute(
                    """INSERT OR REPLACE INTO contacts SELECT id, name, phone, email, tier, tags, custom_fields,
                       nullif(created_at, ?) FROM incoming""",
                    [_naive(_EPOCH)],
                )
                self.nodes.add_contacts(batch["id"])
        return len(contacts)

    def add_entities(self, entities: Iterable[Entity]) -> int:
        """Insert or update entities (the last record of an id wins)."""
        entities = list({e.id: e for e in entities}.values())
        batch = {
            "id": _objects([e.id for e in entities]),
            "type": _objects([e.type for e in entities]),
            "properties": _objects([json.dumps(e.properties, ensure_ascii=False) for e in entities]),
        }
        if entities:
            with self._lock, self._transaction(), self._registered("incoming", batch):
                self._con.execute("INSERT OR REPLACE INTO entities SELECT * FROM incoming")
                self.nodes.add_entities(entities)
        return len(entities)

    def add_edges(self, edges: Iterable[EdgeRecord]) -> int:
        edges = list(edges)
        if edges:
            with self._lock:
                with self._transaction():
                    merged = self._upsert_edges(edges, source="import")
                self.edges.upsert(merged)
        return len(edges)

    def add_messages(self, messages: Iterable[MessageRecord]) -> int:
        messages = list(messages)
        batch = {
            "id": _objects([m.id for m in messages]),
            "contact_id": _objects([m.contact_id.lower() for m in messages]),
            "content": _objects([m.content for m in messages]),
            "is_inbound": np.array([m.is_inbound for m in messages], dtype=bool),
            "channel": _objects([m.channel for m in messages]),
            "sent_at": _timestamps(m.sent_at for m in messages),
        }
        return self._insert_new("messages", batch, len(messages))

    def add_purchases(self, purchases: Iterable[Purchase]) -> int:
        purchases = list(purchases)
        batch = {
            "id": _objects([p.id for p in purchases]),
            "contact_id": _objects([p.contact_id.lower() for p in purchases]),
            "product_id": _objects([p.product_id for p in purchases]),
            "amount": np.array([p.amount for p in purchases], dtype=np.float64),
            "currency": _objects([p.currency for p in purchases]),
            "purchased_at": _timestamps(p.purchased_at for p in purchases),
        }
        return self._insert_new("purchases", batch, len(purchases))

    def _insert_new(self, table: str, batch: dict[str, np.ndarray], count: int) -> int:
        """Insert rows whose id the table does not have yet (re-importing a file is harmless)."""
        if not count:
            return 0
        with self._lock, self._transaction(), self._registered("incoming", batch):
            before = self._scalar(f"SELECT count(*) FROM {table}")
            self._con.execute(
                f"INSERT INTO {table} SELECT DISTINCT ON (id) * FROM incoming i "
                f"WHERE i.id NOT IN (SELECT id FROM {table})"
            )
            self.nodes.add_contacts(batch["contact_id"], table)
            return int(self._scalar(f"SELECT count(*) FROM {table}") - before)

    def _transaction(self) -> contextlib.AbstractContextManager[None]:
        """One transaction, or none inside a bulk load's group (which commits it)."""
        if self._group_rows is not None:
            return contextlib.nullcontext()
        return _Transaction(self._con, self._committed)

    def _committed(self) -> None:
        """After each COMMIT: if DuckDB checkpointed in it (its log shrank), release what the
        checkpoint left cached. DuckDB folds the log into the file inside the first COMMIT
        after the log passed checkpoint_threshold, and keeps the blocks it wrote cached; a
        server writing memories otherwise keeps every block of every checkpoint."""
        if self._wal is None:
            return
        try:
            size = self._wal.stat().st_size
        except FileNotFoundError:
            size = 0
        if size < self._wal_size:
            self._release_cached_memory()
        self._wal_size = size

    def _register(self, name: str, batch: dict[str, np.ndarray]) -> None:
        """Register ``batch``; DuckDB types an object column from a sample of its values
        (1,000 by default, ~19 ms per column whatever its length: 1 s of a 200k-memory import,
        measured). A column holding only str (or only bytes) is typed by its first value.
        Fixed-width unicode columns go in as objects: DuckDB runs np.unique over them at
        registration (41 ms per 20k ids, against ~2 ms to make the objects)."""
        batch = {k: c.astype(object) if c.dtype.kind == "U" else c for k, c in batch.items()}
        uniform = all(_one_type(column) for column in batch.values())
        if uniform:
            self._con.execute(f"SET pandas_analyze_sample = {_SAMPLE_UNIFORM}")
        try:
            self._con.register(name, batch)
        finally:
            if uniform:
                self._con.execute("RESET pandas_analyze_sample")

    @contextlib.contextmanager
    def _registered(self, name: str, batch: dict[str, np.ndarray]) -> Iterator[None]:
        """``batch`` visible to SQL as table ``name`` for the duration (a numpy scan, no copy)."""
        self._register(name, batch)
        try:
            yield
        finally:
            self._con.unregister(name)

    # -- search ---------------------------------------------------------------------------------

    def search(self, query: SearchQuery) -> SearchResult:
        weights = ranking.mode_weights(query.mode, self.weights)
        query_vector, query_terms = self._query_features(query.query, weights)
        contact_id = query.contact_id.lower()
        with self._lock:
            # The contact's memories (of the given types), postings and links: contact_index.py.
            view = self.contacts.view(contact_id, query.memory_types)
            vector = (
                self._vector_scores(query_vector, contact_id, view, query.limit)
                if query_vector is not None
                else ranking.NO_SCORES
            )
            keyword = self._keyword_scores(query_terms, view) if weights.keyword > 0 else ranking.NO_SCORES
            graph_scores = (
                self._graph_scores(contact_id, query.query, view) if weights.graph > 0 else ranking.NO_SCORES
            )
            fused = ranking.fuse(weights, vector, keyword, graph_scores, query.limit)
            records = self._memories_by_seq(
                contact_id, [seq for seq, _, _ in fused.top], with_embedding=query.with_embedding
            )
        return SearchResult(
            memories=[ScoredMemory(records[seq], score, parts) for seq, score, parts in fused.top],
            total_count=fused.total,
            vector_matches=len(vector[0]),
            keyword_matches=len(keyword[0]),
            graph_matches=len(graph_scores[0]),
            weights=weights,
        )

    def _vector_scores(
        self, query_vector: np.ndarray, contact_id: str, view: ContactView, limit: int
    ) -> ranking.Scores:
        """Cosine (clipped at 0) of every candidate above vector_min_similarity.

        Exact over all candidates up to the switch point; beyond it only the top
        max(10 * limit, 200) are scored (by hnswlib, or exactly while its graph is being
        built), so vector_matches is then a lower bound.
        """
        candidates = view.candidates
        if len(candidates) == 0:
            return ranking.NO_SCORES
        if len(candidates) <= self.vectors.exact_max:
            every = self.vectors.contact_similarities(query_vector, contact_id, view.memories["seq"])
            seqs, sims = candidates, every[view.allowed]
        else:
            seqs, sims = self.vectors.top_k(query_vector, candidates, max(10 * limit, 200))
        keep = ~np.isnan(sims) & (sims >= self.vector_min_similarity)
        return seqs[keep], np.clip(sims[keep].astype(np.float64), 0.0, 1.0)

    def _query_features(self, query: str, weights: FusionWeights) -> tuple[np.ndarray | None, np.ndarray]:
        """The query's vector (None when the vector source does not weigh or the query is
        blank) and its keyword terms (unique), hashed once when the embedder can give both
        (the offline one hashes the same words: ~80 us of a HYBRID search saved)."""
        wants_vector = weights.vector > 0 and bool(query.strip())
        both = getattr(self.embedder, "embed_with_terms", None)
        if wants_vector and weights.keyword > 0 and both is not None:
            vectors, terms = both([query])
            return vectors[0], np.unique(terms.hash)
        vector = self.embedder.embed([query])[0] if wants_vector else None
        terms = text.query_terms(query) if weights.keyword > 0 else np.empty(0, np.int64)
        return vector, terms

    def _keyword_scores(self, terms: np.ndarray, view: ContactView) -> ranking.Scores:
        """BM25 (k1=1.2, b=0.75) of the candidates that contain at least one query term.

        Corpus statistics (document frequencies, N, average length) are global: a word common
        across all contacts weighs little for each of them. They come from self.corpus, the
        in-memory tally of the postings table; the contact's postings from the contact index.
        """
        if len(terms) == 0 or len(view.postings) == 0:
            return ranking.NO_SCORES
        # terms are sorted and unique (np.unique): a sorted lookup finds each posting's term,
        # ~4x cheaper than np.isin on a contact's few dozen postings.
        posting_terms = view.postings["term"]
        term_at = np.minimum(np.searchsorted(terms, posting_terms), len(terms) - 1)
        matched = terms[term_at] == posting_terms
        hits, term_at = view.postings[matched], term_at[matched]
        if len(hits) == 0:
            return ranking.NO_SCORES
        term_list = terms.tolist()
        idf = np.array([self.corpus.idf(t) for t in term_list])
        k1, b = ranking.BM25_K1, ranking.BM25_B
        tf = hits["tf"].astype(np.float64)
        length = view.memories["doc_len"][hits["pos"]] / self.corpus.average_length
        weight = idf[term_at] * tf * (k1 + 1) / (tf + k1 * (1 - b + b * length))
        positions = np.unique(hits["pos"])
        totals = np.bincount(hits["pos"], weights=weight, minlength=len(view.memories))[positions]
        known = np.array([bool(self.corpus.df.get(t)) for t in term_list])
        ceiling = float(idf[known].sum()) * (k1 + 1)
        return ranking.normalise_keyword(view.memories["seq"][positions], totals, ceiling)

    def _graph_scores(self, contact_id: str, query: str, view: ContactView) -> ranking.Scores:
        """GRAPH source (docs/contract.md): memories linked to entities the query names, or to
        entities in the contact's 2-hop neighbourhood.

        score(memory) = max over its links of  strength x relevance(entity), where relevance is
        1.0 for an entity the query names (by id, or by its "name"/"title" property appearing
        as a phrase in the query), else NEIGHBOURHOOD_FACTOR x its best-path relevance from the
        contact (graph.py; computed by EdgeIndex.relevance, depth CONTEXT_GRAPH_DEPTH = 2), else 0.
        """
        if len(view.links) == 0 or not view.allowed.any():
            return ranking.NO_SCORES
        every_link = view.links if view.allowed.all() else self.contacts.view(contact_id).links
        linked = self.linked.of(contact_id, every_link)  # ids resolved, cached (linked_entities.py)
        relevance = NEIGHBOURHOOD_FACTOR * self.edges.relevance(
            contact_id, linked.node_codes, decay=graph.DECAY, max_visited=graph.MAX_VISITED
        )
        relevance[linked.named(query)] = 1.0
        entity_of_link = np.searchsorted(linked.codes, view.links["entity"])
        strength = np.clip(view.links["strength"].astype(np.float64), 0.0, 1.0)
        best = np.zeros(len(view.memories))
        np.maximum.at(best, view.links["pos"], strength * relevance[entity_of_link])
        hit = np.flatnonzero(best > 0)
        return view.memories["seq"][hit], best[hit]

    def _fetch_edges(self, node_ids: list[str]) -> list[EdgeRecord]:
        return self.edges.fetch(node_ids, EDGE_FETCH_LIMIT)

    def _memories_by_seq(
        self, contact_id: str, seqs: list[int], *, with_embedding: bool
    ) -> dict[int, MemoryRecord]:
        """Memories of one contact by seq (rows from memory_rows.py, their related entities from
        the contact index)."""
        if not seqs:
            return {}
        rows = self.rows.fetch(seqs)
        links = self._links_of(contact_id, seqs)
        records: dict[int, MemoryRecord] = {}
        for seq, mid, cid, content, mtype, metadata, created in rows:
            records[seq] = MemoryRecord(
                id=mid,
                contact_id=cid,
                content=content,
                memory_type=mtype,
                metadata=json.loads(metadata) if metadata else {},
                created_at=_utc(created) or self.clock(),
                related=links.get(seq, []),
            )
        if with_embedding:
            present = self.vectors.has(np.array(seqs))
            vectors = self.vectors.vectors(np.array(seqs))
            for seq, has, vector in zip(seqs, present, vectors, strict=True):
                if has and seq in records:
                    records[seq].embedding = vector
        return records

    def _links_of(self, contact_id: str, seqs: list[int]) -> dict[int, list[RelatedRef]]:
        view = self.contacts.view(contact_id)
        memory_seqs = view.memories["seq"]
        positions = np.searchsorted(memory_seqs, np.array(seqs, dtype=np.int64))
        # A mask over the contact's memories (np.isin sorted both sides on every search).
        wanted = np.zeros(len(memory_seqs) + 1, bool)
        wanted[positions] = True
        links = view.links[wanted[view.links["pos"]]]
        out: dict[int, list[RelatedRef]] = {}
        link_seqs = memory_seqs[links["pos"]].tolist()
        for seq, ref in zip(link_seqs, self.contacts.refs(links), strict=True):
            out.setdefault(seq, []).append(ref)
        return out

    # -- contact context ------------------------------------------------------------------------

    def contact_context(
        self,
        contact_id: str,
        *,
        history_limit: int,
        entity_types: frozenset[str],
        include_graph: bool,
    ) -> ContactContext | None:
        contact_id = contact_id.lower()
        with self._lock:
            profile = self._profile(contact_id)
            # A profile, a memory or a message makes a contact known (from the indexes: an
            # EXISTS query held ~290 B of DuckDB's native memory per call, docs/operations.md).
            known = (
                profile is not None
                or self._has_memories(contact_id)
                or bool(self.nodes.contact_flags(contact_id) & MESSAGES)
            )
            if not known:
                return None
            memories = self._recent_memories(contact_id, history_limit, entity_types)
            messages = (
                self._recent_messages(contact_id, history_limit)
                if not entity_types or "message" in entity_types
                else []
            )
            graph_view = self._contact_graph(contact_id, entity_types) if include_graph else None
            stats = self._stats(contact_id, profile)
        return ContactContext(profile or Contact(id=contact_id), memories, messages, graph_view, stats)

    def _profile(self, contact_id: str) -> Contact | None:
        row = self._con.execute(
            "SELECT id, name, phone, email, tier, tags, custom_fields, created_at FROM contacts WHERE id = ?",
            [contact_id],
        ).fetchone()
        if row is None:
            return None
        cid, name, phone, email, tier, tags, custom, created = row
        return Contact(
            cid, name or "", phone or "", email or "", tier or "",
            json.loads(tags) if tags else [], json.loads(custom) if custom else {}, _utc(created),
        )  # fmt: skip

    def _recent_memories(
        self, contact_id: str, limit: int, entity_types: frozenset[str]
    ) -> list[MemoryRecord]:
        sql = "SELECT seq FROM memories WHERE contact_id = ?"
        params: list[Any] = [contact_id]
        if entity_types:  # list_contains, not an IN list: DuckDB holds memory per IN-list query
            sql += " AND list_contains(?, memory_type)"
            params.append(sorted(entity_types))
        sql += " ORDER BY created_at DESC, seq DESC LIMIT ?"
        params.append(limit)
        seqs = [r[0] for r in self._con.execute(sql, params).fetchall()]
        records = self._memories_by_seq(contact_id, seqs, with_embedding=False)
        return [records[s] for s in seqs if s in records]

    def _recent_messages(self, contact_id: str, limit: int) -> list[MessageRecord]:
        rows = self._con.execute(
            """SELECT id, contact_id, content, is_inbound, channel, sent_at FROM messages
               WHERE contact_id = ? ORDER BY sent_at DESC, id DESC LIMIT ?""",
            [contact_id, limit],
        ).fetchall()
        return [
            MessageRecord(i, c, t or "", bool(b), ch or "", _utc(s) or self.clock())
            for i, c, t, b, ch, s in rows
        ]

    def _contact_graph(self, contact_id: str, entity_types: frozenset[str]) -> Graph:
        node_ids, edges = graph.neighbourhood(
            contact_id,
            self._fetch_edges,
            depth=CONTEXT_GRAPH_DEPTH,
            max_nodes=CONTEXT_GRAPH_MAX_NODES,
            max_edges=CONTEXT_GRAPH_MAX_EDGES,
        )
        nodes = self._nodes(node_ids, reveal=contact_id)
        if entity_types:
            nodes = [n for n in nodes if n.id == contact_id or n.type in entity_types]
        kept = {n.id for n in nodes}
        return Graph(nodes, [e for e in edges if e.from_id in kept and e.to_id in kept])

    def _nodes(self, ids: list[str], *, reveal: str | None = None) -> list[Entity]:
        """Entities, then contacts (type "contact"), then ids known only from memories/messages
        (contacts without a profile), then "unknown" for ids that appear only in edges.

        Privacy: only the contact ``reveal`` (the one a context is about) gets its name, tier and
        e-mail as properties; any other contact is an id with type "contact" and nothing else,
        so an agent serving one customer never receives another customer's personal data.

        Resolved from the in-memory indexes (node_index.py, contact_index.py): DuckDB 1.5.5 kept
        ~2 KB of native memory per ``id IN (...)`` lookup this used to make."""
        return [self._node_of(i, reveal) for i in ids]

    def _node_of(self, node_id: str, reveal: str | None) -> Entity:
        entity = self.nodes.entity(node_id)
        if entity is not None:
            etype, props = entity
            return Entity(node_id, etype, json.loads(props) if props else {})
        flags = self.nodes.contact_flags(node_id)
        if flags & PROFILE and node_id == reveal:
            return Entity(node_id, "contact", self._revealed_properties(node_id))
        if flags or self._has_memories(node_id):
            return Entity(node_id, "contact", {})
        return Entity(node_id, "unknown", {})

    def _revealed_properties(self, contact_id: str) -> dict[str, str]:
        row = self._con.execute(
            "SELECT name, tier, email FROM contacts WHERE id = ?", [contact_id]
        ).fetchone()
        name, tier, email = row if row else (None, None, None)
        return {k: v for k, v in (("name", name), ("tier", tier), ("email", email)) if v}

    def _has_memories(self, contact_id: str) -> bool:
        return len(self.contacts.view(contact_id).memories) > 0

    def _stats(self, contact_id: str, profile: Contact | None) -> ContactStats:
        """Counts, lifetime value, first/last activity and churn inputs: one aggregate per table
        (UNION ALL). Scalar subqueries and a correlated EXISTS held 0.5 and 6 KB of DuckDB's
        native memory per query, this shape none (benchmarks/duckdb_query_growth.py); memories
        with a complaint link come from the contact index."""
        now = self.clock()
        since = _naive(now - timedelta(days=churn.WINDOW_DAYS))
        rows = self._con.execute(
            """SELECT 0, count(*), 0.0, min(sent_at), max(sent_at),
                      count(*) FILTER (WHERE is_inbound AND sent_at >= $since)
               FROM messages WHERE contact_id = $c
               UNION ALL
               SELECT 1, count(*), coalesce(sum(amount), 0), min(purchased_at), max(purchased_at),
                      count(*) FILTER (WHERE purchased_at >= $since)
               FROM purchases WHERE contact_id = $c
               UNION ALL
               SELECT 2, 0, 0.0, min(created_at), max(created_at),
                      count(*) FILTER (WHERE created_at >= $since AND (
                          list_contains($types, memory_type) OR list_contains($linked, seq)))
               FROM memories WHERE contact_id = $c""",
            {
                "c": contact_id,
                "since": since,
                "types": list(churn.COMPLAINT_TYPES),
                "linked": self._complaint_linked(contact_id),
            },
        ).fetchall()
        by_part = {part: rest for part, *rest in rows}
        messages, _, first_m, last_m, inbound = by_part[0]
        purchases, ltv, first_p, last_p, bought = by_part[1]
        _, _, first_r, last_r, complaints = by_part[2]
        created = profile.created_at if profile else None
        first_contact = min(self._times(first_m, first_p, first_r, created), default=None)
        last_activity = max(self._times(last_m, last_p, last_r), default=None)
        inputs = churn.ChurnInputs(last_activity, int(inbound) + int(bought), int(complaints))
        risk = churn.churn_risk(inputs, now)
        return ContactStats(int(messages), int(purchases), float(ltv), first_contact, last_activity, risk)

    @staticmethod
    def _times(*values: datetime | None) -> list[datetime]:
        """The values that are times, in UTC."""
        return [t for t in map(_utc, values) if t is not None]

    def _complaint_linked(self, contact_id: str) -> list[int]:
        """Seqs of the contact's memories linked with churn.COMPLAINT_RELATIONSHIP."""
        code = self.contacts.relationships.code.get(churn.COMPLAINT_RELATIONSHIP)
        if code is None:
            return []
        view = self.contacts.view(contact_id)
        positions = view.links["pos"][view.links["rel"] == code]
        return view.memories["seq"][positions].tolist()

    # -- knowledge graph ------------------------------------------------------------------------

    def related_entities(
        self,
        entity_id: str,
        *,
        entity_type: str | None,
        target_types: frozenset[str],
        max_depth: int,
        limit: int,
    ) -> list[RelatedResult] | None:
        with self._lock:
            start = self._node(entity_id)
            if start is None or (entity_type and start.type != entity_type):
                return None
            reached = graph.best_paths(start.id, self._fetch_edges, max_depth)
            nodes = {n.id: n for n in self._nodes(list(reached))}
        results = [
            RelatedResult(nodes[node_id], r.path, r.relevance)
            for node_id, r in reached.items()
            if not target_types or nodes[node_id].type in target_types
        ]
        results.sort(key=lambda r: (-r.relevance, len(r.path), r.entity.id))
        return results[:limit]

    def _node(self, node_id: str) -> Entity | None:
        """The node with this id, if the store knows it (as an entity, a contact or an edge end)."""
        candidates = [node_id] if node_id == node_id.lower() else [node_id, node_id.lower()]
        for candidate in candidates:
            node = self._nodes([candidate], reveal=candidate)[0]
            if node.type != "unknown":
                return node
            if self.edges.has_node(candidate):
                return node
        return None

    # -- introspection (CLI, benchmarks) --------------------------------------------------------

    def compact_indexes(self) -> None:
        """Fold the per-contact and per-node arrays made by writes since open into the shared
        ones (contact_index.py, edge_index.py); bulk_load does it at its end."""
        with self._lock:
            self._fold_indexes()

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {
                table: int(self._scalar(f"SELECT count(*) FROM {table}"))
                for table in (
                    "contacts",
                    "messages",
                    "purchases",
                    "memories",
                    "entities",
                    "edges",
                    "postings",
                )
            }

    def schema_version(self) -> int:
        with self._lock:
            return int(self._scalar("SELECT max(version) FROM schema_version"))


class CorpusStats:
    """Document frequencies and lengths of the keyword index, kept in memory.

    Derived from the postings table (tallied when the store opens) and updated after each
    commit, under the store's lock, so BM25 needs no aggregate over all postings per query.
    """

    def __init__(self) -> None:
        self.df: dict[int, int] = {}
        self.documents = 0
        self.total_length = 0

    def load(self, con: duckdb.DuckDBPyConnection) -> None:
        for term, count in con.execute("SELECT term, count(*) FROM postings GROUP BY term").fetchall():
            self.df[int(term)] = int(count)
        row = con.execute("SELECT count(*), coalesce(sum(doc_len), 0) FROM memories").fetchone()
        self.documents, self.total_length = (int(row[0]), int(row[1])) if row else (0, 0)

    def add(self, terms: np.ndarray, doc_lengths: np.ndarray) -> None:
        """``terms``: the distinct terms of each new document, concatenated."""
        unique, counts = np.unique(terms, return_counts=True)
        for term, count in zip(unique.tolist(), counts.tolist(), strict=True):
            self.df[term] = self.df.get(term, 0) + count
        self.documents += len(doc_lengths)
        self.total_length += int(doc_lengths.sum())

    @property
    def average_length(self) -> float:
        return self.total_length / self.documents if self.documents else 1.0

    def idf(self, term: int) -> float:
        df = self.df.get(term, 0)
        return math.log(1 + (self.documents - df + 0.5) / (df + 0.5))


class _Transaction:
    def __init__(self, con: duckdb.DuckDBPyConnection, committed: Callable[[], None]) -> None:
        self._con = con
        self._committed = committed

    def __enter__(self) -> None:
        self._con.execute("BEGIN TRANSACTION")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type:
            self._con.execute("ROLLBACK")
            return
        self._con.execute("COMMIT")
        self._committed()


def _subset(columns: dict[str, Any], keep: np.ndarray) -> dict[str, Any]:
    """The rows of a batch of columns (lists or arrays) where ``keep`` is set."""
    if keep.all():
        return columns
    return {
        name: values[keep]
        if isinstance(values, np.ndarray)
        else [v for v, k in zip(values, keep.tolist(), strict=True) if k]
        for name, values in columns.items()
    }


def _term_frequencies(seqs: np.ndarray, terms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (seq, term) pairs (as rows of a (n, 2) array, sorted) and their counts. A
    lexsort and a diff: np.unique(axis=0) sorts a byte view and took 3x longer."""
    if len(seqs) == 0:
        return np.empty((0, 2), np.int64), np.empty(0, np.int64)
    order = np.lexsort((terms, seqs))
    seqs, terms = seqs[order], terms[order]
    starts = np.flatnonzero(np.r_[True, (seqs[1:] != seqs[:-1]) | (terms[1:] != terms[:-1])])
    counts = np.diff(np.r_[starts, len(seqs)])
    return np.stack([seqs[starts], terms[starts]], axis=1), counts


def _python(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _column(values: Sequence[Any]) -> np.ndarray:
    """A list as the numpy column DuckDB scans: strings, times, or numbers."""
    if isinstance(values, np.ndarray):
        return values
    sample = next((v for v in values if v is not None), "")
    if isinstance(sample, str):
        return _objects(values)
    if isinstance(sample, datetime):
        return _timestamps(values)
    return np.asarray(values)


__all__ = ["DuckDBStore"]
