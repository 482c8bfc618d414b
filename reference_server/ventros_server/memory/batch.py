"""Memories as columns: what the bulk importer hands the store, and what the store writes.

A batch of memories is written as a few numpy scans (duckdb_store.py), so the store needs them
column by column; building a NewMemory and then a MemoryRecord per memory only to take them
apart again was ~15% of an import (measured). ``MemoryBatch`` holds the columns, its entity links
flattened (``link_of`` says which memory each link belongs to), and optionally the vectors and
keyword terms, which the importer may compute in another process (importer.py).
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import compress
from typing import Any

import numpy as np

from . import text
from .embedders import Embedder
from .store import NewMemory, RelatedRef

#: ``created_us`` of a memory that came without a time: the store's clock at the write fills it.
NO_TIME = np.iinfo(np.int64).min
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def micros(value: datetime) -> int:
    """Microseconds since the epoch, UTC (a naive time is taken as UTC, as the store does)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - EPOCH) // _MICROSECOND


def from_micros(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


def new_uuids(count: int) -> list[str]:
    """Random (version 4) UUID strings, the random bytes drawn in one call for the batch:
    uuid.uuid4() per memory was 5% of an import."""
    if count == 0:
        return []
    raw = np.frombuffer(os.urandom(16 * count), dtype=np.uint8).reshape(count, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    joined = raw.tobytes().hex()
    return [f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}" for h in _pieces(joined, 32)]


def _pieces(joined: str, width: int) -> list[str]:
    return [joined[i : i + width] for i in range(0, len(joined), width)]


@dataclass
class MemoryBatch:
    ids: list[str]  # lower case
    given_id: np.ndarray  # bool: the id came with the record (a generated one is new by construction)
    contact_ids: list[str]  # lower case
    contents: list[str]
    memory_types: list[str]
    metadata: list[str]  # JSON text
    created_us: np.ndarray  # int64 microseconds since the epoch (UTC), NO_TIME when not given
    embed: np.ndarray  # bool: store a vector for this memory
    link_of: np.ndarray  # int64, ascending: the memory each link belongs to
    link_entity_ids: list[str]
    link_entity_types: list[str]
    link_relationships: list[str]
    link_strengths: np.ndarray  # float64
    #: float32 rows of the memories with ``embed`` set, in order; None until embedded.
    vectors: np.ndarray | None = None
    #: Keyword terms (text.term_hashes of ``contents``); None until hashed.
    terms: text.Grams | None = field(default=None)

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_new(cls, memories: list[NewMemory]) -> MemoryBatch:
        builder = MemoryBatchBuilder()
        for m in memories:
            builder.add(
                m.id.lower() if m.id else None,
                m.contact_id.lower(),
                m.content,
                m.memory_type,
                json.dumps(dict(m.metadata), ensure_ascii=False),
                NO_TIME if m.created_at is None else micros(m.created_at),
                m.related,
                embed=m.embed,
            )
        return builder.build()

    def related(self) -> list[list[RelatedRef]]:
        """Each memory's links as RelatedRef (for MemoryRecord)."""
        out: list[list[RelatedRef]] = [[] for _ in self.ids]
        for i, etype, eid, rel, strength in zip(
            self.link_of.tolist(), self.link_entity_types, self.link_entity_ids, self.link_relationships,
            self.link_strengths.tolist(), strict=True,
        ):  # fmt: skip
            out[i].append(RelatedRef(etype, eid, rel, strength))
        return out

    def take(self, keep: np.ndarray) -> MemoryBatch:
        """The memories where ``keep`` is set, with their links, vectors and terms."""
        new_index = np.cumsum(keep) - 1
        link_keep = keep[self.link_of]
        vectors = None if self.vectors is None else self.vectors[keep[self.embed]]
        terms = None
        if self.terms is not None:
            term_keep = keep[self.terms.doc]
            terms = text.Grams(new_index[self.terms.doc[term_keep]], self.terms.hash[term_keep])
        return MemoryBatch(
            ids=list(compress(self.ids, keep)),
            given_id=self.given_id[keep],
            contact_ids=list(compress(self.contact_ids, keep)),
            contents=list(compress(self.contents, keep)),
            memory_types=list(compress(self.memory_types, keep)),
            metadata=list(compress(self.metadata, keep)),
            created_us=self.created_us[keep],
            embed=self.embed[keep],
            link_of=new_index[self.link_of[link_keep]],
            link_entity_ids=list(compress(self.link_entity_ids, link_keep)),
            link_entity_types=list(compress(self.link_entity_types, link_keep)),
            link_relationships=list(compress(self.link_relationships, link_keep)),
            link_strengths=self.link_strengths[link_keep],
            vectors=vectors,
            terms=terms,
        )

    @classmethod
    def concat(cls, batches: list[MemoryBatch]) -> MemoryBatch:
        if len(batches) == 1:
            return batches[0]
        offsets = np.cumsum([0, *(len(b) for b in batches)])
        ready = all(b.vectors is not None and b.terms is not None for b in batches)
        return MemoryBatch(
            ids=[v for b in batches for v in b.ids],
            given_id=np.concatenate([b.given_id for b in batches]),
            contact_ids=[v for b in batches for v in b.contact_ids],
            contents=[v for b in batches for v in b.contents],
            memory_types=[v for b in batches for v in b.memory_types],
            metadata=[v for b in batches for v in b.metadata],
            created_us=np.concatenate([b.created_us for b in batches]),
            embed=np.concatenate([b.embed for b in batches]),
            link_of=np.concatenate([b.link_of + o for b, o in zip(batches, offsets, strict=False)]),
            link_entity_ids=[v for b in batches for v in b.link_entity_ids],
            link_entity_types=[v for b in batches for v in b.link_entity_types],
            link_relationships=[v for b in batches for v in b.link_relationships],
            link_strengths=np.concatenate([b.link_strengths for b in batches]),
            vectors=np.concatenate([b.vectors for b in batches]) if ready else None,  # type: ignore[misc]
            terms=text.Grams(
                np.concatenate([b.terms.doc + o for b, o in zip(batches, offsets, strict=False)]),  # type: ignore[union-attr]
                np.concatenate([b.terms.hash for b in batches]),  # type: ignore[union-attr]
            )
            if ready
            else None,
        )


def base64_rows(vectors: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Each embedded memory's float32 row as base64 text (None for the others): what the store
    inserts, through DuckDB's from_base64, when it stores vectors (an embedder that is not
    ``recomputable``). A numpy column of bytes objects costs DuckDB ~7-40 us per value to scan,
    unhex of hex text ~10 us; base64 text decodes ~5x faster than hex (measured on 20k rows:
    0.04 s against 0.19 s). When a row's bytes are a multiple of 3 (dim % 3 == 0, e.g. 384),
    the base64 of the whole matrix is the rows' base64 end to end: one encode call, then slices."""
    rows = np.ascontiguousarray(vectors, dtype=np.float32)
    out = np.full(len(mask), None, dtype=object)
    if not len(rows):
        return out
    width = rows.shape[1] * 4
    if width % 3 == 0:
        out[np.flatnonzero(mask)] = _pieces(base64.b64encode(rows.data).decode("ascii"), width // 3 * 4)
    else:
        out[np.flatnonzero(mask)] = [base64.b64encode(row.tobytes()).decode("ascii") for row in rows]
    return out


def embed_batch(batch: MemoryBatch, embedder: Embedder) -> None:
    """Fill in the vectors and keyword terms a batch does not carry yet."""
    if batch.vectors is None:
        if batch.terms is None and batch.embed.all() and hasattr(embedder, "embed_with_terms"):
            batch.vectors, batch.terms = embedder.embed_with_terms(batch.contents)
        else:
            texts = list(compress(batch.contents, batch.embed)) if not batch.embed.all() else batch.contents
            batch.vectors = embedder.embed(texts) if texts else np.zeros((0, embedder.dim), np.float32)
    if batch.terms is None:
        batch.terms = text.term_hashes(batch.contents)


class MemoryBatchBuilder:
    """Collects memories one by one (already validated) into a MemoryBatch."""

    def __init__(self) -> None:
        self.ids: list[str | None] = []
        self.contact_ids: list[str] = []
        self.contents: list[str] = []
        self.memory_types: list[str] = []
        self.metadata: list[str] = []
        self.created_us: list[int] = []
        self.embed: list[bool] = []
        self.link_of: list[int] = []
        self.link_entity_ids: list[str] = []
        self.link_entity_types: list[str] = []
        self.link_relationships: list[str] = []
        self.link_strengths: list[float] = []

    def __len__(self) -> int:
        return len(self.ids)

    def add(
        self,
        memory_id: str | None,
        contact_id: str,
        content: str,
        memory_type: str,
        metadata: str,
        created_us: int,
        related: Any = (),
        *,
        embed: bool = True,
    ) -> None:
        if related:
            index = len(self.ids)
            for ref in related:
                self.link_of.append(index)
                self.link_entity_ids.append(ref.entity_id)
                self.link_entity_types.append(ref.entity_type)
                self.link_relationships.append(ref.relationship)
                self.link_strengths.append(ref.strength)
        self.ids.append(memory_id)
        self.contact_ids.append(contact_id)
        self.contents.append(content)
        self.memory_types.append(memory_type)
        self.metadata.append(metadata)
        self.created_us.append(created_us)
        self.embed.append(embed)

    def build(self) -> MemoryBatch:
        given = np.fromiter((i is not None for i in self.ids), dtype=bool, count=len(self.ids))
        fresh = iter(new_uuids(len(self.ids) - int(given.sum())))
        return MemoryBatch(
            ids=[i if i is not None else next(fresh) for i in self.ids],
            given_id=given,
            contact_ids=self.contact_ids,
            contents=self.contents,
            memory_types=self.memory_types,
            metadata=self.metadata,
            created_us=np.array(self.created_us, dtype=np.int64),
            embed=np.array(self.embed, dtype=bool),
            link_of=np.array(self.link_of, dtype=np.int64),
            link_entity_ids=self.link_entity_ids,
            link_entity_types=self.link_entity_types,
            link_relationships=self.link_relationships,
            link_strengths=np.array(self.link_strengths, dtype=np.float64),
        )


__all__ = [
    "NO_TIME",
    "MemoryBatch",
    "MemoryBatchBuilder",
    "base64_rows",
    "embed_batch",
    "from_micros",
    "micros",
    "new_uuids",
]
