"""In-memory vector search: exact cosine (numpy) for small candidate sets, hnswlib beyond.

DuckDB holds the vectors durably; this index is *derived state* rebuilt from it:

* ``matrix`` has one row per memory ``seq`` (all L2-normalised, so cosine = dot product). It
  is filled from DuckDB when the store opens and appended to after each commit.
* Searches are scoped to one contact. When the contact has at most ``exact_max`` vectors
  (the switch point measured by benchmarks/memory_vector_switch.py) the scores are exact:
  ``matrix[candidates] @ q``. Above that, or unscoped, an hnswlib graph over all vectors is
  queried with a filter on the candidate labels.
* A contact's rows are scattered through ``matrix`` (seq order interleaves contacts), and
  gathering them costs far more than the product: 4-5 ms for 10,000 rows of a 1M-row matrix
  against 0.15-0.3 ms for the product over a contiguous copy (2-core machine, numpy 2 with
  OpenBLAS). So contacts with at least BLOCK_MIN vectors get a contiguous copy of them
  (``_Blocks``), extended as they grow, the most recently searched kept within a byte budget.
* The hnswlib graph exists only once a search needs it: the first top_k over more than
  ``exact_max`` candidates starts it in a background thread (until it is ready the exact
  path answers, so results never depend on it). Searches are scoped to one contact, so a
  store whose contacts each hold fewer memories than the switch point never pays for a
  graph: at 1M memories over 50k contacts that is ~1.7 GB of RAM and many minutes of a core
  saved (measured: that build had not finished after 10 minutes on this busy 2-core machine).
* Once built, the graph is saved beside the database on close; the next time one is needed
  it is loaded and caught up with every seq above the one it was saved at (a crash, kill -9,
  just means a longer catch-up), or rebuilt when it does not match the vectors.
* Building and catching up add vectors in chunks with the lock released, so writes and
  searches are never stalled by them (at 1M vectors a build takes minutes, and StoreMemory
  takes this lock after its commit). Only a resize of the live graph (a copy, once per
  doubling) still holds the lock.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import hnswlib
import numpy as np

from .growable import GrowableMatrix

log = logging.getLogger("ventros.memory.vectors")

#: Candidate-set size up to which exact search is used (benchmarks/memory_vector_switch.py).
DEFAULT_EXACT_MAX = 100_000
#: Above 1/_GATHER_RATIO of the rows, exact search multiplies the whole matrix (measured ~5x
#: cheaper per row than gathering the rows first).
_GATHER_RATIO = 4
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 100
#: Contacts with at least this many memories get a contiguous block of their vectors; below
#: it, gathering their rows costs little (~0.4 ms for 1,000).
BLOCK_MIN = 1_000
#: Byte budget of those blocks (least recently searched dropped first): 40 contacts of 10,000
#: memories at 384 dimensions, counting their spare capacity.
BLOCK_BUDGET = 512 * 1024 * 1024
#: Capacity factor when a write needs more rows than the matrix has (and no reserve() made
#: room): bounded slack (25 % of address space; resident memory follows the rows written, see
#: _resize) at the price of more frequent copies than doubling.
GROWTH = 1.25
#: What ``_matrix`` is while the matrix grows (not a view of its mapping).
_NO_ROWS = np.empty((0, 0), dtype=np.float32)
#: Vectors added to a graph under construction per step (the lock is held only to copy them).
_BUILD_CHUNK = 20_000
#: At most this many vectors are added with the lock held, when a new graph goes live.
_INSTALL_TAIL = 2_048


class VectorIndex:
    def __init__(
        self,
        dim: int,
        *,
        embedder_name: str,
        sidecar: Path | None = None,
        exact_max: int = DEFAULT_EXACT_MAX,
    ) -> None:
        self.dim = dim
        self.embedder_name = embedder_name
        self.exact_max = exact_max
        self._sidecar = sidecar
        # Rows are read and written under the store's lock (DuckDBStore), or this one.
        self._rows = GrowableMatrix(1024, dim)
        self._matrix = self._rows.array
        self._present = np.zeros(1024, dtype=bool)
        self.count = 0
        self._high = 0  # one past the highest seq ever set: the rows a growth copies
        self._lock = threading.RLock()
        self._hnsw: hnswlib.Index | None = None
        self._hnsw_max_seq = -1
        self._builder: threading.Thread | None = None
        # Bumped when a vector is set for a seq some block already copied (with or without a
        # vector): blocks of an older generation are stale. New memories get new, higher seqs,
        # so in practice only re-embedding bumps it.
        self.generation = 0
        self._blocks = _Blocks(self, BLOCK_BUDGET)

    # -- writes ---------------------------------------------------------------------------------

    def add(self, seqs: np.ndarray, vectors: np.ndarray) -> None:
        """Add (or replace) vectors; called after the DuckDB transaction that holds them commits."""
        if len(seqs) == 0:
            return
        seqs = np.asarray(seqs, dtype=np.int64)
        with self._lock:
            needed = int(seqs.max()) + 1
            if needed > len(self._present):
                self._resize(max(needed, int(len(self._present) * GROWTH)))
            if int(seqs.min()) <= self._blocks.high_seq:
                self.generation += 1
            self.count += int((~self._present[seqs]).sum())
            first = int(seqs[0])
            if int(seqs[-1]) - first + 1 == len(seqs) and bool((np.diff(seqs) == 1).all()):
                # A run of seqs (every batch write): a slice assignment is a memcpy, where
                # fancy indexing copied row by row (0.57 against 0.03 s for 200k x 384 floats).
                self._matrix[first : first + len(seqs)] = vectors
                self._present[first : first + len(seqs)] = True
            else:
                self._matrix[seqs] = vectors
                self._present[seqs] = True
            self._high = max(self._high, needed)
            if self._hnsw is not None:
                self._hnsw_add(seqs, vectors)

    def reserve(self, rows: int) -> None:
        """Room for seqs below ``rows`` (a bulk load that knows its size calls it first, so
        the matrix is not copied as it grows). Untouched rows of the new matrix cost no
        resident memory: np.zeros gets fresh zero pages from the OS, which become resident
        only when written."""
        with self._lock:
            if rows > len(self._present):
                self._resize(rows)

    def _resize(self, capacity: int) -> None:
        """Room for ``capacity`` rows. The matrix grows in place (growable.py): a numpy copy
        of 1.5 GB held this lock 3.5 s at 1M memories, on the first StoreMemory after opening
        (measured), and made both copies resident meanwhile. Rows never written cost address
        space only."""
        self._matrix = _NO_ROWS  # our view of the mapping must go for it to grow in place
        self._rows.resize(capacity)
        self._matrix = self._rows.array
        present = np.zeros(capacity, dtype=bool)
        present[: self._high] = self._present[: self._high]
        self._present = present

    def _hnsw_add(self, seqs: np.ndarray, vectors: np.ndarray) -> None:
        assert self._hnsw is not None
        needed = int(seqs.max()) + 1
        if needed > self._hnsw.get_max_elements():
            self._hnsw.resize_index(max(needed, 2 * self._hnsw.get_max_elements()))
        self._hnsw.add_items(vectors, seqs, num_threads=1)
        self._hnsw_max_seq = max(self._hnsw_max_seq, int(seqs.max()))

    # -- reads ----------------------------------------------------------------------------------

    def has(self, seqs: np.ndarray) -> np.ndarray:
        seqs = np.asarray(seqs, dtype=np.int64)
        inside = seqs < len(self._present)
        out = np.zeros(len(seqs), dtype=bool)
        out[inside] = self._present[seqs[inside]]
        return out

    def vectors(self, seqs: np.ndarray) -> np.ndarray:
        seqs = np.asarray(seqs, dtype=np.int64)
        out = np.zeros((len(seqs), self.dim), dtype=np.float32)
        mask = self.has(seqs)
        out[mask] = self._matrix[seqs[mask]]
        return out

    def similarities(self, query: np.ndarray, seqs: np.ndarray) -> np.ndarray:
        """Exact cosine of ``query`` with each seq's vector; NaN where the memory has no vector."""
        seqs = np.asarray(seqs, dtype=np.int64)
        mask = self.has(seqs)
        sims = np.full(len(seqs), np.nan, dtype=np.float32)
        if not mask.any():
            return sims
        query = query.astype(np.float32)
        rows = int(seqs[mask].max()) + 1
        if mask.sum() * _GATHER_RATIO > rows:
            # Many candidates: one pass over the matrix beats copying the candidates' rows out.
            sims[mask] = (self._matrix[:rows] @ query)[seqs[mask]]
        else:
            sims[mask] = self._matrix[seqs[mask]] @ query
        return sims

    def contact_similarities(self, query: np.ndarray, contact_id: str, seqs: np.ndarray) -> np.ndarray:
        """similarities() for all of one contact's memories (``seqs``: all of them, ascending,
        only ever appended to), from a contiguous block when the contact is big."""
        if len(seqs) < BLOCK_MIN:
            return self.similarities(query, seqs)
        return self._blocks.similarities(query.astype(np.float32), contact_id, np.asarray(seqs, np.int64))

    def top_k(
        self, query: np.ndarray, candidates: np.ndarray | None, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The k most similar (seqs, cosines), best first, among ``candidates`` (None: all)."""
        with self._lock:
            n_candidates = self.count if candidates is None else len(candidates)
            if n_candidates > self.exact_max:
                if self._hnsw is None:
                    self._start_builder(self._load_or_build)  # answered exactly meanwhile
                else:
                    found = self._hnsw_top_k(query, candidates, k)
                    if found is not None:
                        return found
            pool = np.flatnonzero(self._present) if candidates is None else np.asarray(candidates, np.int64)
        sims = self.similarities(query, pool)
        valid = ~np.isnan(sims)
        pool, sims = pool[valid], sims[valid]
        if len(pool) > k:
            top = np.argpartition(-sims, k - 1)[:k]
            pool, sims = pool[top], sims[top]
        order = np.argsort(-sims, kind="stable")
        return pool[order], sims[order]

    def _hnsw_top_k(
        self, query: np.ndarray, candidates: np.ndarray | None, k: int
    ) -> tuple[np.ndarray, np.ndarray] | None:
        assert self._hnsw is not None
        allowed = None if candidates is None else set(np.asarray(candidates).tolist())
        k = min(k, self.count if allowed is None else len(allowed))
        if k <= 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        self._hnsw.set_ef(max(2 * k, 100))
        try:
            labels, distances = self._hnsw.knn_query(
                query.reshape(1, -1), k=k, filter=None if allowed is None else allowed.__contains__
            )
        except RuntimeError:
            return None  # fewer than k reachable under the filter: the caller falls back to exact
        return labels[0].astype(np.int64), (1.0 - distances[0]).astype(np.float32)

    # -- hnswlib lifecycle ----------------------------------------------------------------------

    @property
    def hnsw_ready(self) -> bool:
        return self._hnsw is not None

    def _start_builder(self, work: Callable[[], None]) -> None:
        with self._lock:
            if self._builder is not None and self._builder.is_alive():
                return
            self._builder = threading.Thread(target=work, name="hnsw-build", daemon=True)
            self._builder.start()

    def build_hnsw(self) -> None:
        """Build a graph over every vector, then install it (see _finish)."""
        with self._lock:
            capacity = len(self._present)
        index = hnswlib.Index(space="ip", dim=self.dim)
        index.init_index(max_elements=max(capacity, 1024), ef_construction=HNSW_EF_CONSTRUCTION, M=HNSW_M)
        self._finish(index, -1)

    def _finish(self, index: hnswlib.Index, done_max: int) -> None:
        """Add to ``index`` every vector with a seq above ``done_max``, then make it the live graph.

        The bulk is added in chunks *without* holding the lock: at a million vectors a build
        takes minutes, and writes (StoreMemory) and searches must go on meanwhile. Each chunk's
        rows are copied out under the lock (a bounded hold); writers keep appending, so the
        loop chases them until what is left is at most _INSTALL_TAIL vectors, which are added
        under the lock together with the install, so no write can fall between the two.
        """
        while True:
            with self._lock:
                pending = np.flatnonzero(self._present[done_max + 1 :]) + (done_max + 1)
                if len(pending) <= _INSTALL_TAIL:
                    self._install(index, done_max, pending)
                    return
                chunk = pending[:_BUILD_CHUNK]
                vectors = self._matrix[chunk]  # fancy indexing: a copy, safe after the lock
            needed = int(chunk.max()) + 1
            if needed > index.get_max_elements():  # not shared yet: resizing needs no lock
                index.resize_index(max(needed, 2 * index.get_max_elements()))
            index.add_items(vectors, chunk, num_threads=max(1, (os.cpu_count() or 2) - 1))
            done_max = int(chunk.max())

    def _install(self, index: hnswlib.Index, done_max: int, tail: np.ndarray) -> None:
        """Under the lock: add the last few vectors and make ``index`` the live graph."""
        self._hnsw, self._hnsw_max_seq = index, done_max
        if len(tail):
            self._hnsw_add(tail, self._matrix[tail])
        log.info("hnsw index ready: %d vectors (the last %d added at install)", self.count, len(tail))

    @property
    def building(self) -> bool:
        return self._builder is not None and self._builder.is_alive()

    def wait_for_hnsw(self, timeout: float | None = None) -> bool:
        builder = self._builder
        if builder is not None:
            builder.join(timeout)
        return self._hnsw is not None

    def _load_or_build(self) -> None:
        """The saved graph when it belongs to these vectors (caught up), else a new one."""
        saved = self._load_sidecar() if self._sidecar is not None else None
        if saved is None:
            self.build_hnsw()
        else:
            self._finish(*saved)

    def _load_sidecar(self) -> tuple[hnswlib.Index, int] | None:
        assert self._sidecar is not None
        meta_path = self._sidecar.with_suffix(self._sidecar.suffix + ".json")
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            return None
        present_max = int(np.flatnonzero(self._present).max()) if self.count else -1
        if meta.get("embedder") != self.embedder_name or meta.get("dim") != self.dim:
            return None
        if meta.get("max_seq", -1) > present_max:
            return None  # the database is older than the graph (restored backup?): rebuild
        try:
            index = hnswlib.Index(space="ip", dim=self.dim)
            index.load_index(
                str(self._sidecar), max_elements=max(len(self._present), meta.get("capacity", 0))
            )
        except (RuntimeError, OSError) as exc:
            log.warning("hnsw sidecar %s unreadable (%s); rebuilding", self._sidecar, exc)
            return None
        return index, int(meta["max_seq"])

    def save(self) -> None:
        """Write the graph beside the database (atomically: temp files, then rename)."""
        if self._sidecar is None or self._hnsw is None:
            return
        with self._lock:
            tmp = self._sidecar.with_suffix(self._sidecar.suffix + ".tmp")
            self._hnsw.save_index(str(tmp))
            os.replace(tmp, self._sidecar)
            meta = {
                "embedder": self.embedder_name,
                "dim": self.dim,
                "max_seq": self._hnsw_max_seq,
                "capacity": self._hnsw.get_max_elements(),
            }
            meta_path = self._sidecar.with_suffix(self._sidecar.suffix + ".json")
            meta_tmp = meta_path.with_suffix(".tmp")
            meta_tmp.write_text(json.dumps(meta))
            os.replace(meta_tmp, meta_path)


class _Block:
    __slots__ = ("count", "generation", "last_seq", "matrix")

    def __init__(self, matrix: np.ndarray, count: int, last_seq: int, generation: int) -> None:
        self.matrix = matrix  # rows [0, count) hold the contact's vectors (NaN where none)
        self.count = count
        self.last_seq = last_seq
        self.generation = generation


class _Blocks:
    """Contiguous copies of big contacts' vectors (see the module docstring), LRU by bytes."""

    def __init__(self, index: VectorIndex, budget: int) -> None:
        self._index = index
        self._budget = budget
        self._blocks: OrderedDict[str, _Block] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.high_seq = -1  # the highest seq copied into a block

    def similarities(self, query: np.ndarray, contact_id: str, seqs: np.ndarray) -> np.ndarray:
        with self._lock:
            block = self._current(contact_id, seqs)
            return block.matrix[: len(seqs)] @ query

    def _current(self, contact_id: str, seqs: np.ndarray) -> _Block:
        block = self._blocks.pop(contact_id, None)
        if block is not None:
            self._bytes -= block.matrix.nbytes
            fresh = block.generation == self._index.generation and block.count <= len(seqs)
            if not fresh or int(seqs[block.count - 1]) != block.last_seq:
                block = None
        if block is None:
            block = _Block(np.empty((0, self._index.dim), np.float32), 0, -1, self._index.generation)
        if block.count < len(seqs):
            self._extend(block, seqs[block.count :])
        self._blocks[contact_id] = block
        self._bytes += block.matrix.nbytes
        while self._bytes > self._budget and len(self._blocks) > 1:
            _, dropped = self._blocks.popitem(last=False)
            self._bytes -= dropped.matrix.nbytes
        return block

    def _extend(self, block: _Block, new_seqs: np.ndarray) -> None:
        needed = block.count + len(new_seqs)
        if needed > len(block.matrix):
            matrix = np.empty((max(needed, 2 * len(block.matrix)), self._index.dim), np.float32)
            matrix[: block.count] = block.matrix[: block.count]
            block.matrix = matrix
        rows = self._index.vectors(new_seqs)
        rows[~self._index.has(new_seqs)] = np.nan
        block.matrix[block.count : needed] = rows
        block.count, block.last_seq = needed, int(new_seqs[-1])
        self.high_seq = max(self.high_seq, block.last_seq)
