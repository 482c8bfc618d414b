"""A small, honest in-test MemoryService: stores memories and finds them by keyword overlap.

Used until (or instead of) the real ``ventros_server.memory`` service. It runs over real gRPC
(``build_server``) so the agents reach it exactly as they would reach the real one.
"""

from __future__ import annotations

import asyncio
import re
import unicodedata
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ventros import InternalError, InvalidArgumentError, NotFoundError
from ventros import memory as pb
from ventros._generated.ventros.memory import MemoryServiceBase

_WORD = re.compile(r"[a-z0-9_]+")


def _tokens(text: str) -> set[str]:
    folded = "".join(c for c in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(c))
    return {w for w in _WORD.findall(folded) if len(w) > 2}


@dataclass
class _Stored:
    memory: pb.Memory
    tokens: set[str]


@dataclass
class FakeMemoryService(MemoryServiceBase):
    profiles: dict[str, pb.ContactProfile] = field(default_factory=dict)
    stats: dict[str, pb.ContactStats] = field(default_factory=dict)
    memories: dict[str, list[_Stored]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    #: Seconds every call sleeps first (to test deadlines and cancellation).
    delay: float = 0.0
    #: Methods that fail with INTERNAL (a broken but reachable memory service).
    broken: set[str] = field(default_factory=set)

    def seed_contact(
        self, contact_id: str, *, name: str, tier: str, ltv: float = 0.0, churn: float = 0.1
    ) -> None:
        self.profiles[contact_id] = pb.ContactProfile(contact_id=contact_id, name=name, tier=tier)
        self.stats[contact_id] = pb.ContactStats(lifetime_value=ltv, churn_risk=churn, total_purchases=1)

    def add(
        self, contact_id: str, content: str, memory_type: str = "fact", metadata: dict[str, str] | None = None
    ) -> str:
        memory = pb.Memory(
            id=str(uuid.uuid4()),
            content=content,
            memory_type=memory_type,
            created_at=datetime.now(UTC),
            metadata=dict(metadata or {}),
        )
        self.memories.setdefault(contact_id, []).append(_Stored(memory, _tokens(content)))
        return memory.id

    async def _enter(self, name: str) -> None:
        self.calls.append(name)
        if self.delay:
            await asyncio.sleep(self.delay)
        if name in self.broken:
            raise InternalError.of("INTERNAL", f"{name} is broken in this test")

    async def search_memories(self, message: pb.SearchMemoriesRequest) -> pb.SearchMemoriesResponse:
        await self._enter("search_memories")
        if not message.query.strip():
            raise InvalidArgumentError.of("MISSING_FIELD", "query is required", field="query")
        query = _tokens(message.query)
        scored = []
        for stored in self.memories.get(message.contact_id, []):
            if message.memory_types and stored.memory.memory_type not in message.memory_types:
                continue
            overlap = len(query & stored.tokens)
            if overlap:
                scored.append((overlap / max(len(query), 1), stored.memory))
        scored.sort(key=lambda pair: -pair[0])
        limit = message.limit or 10
        found = [
            pb.Memory(
                id=m.id,
                content=m.content,
                memory_type=m.memory_type,
                relevance_score=score,
                created_at=m.created_at,
                metadata=dict(m.metadata),
            )
            for score, m in scored[:limit]
        ]
        return pb.SearchMemoriesResponse(
            memories=found,
            total_count=len(scored),
            metadata=pb.SearchMetadata(keyword_matches=len(scored), keyword_weight=1.0),
        )

    async def get_contact_context(self, message: pb.GetContactContextRequest) -> pb.GetContactContextResponse:
        await self._enter("get_contact_context")
        cid = message.contact_id
        if cid not in self.profiles and cid not in self.memories:
            raise NotFoundError.of("CONTACT_NOT_FOUND", "the store knows nothing of this contact")
        recent = [s.memory for s in reversed(self.memories.get(cid, []))][: message.history_limit or 50]
        return pb.GetContactContextResponse(
            profile=self.profiles.get(cid, pb.ContactProfile(contact_id=cid)),
            recent_memories=recent,
            stats=self.stats.get(cid, pb.ContactStats()),
        )

    async def store_memory(self, message: pb.StoreMemoryRequest) -> pb.StoreMemoryResponse:
        await self._enter("store_memory")
        if not message.content.strip():
            raise InvalidArgumentError.of("MISSING_FIELD", "content is required", field="content")
        memory_id = self.add(message.contact_id, message.content, message.memory_type, dict(message.metadata))
        return pb.StoreMemoryResponse(memory_id=memory_id, success=True)

    def __hash__(self) -> int:  # build_server keys health checks by service object
        return id(self)
