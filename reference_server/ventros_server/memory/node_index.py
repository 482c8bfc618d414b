"""Entities and contact ids in memory: how graph reads name the nodes they reach (derived state).

GetContactContext's graph, GetRelatedEntities and GRAPH scoring turn node ids into typed nodes
(DuckDBStore._nodes) and read entity properties. In DuckDB those were ``id IN (...)`` lookups on
``entities``, ``contacts`` and the three tables that name contacts; DuckDB 1.5.5 keeps ~2 KB of
native memory per IN-list query, still rising after 36,000 queries
(benchmarks/duckdb_lookup_growth.py, docs/operations.md "Soak"): a long-running server grew by
it. Here the same answers are dict lookups.

What is kept (one dict entry per entity or contact, no other Python object per row: strings and
ints only, which the garbage collector does not track):

* ``entities``: id -> type, and id -> properties JSON for the entities that have properties;
* ``contacts``: id -> bit flags: has a profile row (``contacts``), is named by a message, by a
  purchase. Contacts known from memories are the contact index's (contact_index.py).

Personal data (names, e-mails) is not copied here: the one contact a read reveals is read from
DuckDB by its key (an equality lookup, which holds no memory).

Life cycle as the other derived indexes: loaded at open, updated by each write function once its
statement succeeded, under the store's lock, with the same rule as the SQL (entities from memory
links are added only when new, imported entities and profiles replace). A message or purchase
names its contact even when its row was skipped as a duplicate id: the flag says "some imported
message/purchase named this contact", which after a reopen (loaded from the rows kept) can only
be narrower for such duplicates.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence

import duckdb

from .store import Entity

PROFILE = 1
MESSAGES = 2
PURCHASES = 4
_NAMED_BY = {"messages": MESSAGES, "purchases": PURCHASES}


class NodeIndex:
    def __init__(self, lock: threading.RLock | None = None) -> None:
        self._lock = lock or threading.RLock()
        self._types: dict[str, str] = {}  # interned type names: one str object per type
        self._entity_type: dict[str, str] = {}
        self._properties: dict[str, str] = {}
        self._contacts: dict[str, int] = {}
        #: Bumped whenever an entity is written: caches of entity properties key on it
        #: (linked_entities.py).
        self.version = 0

    # -- reads ----------------------------------------------------------------------------------

    def entity(self, entity_id: str) -> tuple[str, str | None] | None:
        """(type, properties JSON or None) of a known entity, else None."""
        etype = self._entity_type.get(entity_id)
        return None if etype is None else (etype, self._properties.get(entity_id))

    def properties(self, entity_id: str) -> str | None:
        """The entity's properties JSON (None for an unknown entity or one without properties)."""
        return self._properties.get(entity_id)

    def contact_flags(self, contact_id: str) -> int:
        return self._contacts.get(contact_id, 0)

    def export(self) -> tuple[dict[str, tuple[str, str | None]], dict[str, int]]:
        """Entities (type, properties) and contact flags, for tests comparing an index kept
        by writes with one loaded from the file."""
        entities = {i: (t, self._properties.get(i)) for i, t in self._entity_type.items()}
        return entities, dict(self._contacts)

    def __len__(self) -> int:
        return len(self._entity_type) + len(self._contacts)

    # -- writes (after the statement succeeded) -------------------------------------------------

    def add_entities(self, entities: Iterable[Entity], *, replace: bool = True) -> None:
        """Imported entities replace (INSERT OR REPLACE); ``replace=False`` adds only new ids."""
        with self._lock:
            for entity in entities:
                if replace or entity.id not in self._entity_type:
                    self._set_entity(entity.id, entity.type, entity.properties)

    def add_linked(self, entity_ids: Sequence[str], entity_types: Sequence[str]) -> None:
        """Entities named by memory links (one id and type per link, in link order) that the
        store did not know: type from the link, the batch's last link of an id winning, no
        properties (DuckDBStore._insert_links's SQL)."""
        new = dict(zip(entity_ids, entity_types, strict=True))
        if new:
            self.add_entities((Entity(i, t) for i, t in new.items()), replace=False)

    def add_contacts(self, contact_ids: Iterable[str], source: str = "contacts") -> None:
        """Contacts with a profile (``source="contacts"``) or named by ``"messages"`` /
        ``"purchases"`` rows (ids as stored: lower case)."""
        flag = _NAMED_BY.get(source, PROFILE)
        with self._lock:
            for contact_id in contact_ids:
                key = str(contact_id)  # numpy str_ from a batch column -> a plain str
                self._contacts[key] = self._contacts.get(key, 0) | flag

    def _set_entity(self, entity_id: str, etype: str, properties: str | dict[str, str] | None) -> None:
        self.version += 1
        self._entity_type[str(entity_id)] = self._types.setdefault(etype, etype)
        text = _json(properties)
        if text:
            self._properties[str(entity_id)] = text
        else:
            self._properties.pop(str(entity_id), None)

    # -- bulk load at open ----------------------------------------------------------------------

    def load(self, con: duckdb.DuckDBPyConnection) -> None:
        with self._lock:
            cursor = con.execute("SELECT id, type, properties FROM entities")
            while rows := cursor.fetchmany(50_000):
                for entity_id, etype, properties in rows:
                    self._set_entity(entity_id, etype, properties)
            for table, flag in (("contacts", PROFILE), ("messages", MESSAGES), ("purchases", PURCHASES)):
                column = "id" if table == "contacts" else "contact_id"
                cursor = con.execute(f"SELECT DISTINCT {column} FROM {table}")
                while rows := cursor.fetchmany(50_000):
                    for (contact_id,) in rows:
                        self._contacts[contact_id] = self._contacts.get(contact_id, 0) | flag


def _json(properties: str | dict[str, str] | None) -> str | None:
    """Properties as the JSON text the table holds; None when there are none ('{}' or NULL),
    which every reader treats as {}."""
    if properties is None or isinstance(properties, str):
        return properties if properties and properties != "{}" else None
    if not properties:
        return None
    return json.dumps(properties, ensure_ascii=False)


__all__ = ["MESSAGES", "PROFILE", "PURCHASES", "NodeIndex"]
