"""The knowledge-graph edges in memory, by node: what graph traversals read (derived state).

A traversal (graph.py) asks, per hop, for every edge touching a set of nodes. In DuckDB that is
``WHERE from_id IN (...) OR to_id IN (...)``, a scan of the whole edges table per hop (about
11 ms for the two hops of a GRAPH search at 300k memories; ART indexes on the two columns did
not help: DuckDB does not use them for IN lists or an OR, and a UNION of equality lookups still
took 5.7 ms, docs/memory.md). Here each node has the ids of its edges, so a hop costs what it
returns.

Like contact_index.py: built at open from one ordered scan (codes made by DuckDB), updated after
each commit that upserts edges (same rule as the SQL: an edge already there, same ends and
relationship, keeps the larger weight and its creation time), under the store's lock. Edges are
kept in insertion order, so a fetch returns them in the order the table scan did.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

import duckdb
import numpy as np

from .contact_index import _Codes, _Growable
from .store import EdgeRecord

EDGE = np.dtype([("from", "<i4"), ("to", "<i4"), ("rel", "<i4"), ("weight", "<f4"), ("created", "<i8")])
_NO_TIME = np.iinfo(np.int64).min
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _micros(value: datetime | None) -> int:
    if value is None:
        return int(_NO_TIME)
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value
    return (value - _EPOCH) // timedelta(microseconds=1)


class EdgeIndex:
    def __init__(self) -> None:
        self.nodes = _Codes()
        self.relationships = _Codes()
        self._edges = _Growable(np.empty(0, EDGE))
        # node code -> ids of the edges touching it: for the nodes loaded at open, slices of one
        # array (CSR, no Python object per node: see contact_index._Base); a node that gained
        # edges since gets its own growable array.
        self._adj_ids = np.empty(0, np.int32)
        self._adj_offsets = np.zeros(1, np.int64)
        self._adj_own: dict[int, _Growable] = {}

    def has_node(self, node_id: str) -> bool:
        return node_id in self.nodes.code

    def fetch(self, node_ids: Iterable[str], limit: int) -> list[EdgeRecord]:
        """Edges touching any of ``node_ids`` (each once, insertion order, at most ``limit``)."""
        lists = [self._adjacent(c) for c in (self.nodes.code.get(n) for n in node_ids) if c is not None]
        if not lists:
            return []
        ids = np.unique(np.concatenate(lists))[:limit]
        rows = self._edges.rows[ids]
        names, rels = self.nodes.names, self.relationships.names
        return [
            EdgeRecord(names[f], names[t], rels[r], w, None if c == _NO_TIME else _EPOCH + timedelta(microseconds=c))
            for f, t, r, w, c in zip(
                rows["from"].tolist(), rows["to"].tolist(), rows["rel"].tolist(), rows["weight"].tolist(),
                rows["created"].tolist(), strict=True,
            )
        ]  # fmt: skip

    def relevance(self, start: str, wanted: np.ndarray, *, decay: float, max_visited: int) -> np.ndarray:
        """Best-path relevance from ``start`` (graph.py's definition, depth <= 2) of each target
        node, given by its code (``nodes.code``; -1 for an id that is not a node), 0.0 for a
        target not within 2 hops: what GRAPH scoring needs, without walking the graph.

        graph.best_paths walks every edge of every neighbour: for a contact linked to 2,000
        products of a 100k-memory store, 24,000 edges and ~150 ms per search in Python. Here,
        in numpy: a depth-1 relevance is the heaviest edge between start and the target; a
        depth-2 path scores at most ``decay`` (weights are <= 1), so only targets whose depth-1
        relevance is below ``decay`` need their own edges read, to find
        max over start's neighbours m of  rel1(m) * w(m, target) * decay.
        Like best_paths, depth 2 is skipped when depth 1 reached more than ``max_visited`` nodes.
        """
        out = np.zeros(len(wanted))
        code = self.nodes.code.get(start)
        if code is None or not len(wanted):
            return out
        near, near_rel = self._neighbours(code)
        found, at = _lookup(near, wanted)
        out[found] = near_rel[at[found]]
        if len(near) > max_visited:
            return out
        for i in np.flatnonzero((wanted >= 0) & (wanted != code) & (out < decay)).tolist():
            target = int(wanted[i])
            ends, weights = self._neighbour_edges(target)
            keep = (ends != code) & (ends != target)
            via, at = _lookup(near, ends[keep])
            if via.any():
                out[i] = max(out[i], float((near_rel[at[via]] * weights[keep][via]).max()) * decay)
        return out

    def _neighbour_edges(self, code: int) -> tuple[np.ndarray, np.ndarray]:
        """For each edge touching ``code``: the node at its other end and its weight in [0, 1]."""
        rows = self._edges.rows[self._adjacent(code)]
        ends = np.where(rows["from"] == code, rows["to"], rows["from"]).astype(np.int64)
        return ends, np.clip(rows["weight"].astype(np.float64), 0.0, 1.0)

    def _neighbours(self, code: int) -> tuple[np.ndarray, np.ndarray]:
        """The nodes one edge from ``code`` (ascending, itself excluded) and the heaviest edge
        weight to each."""
        ends, weights = self._neighbour_edges(code)
        keep = ends != code
        ends, weights = ends[keep], weights[keep]
        nodes, inverse = np.unique(ends, return_inverse=True)
        best = np.zeros(len(nodes))
        np.maximum.at(best, inverse, weights)
        return nodes, best

    def export(self) -> list[tuple[str, str, str, float, int]]:
        """Every edge with names resolved, in insertion order (for tests)."""
        rows = self._edges.rows
        names, rels = self.nodes.names, self.relationships.names
        return [
            (names[f], names[t], rels[r], w, c)
            for f, t, r, w, c in zip(
                rows["from"].tolist(), rows["to"].tolist(), rows["rel"].tolist(), rows["weight"].tolist(),
                rows["created"].tolist(), strict=True,
            )
        ]  # fmt: skip

    def nbytes(self) -> int:
        own = sum(a.rows.nbytes for a in self._adj_own.values())
        return self._edges.rows.nbytes + self._adj_ids.nbytes + self._adj_offsets.nbytes + own

    def _adjacent(self, code: int) -> np.ndarray:
        own = self._adj_own.get(code)
        if own is not None:
            return own.rows
        if code + 1 < len(self._adj_offsets):
            return self._adj_ids[self._adj_offsets[code] : self._adj_offsets[code + 1]]
        return self._adj_ids[:0]

    # -- writes ---------------------------------------------------------------------------------

    def upsert(self, edges: Sequence[EdgeRecord]) -> None:
        """Mirror of DuckDBStore._upsert_edges for a committed batch (keys already merged):
        existing keys keep the larger weight, new keys are appended."""
        if edges:
            self.upsert_columns(
                [e.from_id for e in edges], [e.to_id for e in edges], [e.relationship for e in edges],
                np.array([e.weight for e in edges], dtype=np.float64),
                np.array([_micros(e.created_at) for e in edges], dtype=np.int64),
            )  # fmt: skip

    def upsert_columns(
        self, from_id: Sequence[str], to_id: Sequence[str], relationship: Sequence[str],
        weight: np.ndarray, created_us: np.ndarray,
    ) -> None:  # fmt: skip
        """``upsert`` from columns named like the edges table's (keys unique; ``created_us``:
        microseconds, or the minimum int64 for none): what a bulk import hands over
        (DuckDBStore._insert_links), with no EdgeRecord per edge."""
        if not len(from_id):
            return
        f, t = self.nodes.encode(from_id), self.nodes.encode(to_id)
        r = self.relationships.encode(relationship)
        key, edge = self._matches(f, t, r)
        stored = self._edges.rows["weight"]  # a view: assignments land in the index
        stored[edge] = np.maximum(stored[edge], weight[key].astype(np.float32))
        new = np.ones(len(f), dtype=bool)
        new[key] = False
        if not new.any():
            return
        rows = np.empty(int(new.sum()), dtype=EDGE)
        rows["from"], rows["to"], rows["rel"] = f[new], t[new], r[new]
        rows["weight"], rows["created"] = weight[new], created_us[new]
        first = self._edges.size
        self._edges.extend(rows)
        self._link(rows, np.arange(first, first + len(rows), dtype=np.int32))

    def known_weights(
        self, from_ids: Sequence[str], to_ids: Sequence[str], relationships: Sequence[str]
    ) -> np.ndarray:
        """For each key (from, to, relationship), the weight of the edge with that key (the
        lightest, should the table hold several), or NaN when there is none: what an upsert
        needs to know without joining the edges table."""
        out = np.full(len(from_ids), np.nan, dtype=np.float64)
        key, edge = self._matches(
            self.nodes.known(from_ids), self.nodes.known(to_ids), self.relationships.known(relationships)
        )
        np.fmin.at(out, key, self._edges.rows["weight"][edge].astype(np.float64))
        return out

    def _matches(self, f: np.ndarray, t: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pairs (i, edge id): the stored edges whose key is key i = (f[i], t[i], r[i]), for
        keys given once each (codes; -1: unknown, matches nothing).

        One sort of the keys with the edges of their from nodes (an edge's key always has its
        from node there), in numpy: a dict of every candidate edge's key, rebuilt per batch
        twice (known_weights, then upsert), was ~0.5 s of a 200k-memory import (py-spy)."""
        asked = np.flatnonzero((f >= 0) & (t >= 0) & (r >= 0))
        lists = [self._adjacent(c) for c in np.unique(f[asked]).tolist()]
        ids = np.unique(np.concatenate(lists)) if lists else np.empty(0, np.int32)
        if not len(ids):
            return np.empty(0, np.int64), np.empty(0, np.int64)
        rows = self._edges.rows[ids]
        froms = np.concatenate([f[asked], rows["from"]])
        tos = np.concatenate([t[asked], rows["to"]])
        rels = np.concatenate([r[asked], rows["rel"]])
        is_edge = np.arange(len(froms)) >= len(asked)
        # Sorted by key, the asked key (if any) first in its run of equal keys.
        order = np.lexsort((is_edge, rels, tos, froms))
        froms, tos, rels, is_edge = froms[order], tos[order], rels[order], is_edge[order]
        starts = np.r_[True, (froms[1:] != froms[:-1]) | (tos[1:] != tos[:-1]) | (rels[1:] != rels[:-1])]
        run = np.cumsum(starts) - 1
        heads = order[starts]
        asker = np.full(len(heads), -1, dtype=np.int64)
        head_asked = heads < len(asked)
        asker[head_asked] = asked[heads[head_asked]]
        asker_of = asker[run[is_edge]]
        matched = asker_of >= 0
        return asker_of[matched], ids[order[is_edge][matched] - len(asked)].astype(np.int64)

    def _link(self, rows: np.ndarray, ids: np.ndarray) -> None:
        """Add edge ids to the adjacency of both their ends (once for a loop)."""
        loop = rows["from"] == rows["to"]
        node = np.concatenate([rows["from"], rows["to"][~loop]])
        edge_ids = np.concatenate([ids, ids[~loop]])
        order = np.argsort(node, kind="stable")
        node, edge_ids = node[order], edge_ids[order]
        starts = np.flatnonzero(np.r_[True, node[1:] != node[:-1]])
        for start, end in zip(starts.tolist(), [*starts[1:].tolist(), len(node)], strict=True):
            code = int(node[start])
            own = self._adj_own.get(code)
            if own is None:
                own = self._adj_own[code] = _Growable(self._adjacent(code))
            own.extend(edge_ids[start:end])

    # -- bulk load at open ----------------------------------------------------------------------

    def load(self, con: duckdb.DuckDBPyConnection) -> None:
        ends = "(SELECT from_id AS id FROM edges UNION SELECT to_id FROM edges)"
        self.nodes = _Codes([r[0] for r in con.execute(f"SELECT id FROM {ends} ORDER BY id").fetchall()])
        self.relationships = _Codes(
            [r[0] for r in con.execute("SELECT DISTINCT relationship FROM edges ORDER BY 1").fetchall()]
        )
        got = con.execute(
            f"""WITH n AS (SELECT id, (row_number() OVER (ORDER BY id) - 1)::INTEGER AS code FROM {ends})
                SELECT e.rowid AS rid, f.code AS f, t.code AS t,
                       (dense_rank() OVER (ORDER BY e.relationship) - 1)::INTEGER AS r, e.weight,
                       coalesce(epoch_us(e.created_at), {int(_NO_TIME)}) AS c
                FROM edges e JOIN n f ON f.id = e.from_id JOIN n t ON t.id = e.to_id ORDER BY rid"""
        ).fetchnumpy()
        edges = np.empty(len(got["f"]), EDGE)
        for field, column in (
            ("from", "f"),
            ("to", "t"),
            ("rel", "r"),
            ("weight", "weight"),
            ("created", "c"),
        ):
            edges[field] = np.asarray(got[column])
        self._edges = _Growable(edges)
        self._build_adjacency()

    def _build_adjacency(self) -> None:
        edges = self._edges.rows
        ids = np.arange(len(edges), dtype=np.int32)
        loop = edges["from"] == edges["to"]
        node = np.concatenate([edges["from"], edges["to"][~loop]])
        edge_ids = np.concatenate([ids, ids[~loop]])
        order = np.argsort(node, kind="stable")
        node, self._adj_ids = node[order], edge_ids[order]
        self._adj_offsets = np.searchsorted(node, np.arange(len(self.nodes.names) + 1)).astype(np.int64)
        self._adj_own = {}

    def compact(self) -> None:
        """Rebuild the shared adjacency arrays (after a bulk import: no object per node left)."""
        if self._adj_own:
            self._build_adjacency()


def _lookup(sorted_values: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each of ``values``: whether it is in ``sorted_values``, and where (valid where found)."""
    if len(sorted_values) == 0:
        return np.zeros(len(values), bool), np.zeros(len(values), np.int64)
    at = np.minimum(np.searchsorted(sorted_values, values), len(sorted_values) - 1)
    return sorted_values[at] == values, at
