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
        self._adjacent: list[_Growable] = []  # node code -> ids of the edges touching it

    def has_node(self, node_id: str) -> bool:
        return node_id in self.nodes.code

    def fetch(self, node_ids: Iterable[str], limit: int, *, with_times: bool = True) -> list[EdgeRecord]:
        """Edges touching any of ``node_ids`` (each once, insertion order, at most ``limit``)."""
        lists = [self._adjacent[c].rows for c in (self.nodes.code.get(n) for n in node_ids) if c is not None]
        if not lists:
            return []
        ids = np.unique(np.concatenate(lists))[:limit]
        rows = self._edges.rows[ids]
        names, rels = self.nodes.names, self.relationships.names
        created = rows["created"].tolist() if with_times else [int(_NO_TIME)] * len(rows)
        return [
            EdgeRecord(names[f], names[t], rels[r], w, None if c == _NO_TIME else _EPOCH + timedelta(microseconds=c))
            for f, t, r, w, c in zip(
                rows["from"].tolist(), rows["to"].tolist(), rows["rel"].tolist(), rows["weight"].tolist(),
                created, strict=True,
            )
        ]  # fmt: skip

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
        return self._edges.rows.nbytes + sum(a.rows.nbytes for a in self._adjacent)

    # -- writes ---------------------------------------------------------------------------------

    def upsert(self, edges: Sequence[EdgeRecord]) -> None:
        """Mirror of DuckDBStore._upsert_edges for a committed batch (keys already merged)."""
        for edge in edges:
            f, t = self._node(edge.from_id), self._node(edge.to_id)
            r = self.relationships.get(edge.relationship)
            ids = self._adjacent[f].rows
            found = self._edges.rows[ids]
            same = ids[(found["from"] == f) & (found["to"] == t) & (found["rel"] == r)]
            if len(same):
                weights = self._edges.rows["weight"]  # a view: assignments land in the index
                weights[same] = np.maximum(weights[same], np.float32(edge.weight))
                continue
            row = np.array([(f, t, r, edge.weight, _micros(edge.created_at))], dtype=EDGE)
            edge_id = np.array([self._edges.size], dtype=np.int32)
            self._edges.extend(row)
            self._adjacent[f].extend(edge_id)
            if t != f:
                self._adjacent[t].extend(edge_id)

    def _node(self, node_id: str) -> int:
        code = self.nodes.get(node_id)
        if code == len(self._adjacent):
            self._adjacent.append(_Growable(np.empty(0, np.int32)))
        return code

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
        ids = np.arange(len(edges), dtype=np.int32)
        loop = edges["from"] == edges["to"]
        node = np.concatenate([edges["from"], edges["to"][~loop]])
        edge_ids = np.concatenate([ids, ids[~loop]])
        order = np.argsort(node, kind="stable")
        node, edge_ids = node[order], edge_ids[order]
        bounds = np.searchsorted(node, np.arange(len(self.nodes.names) + 1))
        self._adjacent = [
            _Growable(edge_ids[bounds[c] : bounds[c + 1]]) for c in range(len(self.nodes.names))
        ]
