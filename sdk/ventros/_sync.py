"""Blocking wrappers for scripts: the async clients driven on a private event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

from ._client import AgentClient, MemoryClient
from ._generated.ventros import agents as pb_agents


class _SyncClient:
    _async_cls: type[AgentClient] | type[MemoryClient]

    def __init__(self, address: str | None = None, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._client = self._run(self._make(address, kwargs))

    async def _make(self, address: str | None, kwargs: dict[str, Any]) -> Any:
        return self._async_cls(address, **kwargs)  # grpclib binds the channel to the running loop

    def _run(self, coro: Any) -> Any:
        return self._loop.run_until_complete(coro)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)
        return lambda *args, **kwargs: self._run(method(*args, **kwargs))

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()
        self._loop.close()


class SyncAgentClient(_SyncClient):
    """``with SyncAgentClient() as agents: agents.list_agents()``; same methods as AgentClient."""

    _async_cls = AgentClient

    def stream_agent_execution(
        self, request: Any = None, **kwargs: Any
    ) -> Iterator[pb_agents.AgentStreamChunk]:
        stream = self._client.stream_agent_execution(request, **kwargs)
        while True:
            try:
                yield self._run(stream.__anext__())
            except StopAsyncIteration:
                return


class SyncMemoryClient(_SyncClient):
    """``with SyncMemoryClient() as memory: memory.search_memories(...)``; same methods as MemoryClient."""

    _async_cls = MemoryClient
