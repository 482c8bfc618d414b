"""What the RPC layer needs from a memory store, as a Protocol plus plain dataclasses.

The gRPC service (service.py) validates requests, applies the contract's defaults and maps these
dataclasses to protobuf messages; it never sees SQL. DuckDBStore implements this interface; a
PostgreSQL (pgvector) store could implement it too without touching the service.

Conventions: ids are strings (UUIDs in canonical lower-case form where the contract says UUID),
times are timezone-aware UTC datetimes, scores are floats in [0, 1].
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

import numpy as np

from .embedders import Embedder


class StoreError(RuntimeError):
    """The store cannot be opened or used as asked (message says what to do)."""


class SchemaTooNewError(StoreError):
    """The database was written by a newer ventros: refuse rather than corrupt it."""


class EmbedderMismatchError(StoreError):
    """The database holds vectors of another embedder: they cannot be compared with new ones."""


class SearchMode(enum.Enum):
    HYBRID = "hybrid"
    VECTOR = "vector"
    KEYWORD = "keyword"
    GRAPH = "graph"


@dataclass(frozen=True)
class RelatedRef:
    """A memory's link to a knowledge-graph entity (RelatedEntity on the wire)."""

    entity_type: str
    entity_id: str
    relationship: str = "mentioned"
    strength: float = 1.0


@dataclass
class NewMemory:
    contact_id: str
    content: str
    memory_type: str
    metadata: dict[str, str] = field(default_factory=dict)
    embed: bool = True
    related: list[RelatedRef] = field(default_factory=list)
    #: Set by importers that carry their own ids and times; generated otherwise.
    id: str | None = None
    created_at: datetime | None = None


@dataclass
class MemoryRecord:
    id: str
    contact_id: str
    content: str
    memory_type: str
    metadata: dict[str, str]
    created_at: datetime
    related: list[RelatedRef] = field(default_factory=list)
    embedding: np.ndarray | None = None


@dataclass
class ScoredMemory:
    memory: MemoryRecord
    score: float
    #: Normalised score of each source that matched ("vector", "keyword", "graph").
    sources: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class SearchQuery:
    contact_id: str
    query: str
    limit: int = 10
    memory_types: frozenset[str] = frozenset()
    mode: SearchMode = SearchMode.HYBRID
    with_embedding: bool = False


@dataclass(frozen=True)
class FusionWeights:
    vector: float
    keyword: float
    graph: float


@dataclass
class SearchResult:
    memories: list[ScoredMemory]
    total_count: int
    vector_matches: int
    keyword_matches: int
    graph_matches: int
    weights: FusionWeights


@dataclass
class Contact:
    id: str
    name: str = ""
    phone: str = ""
    email: str = ""
    tier: str = ""
    tags: list[str] = field(default_factory=list)
    custom_fields: dict[str, str] = field(default_factory=dict)
    created_at: datetime | None = None


@dataclass
class MessageRecord:
    id: str
    contact_id: str
    content: str
    is_inbound: bool
    channel: str
    sent_at: datetime


@dataclass
class Purchase:
    id: str
    contact_id: str
    product_id: str
    amount: float
    currency: str
    purchased_at: datetime


@dataclass
class Entity:
    id: str
    type: str
    properties: dict[str, str] = field(default_factory=dict)


@dataclass
class EdgeRecord:
    from_id: str
    to_id: str
    relationship: str
    weight: float = 1.0
    created_at: datetime | None = None


@dataclass
class ContactStats:
    total_messages: int
    total_purchases: int
    lifetime_value: float
    first_contact: datetime | None
    last_activity: datetime | None
    churn_risk: float


@dataclass
class Graph:
    nodes: list[Entity]
    edges: list[EdgeRecord]


@dataclass
class ContactContext:
    profile: Contact
    recent_memories: list[MemoryRecord]
    recent_messages: list[MessageRecord]
    graph: Graph | None
    stats: ContactStats


@dataclass
class RelatedResult:
    entity: Entity
    path: list[EdgeRecord]
    relevance: float


@dataclass
class ImportReport:
    counts: dict[str, int]
    errors: list[tuple[int, str]]  # (line number, reason)
    seconds: float


@runtime_checkable
class MemoryStore(Protocol):
    """The interface MemoryService talks to. Methods are blocking; the service runs them in a thread."""

    embedder: Embedder

    def store_memory(self, memory: NewMemory) -> MemoryRecord:
        """Atomically store the memory (row, vector, keyword postings, links, entities)."""
        ...

    def search(self, query: SearchQuery) -> SearchResult: ...

    def contact_context(
        self,
        contact_id: str,
        *,
        history_limit: int,
        entity_types: frozenset[str],
        include_graph: bool,
    ) -> ContactContext | None:
        """None when the store knows nothing of the contact."""
        ...

    def related_entities(
        self,
        entity_id: str,
        *,
        entity_type: str | None,
        target_types: frozenset[str],
        max_depth: int,
        limit: int,
    ) -> list[RelatedResult] | None:
        """None when there is no such node (of that type, when given)."""
        ...

    # Bulk loading, used by the JSONL importer and the demo data set.
    def add_contacts(self, contacts: Iterable[Contact]) -> int: ...
    def add_messages(self, messages: Iterable[MessageRecord]) -> int: ...
    def add_purchases(self, purchases: Iterable[Purchase]) -> int: ...
    def add_entities(self, entities: Iterable[Entity]) -> int: ...
    def add_edges(self, edges: Iterable[EdgeRecord]) -> int: ...
    def add_memories(self, memories: list[NewMemory]) -> int: ...

    def close(self) -> None: ...


ProgressCallback = Callable[[int], None]
