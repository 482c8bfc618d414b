"""In-memory vector search: exact cosine (numpy) for small candidate sets, hnswlib beyond.

DuckDB holds the vectors durably; this index is *derived state* rebuilt from it:

* ``matrix`` has one row per memory ``seq`` (all L2-normalised, so cosine = dot product). It
  is filled from DuckDB when the store opens and appended to after each commit.
* Searches are scoped to one contact. When the contact has at most ``exact_max`` vectors
  (the switch point measured by benchmarks/memory_vector_switch.py) the scores are exact:
  ``matrix[candidates] @ q``. Above that, or unscoped, an hnswlib graph over all vectors is
  queried with a filter on the candidate labels.
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
from collections.abc import Callable
from pathlib import Path

import hnswlib
import numpy as np

log = logging.getLogger("ventros.memory.vectors")

#: Candidate-set size up to which exact search is used (benchmarks/memory_vector_switch.py).
DEFAULT_EXACT_MAX = 100_000
#: Above 1/_GATHER_RATIO of the rows, exact search multiplies the whole matrix (measured ~5x
#: cheaper per row than gathering the rows first).
_GATHER_RATIO = 4
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 100
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
        self._matrix = np.zeros((1024, dim), dtype=np.float32)
        self._present = np.zeros(1024, dtype=bool)
        self.count = 0
        self._lock = threading.RLock()
        self._hnsw: hnswlib.Index | None = None
        self._hnsw_max_seq = -1
        self._builder: threading.Thread | None = None

    # -- writes ---------------------------------------------------------------------------------

    def add(self, seqs: np.ndarray, vectors: np.ndarray) -> None:
        """Add (or replace) vectors; called after the DuckDB transaction that holds them commits."""
        if len(seqs) == 0:
            return
        seqs = np.asarray(seqs, dtype=np.int64)
        with self._lock:
            self._grow(int(seqs.max()) + 1)
            self.count += int((~self._present[seqs]).sum())
            self._matrix[seqs] = vectors
            self._present[seqs] = True
            if self._hnsw is not None:
                self._hnsw_add(seqs, vectors)

    def _grow(self, needed: int) -> None:
        capacity = len(self._present)
        if needed <= capacity:
            return
        new_capacity = max(needed, capacity * 2)
        matrix = np.zeros((new_capacity, self.dim), dtype=np.float32)
        matrix[:capacity] = self._matrix
        present = np.zeros(new_capacity, dtype=bool)
        present[:capacity] = self._present
        self._matrix, self._present = matrix, present

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
