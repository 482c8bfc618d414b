"""Small in-test servicers: just enough behaviour to exercise the transport and the SDK."""

from __future__ import annotations

import asyncio

from ventros import InvalidArgumentError, NotFoundError, UnavailableError
from ventros.agents import (
    AgentInfo,
    AgentServiceBase,
    AgentStreamChunk,
    ChunkType,
    ExecuteAgentResponse,
    ListAgentsResponse,
)
from ventros.memory import (
    Memory,
    MemoryServiceBase,
    SearchMemoriesResponse,
    StoreMemoryResponse,
)


class EchoMemory(MemoryServiceBase):
    """Echoes the query back as one memory; "missing" contacts are NOT_FOUND; slow on demand."""

    def __init__(self) -> None:
        self.calls = 0

    async def search_memories(self, message):  # type: ignore[no-untyped-def]
        self.calls += 1
        if not message.contact_id:
            raise InvalidArgumentError.of(
                "MISSING_FIELD",
                "contact_id is required",
                suggestions=["Pass the contact's UUID."],
                field="contact_id",
            )
        if message.contact_id == "missing":
            raise NotFoundError.of("CONTACT_NOT_FOUND", "no such contact")
        if message.query == "slow":
            await asyncio.sleep(5)
        return SearchMemoriesResponse(memories=[Memory(id="m1", content=message.query)], total_count=1)

    async def store_memory(self, message):  # type: ignore[no-untyped-def]
        return StoreMemoryResponse(memory_id="m1", success=True, latency_ms=float(len(message.content)))


class FlakyMemory(MemoryServiceBase):
    """UNAVAILABLE for the first ``failures`` calls, then OK."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def search_memories(self, message):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.calls <= self.failures:
            raise UnavailableError.of("BACKEND_DOWN", "try again")
        return SearchMemoriesResponse(total_count=0)

    async def store_memory(self, message):  # type: ignore[no-untyped-def]
        self.calls += 1
        raise UnavailableError.of("BACKEND_DOWN", "try again")


class TinyAgents(AgentServiceBase):
    async def list_available_agents(self, message):  # type: ignore[no-untyped-def]
        return ListAgentsResponse(agents=[AgentInfo(type="EchoAgent", name="Echo")], total_count=1)

    async def execute_agent(self, message):  # type: ignore[no-untyped-def]
        return ExecuteAgentResponse(response=message.message)

    async def stream_agent_execution(self, message):  # type: ignore[no-untyped-def]
        for word in message.message.split():
            yield AgentStreamChunk(type=ChunkType.PARTIAL, content=word)
        yield AgentStreamChunk(type=ChunkType.FINAL, content="done")
