"""The entities a contact's memories link to, resolved for GRAPH scoring, cached per contact.

GRAPH scoring (DuckDBStore._graph_scores, docs/contract.md GRAPH_ONLY) needs, for each entity a
contact's memories link to: its node in the edge index (to compute its relevance from the
contact), and whether the query names it, by id or by its folded "name"/"title" label. Done per
search, that was a Python loop over every linked entity: for a contact linked to 2,000 products
at 1M memories, 2,000 dict lookups and 2,000 label checks were ~35% of a GRAPH search (py-spy).

Resolved once, those answers only change when the contact gains links, the edge index gains
nodes, or an entity is (re)written: ``Linked`` is cached under those three counters. A query
is then matched against it by its own words: ids through a dict of lower-cased ids, labels
through a dict keyed by each label's first word (a folded label is whole words separated by
single spaces, so it can only appear in the folded query where its first word is a word of it).
"""

from __future__ import annotations

import functools
import json
import re
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from . import text
from .contact_index import ContactIndex
from .edge_index import EdgeIndex
from .node_index import NodeIndex

_ID_TOKEN = re.compile(r"[A-Za-z0-9_.:-]+")
#: Contacts linked to fewer entities are resolved per search (it is cheap), not cached.
CACHE_MIN_ENTITIES = 64
#: How many contacts' resolutions are kept (least recently used dropped first).
CACHE_CONTACTS = 256


@dataclass
class Linked:
    codes: np.ndarray  # the contact index's entity codes, ascending
    node_codes: np.ndarray  # each one's code in the edge index, -1 if it is not a node there
    by_id: dict[str, list[int]] = field(default_factory=dict)  # lower-cased id -> positions
    by_first_word: dict[str, list[tuple[str, int]]] = field(default_factory=dict)

    def named(self, query: str) -> list[int]:
        """Positions (in ``codes``) of the entities the query names."""
        if not query.strip():
            return []
        found: set[int] = set()
        for token in {t.lower() for t in _ID_TOKEN.findall(query)}:
            found.update(self.by_id.get(token, ()))
        folded = f" {text.fold(query)} "
        for word in set(folded.split()):
            for label, position in self.by_first_word.get(word, ()):
                if f" {label} " in folded:
                    found.add(position)
        return sorted(found)


class LinkedEntities:
    def __init__(self, contacts: ContactIndex, edges: EdgeIndex, nodes: NodeIndex) -> None:
        self._contacts = contacts
        self._edges = edges
        self._nodes = nodes
        self._cache: OrderedDict[str, tuple[tuple[int, int, int], Linked]] = OrderedDict()

    def of(self, contact_id: str, links: np.ndarray) -> Linked:
        """``links``: all of the contact's links (the contact index's unfiltered view)."""
        key = (len(links), len(self._edges.nodes.names), self._nodes.version)
        cached = self._cache.get(contact_id)
        if cached is not None and cached[0] == key:
            self._cache.move_to_end(contact_id)
            return cached[1]
        linked = self._resolve(np.unique(links["entity"]))
        if len(linked.codes) >= CACHE_MIN_ENTITIES:
            self._cache[contact_id] = (key, linked)
            self._cache.move_to_end(contact_id)
            while len(self._cache) > CACHE_CONTACTS:
                self._cache.popitem(last=False)
        return linked

    def _resolve(self, codes: np.ndarray) -> Linked:
        names = self._contacts.entities.names
        ids = [names[c] for c in codes.tolist()]
        node_code = self._edges.nodes.code
        linked = Linked(codes, np.array([node_code.get(i, -1) for i in ids], dtype=np.int64))
        for position, entity_id in enumerate(ids):
            linked.by_id.setdefault(entity_id.lower(), []).append(position)
            for label in labels(self._nodes.properties(entity_id)):
                linked.by_first_word.setdefault(label.split(" ", 1)[0], []).append((label, position))
        return linked


@functools.lru_cache(maxsize=65_536)
def labels(properties: str | None) -> tuple[str, ...]:
    """The folded, non-empty "name" and "title" of an entity's properties JSON (cached by the
    JSON text, so an update is a new key)."""
    parsed = json.loads(properties) if properties else {}
    folded = (text.fold(str(parsed.get(key, ""))) for key in ("name", "title"))
    return tuple(label for label in folded if label)
