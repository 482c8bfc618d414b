"""Servicers that answer every method of both services with an empty reply and count the calls,
so a test can tell "refused before the handler" from "served"."""

from __future__ import annotations

from collections import Counter

from ventros import agents as pa
from ventros import memory as pm


class CountingAgents(pa.AgentServiceBase):
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    async def list_available_agents(self, message):  # type: ignore[no-untyped-def]
        self.calls["ListAvailableAgents"] += 1
        return pa.ListAgentsResponse(total_count=0)

    async def get_agent_capabilities(self, message):  # type: ignore[no-untyped-def]
        self.calls["GetAgentCapabilities"] += 1
        return pa.GetAgentCapabilitiesResponse()

    async def execute_agent(self, message):  # type: ignore[no-untyped-def]
        self.calls["ExecuteAgent"] += 1
        return pa.ExecuteAgentResponse(response="ok")

    async def stream_agent_execution(self, message):  # type: ignore[no-untyped-def]
        self.calls["StreamAgentExecution"] += 1
        yield pa.AgentStreamChunk(type=pa.ChunkType.FINAL, content="ok")

    async def execute_agent_batch(self, message):  # type: ignore[no-untyped-def]
        self.calls["ExecuteAgentBatch"] += 1
        return pa.ExecuteAgentBatchResponse()


class CountingMemory(pm.MemoryServiceBase):
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    async def search_memories(self, message):  # type: ignore[no-untyped-def]
        self.calls["SearchMemories"] += 1
        return pm.SearchMemoriesResponse(total_count=0)

    async def get_contact_context(self, message):  # type: ignore[no-untyped-def]
        self.calls["GetContactContext"] += 1
        return pm.GetContactContextResponse()

    async def store_memory(self, message):  # type: ignore[no-untyped-def]
        self.calls["StoreMemory"] += 1
        return pm.StoreMemoryResponse(memory_id="m1", success=True)

    async def get_related_entities(self, message):  # type: ignore[no-untyped-def]
        self.calls["GetRelatedEntities"] += 1
        return pm.GetRelatedEntitiesResponse()
