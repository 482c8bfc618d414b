"""Knowledge-graph traversal, independent of the database (edges come from a callback).

Edges are directed in storage (contact --purchased--> product) but walked both ways: the
products a contact bought and the contacts who bought a product are both "related".

Relevance of a node reached by a path of edges e1..ed (d hops):

    relevance = w(e1) * w(e2) * ... * w(ed) * DECAY ** (d - 1)        DECAY = 0.5

so a direct neighbour over a weight-1 edge scores 1.0, one two hops away over weight-1 edges
0.5, and weak edges pull the score down multiplicatively; always in [0, 1]. The *best path* is
the one with the highest relevance among paths of at most ``max_depth`` hops. It is found
level by level (a Bellman-Ford limited to max_depth rounds), which is exact under the depth
limit, unlike a best-first search that can settle a node through a long path and then cannot
extend it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .store import EdgeRecord

DECAY = 0.5
#: Hard cap on nodes visited by one traversal, so a hub (a product bought by everyone) cannot
#: turn one request into a scan of the whole graph.
MAX_VISITED = 20_000

EdgeFetcher = Callable[[list[str]], Iterable[EdgeRecord]]


@dataclass
class Reached:
    node_id: str
    relevance: float
    path: list[EdgeRecord]

    @property
    def depth(self) -> int:
        return len(self.path)


def _other_end(edge: EdgeRecord, node: str) -> str:
    return edge.to_id if edge.from_id == node else edge.from_id


def best_paths(start: str, fetch_edges: EdgeFetcher, max_depth: int) -> dict[str, Reached]:
    """Every node within ``max_depth`` hops of ``start`` with its best path (start excluded).

    ``level`` holds, for the current depth d, the best path of exactly d hops to each node; the
    answer is the best over all levels. Keeping levels apart is what makes it exact: a node's
    best path may be long, while a shorter, weaker one is the one that can still be extended.
    """
    level: dict[str, Reached] = {start: Reached(start, 1.0, [])}
    best: dict[str, Reached] = {}
    for depth in range(1, max_depth + 1):
        if not level or len(best) > MAX_VISITED:
            break
        adjacency: dict[str, list[EdgeRecord]] = {}
        for edge in fetch_edges(sorted(level)):
            for end in {edge.from_id, edge.to_id}:
                if end in level:
                    adjacency.setdefault(end, []).append(edge)
        next_level: dict[str, Reached] = {}
        for node, here in level.items():
            for edge in adjacency.get(node, []):
                other = _other_end(edge, node)
                if other in (start, node):
                    continue
                weight = min(max(edge.weight, 0.0), 1.0)
                score = here.relevance * weight * (DECAY if depth > 1 else 1.0)
                known = next_level.get(other)
                if known is None or score > known.relevance:
                    next_level[other] = Reached(other, score, [*here.path, edge])
        for node, reached in next_level.items():
            known = best.get(node)
            if known is None or reached.relevance > known.relevance:
                best[node] = reached
        # A path no better than a shorter one to the same node is dominated: every extension of
        # it scores less than the same extension of the shorter path, which also has hops to
        # spare. Only paths that just became their node's best are extended.
        level = {n: r for n, r in next_level.items() if best[n] is r}
    return best


def neighbourhood(
    start: str,
    fetch_edges: EdgeFetcher,
    *,
    depth: int,
    max_nodes: int,
    max_edges: int,
) -> tuple[list[str], list[EdgeRecord]]:
    """Nodes within ``depth`` hops (closest and strongest first, start first) and the edges
    between them, capped at ``max_nodes`` and ``max_edges``."""
    reached = best_paths(start, fetch_edges, depth)
    ranked = sorted(reached.values(), key=lambda r: (r.depth, -r.relevance, r.node_id))
    nodes = [start, *(r.node_id for r in ranked[: max_nodes - 1])]
    kept = set(nodes)
    edges: dict[tuple[str, str, str], EdgeRecord] = {}
    for edge in fetch_edges(nodes):
        if edge.from_id in kept and edge.to_id in kept:
            edges.setdefault((edge.from_id, edge.to_id, edge.relationship), edge)
    rank = {node: i for i, node in enumerate(nodes)}
    ordered = sorted(edges.values(), key=lambda e: (max(rank[e.from_id], rank[e.to_id]), -e.weight))
    return nodes, ordered[:max_edges]
