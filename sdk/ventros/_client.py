"""AgentClient and MemoryClient: the async facade users import.

Each client owns one grpclib channel (one HTTP/2 connection, reused by every call) and adds
what the generated stubs lack: the spec's per-call default deadlines (5.2), its retry policy
(4.3), the 50 MiB cap (5.1), bearer tokens, TLS and typed exceptions carrying ErrorDetails.

Every method takes either a request message or the request's fields as keyword arguments::

    async with MemoryClient() as memory:
        found = await memory.search_memories(contact_id=cid, query="late delivery")
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import betterproto2

from . import _settings
from ._channel import ChannelOptions, TLSConfig, call_metadata, guarded, guarded_stream, open_channel
from ._exceptions import InvalidArgumentError
from ._generated.ventros import agents as pb_agents
from ._generated.ventros import memory as pb_memory
from ._retry import NO_RETRY, RetryPolicy
from ._wire import MAX_MESSAGE_BYTES

M = TypeVar("M", bound=betterproto2.Message)
T = TypeVar("T")


def _request(cls: type[M], request: M | None, fields: dict[str, Any]) -> M:
    if request is not None and fields:
        raise TypeError("pass either a request message or keyword fields, not both")
    if request is None:
        return cls(**fields)
    if not isinstance(request, cls):
        raise TypeError(f"expected {cls.__name__}, got {type(request).__name__}")
    return request


class _Client:
    _address_default: Callable[[str | None], str]

    def __init__(
        self,
        address: str | None = None,
        *,
        tls: TLSConfig | bool = False,
        token: str | None = None,
        retry: RetryPolicy | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        metadata: dict[str, str] | None = None,
    ) -> None:
        self.address = type(self)._address_default(address)
        self._options = ChannelOptions(
            tls=tls, token=token, max_message_bytes=max_message_bytes, metadata=dict(metadata or {})
        )
        self._retry = retry or RetryPolicy()
        self._channel = open_channel(self.address, self._options)
        self._metadata = call_metadata(self._options)

    async def __aenter__(self: T) -> T:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    async def _call(
        self,
        method: Callable[..., Awaitable[T]],
        request: betterproto2.Message,
        timeout: float | None,
        *,
        idempotent: bool = True,
        retry: bool | None = None,
    ) -> T:
        policy = self._retry if (retry if retry is not None else idempotent) else NO_RETRY

        async def attempt() -> T:
            return await guarded(
                self.address, lambda: method(request, timeout=timeout, metadata=self._metadata)
            )

        return await policy.run(attempt)


class AgentClient(_Client):
    """Async client of AgentService (Go CRM -> Python agents)."""

    _address_default = staticmethod(_settings.agent_address)

    def __init__(self, address: str | None = None, **kwargs: Any) -> None:
        super().__init__(address, **kwargs)
        self._stub = pb_agents.AgentServiceStub(self._channel)

    async def list_agents(self, *, timeout: float | None = None) -> pb_agents.ListAgentsResponse:
        timeout = _settings.DEFAULT_UNARY_TIMEOUT if timeout is None else timeout
        return await self._call(self._stub.list_available_agents, pb_agents.ListAgentsRequest(), timeout)

    async def get_agent_capabilities(
        self, agent_type: str, *, timeout: float | None = None
    ) -> pb_agents.GetAgentCapabilitiesResponse:
        request = pb_agents.GetAgentCapabilitiesRequest(agent_type=agent_type)
        timeout = _settings.DEFAULT_UNARY_TIMEOUT if timeout is None else timeout
        return await self._call(self._stub.get_agent_capabilities, request, timeout)

    async def execute_agent(
        self,
        request: pb_agents.ExecuteAgentRequest | None = None,
        *,
        timeout: float | None = None,
        retry: bool | None = None,
        **fields: Any,
    ) -> pb_agents.ExecuteAgentResponse:
        """Run an agent. Deadline: ``timeout`` (s), else options.timeout_ms, else 30 s; at most 60 s."""
        req = _request(pb_agents.ExecuteAgentRequest, request, fields)
        deadline = _execute_timeout(req.options, timeout)
        return await self._call(self._stub.execute_agent, req, deadline, retry=retry)

    async def stream_agent_execution(
        self,
        request: pb_agents.StreamAgentRequest | None = None,
        *,
        timeout: float | None = None,
        **fields: Any,
    ) -> AsyncIterator[pb_agents.AgentStreamChunk]:
        """Chunks as the agent produces them. No deadline unless ``timeout`` is given (spec 5.2)."""
        req = _request(pb_agents.StreamAgentRequest, request, fields)
        chunks = self._stub.stream_agent_execution(req, timeout=timeout, metadata=self._metadata)
        async for chunk in guarded_stream(self.address, chunks):
            yield chunk

    async def execute_agent_batch(
        self,
        requests: list[pb_agents.ExecuteAgentRequest],
        *,
        timeout: float | None = None,
        retry: bool | None = None,
    ) -> pb_agents.ExecuteAgentBatchResponse:
        request = pb_agents.ExecuteAgentBatchRequest(requests=list(requests))
        deadline = _settings.EXECUTE_AGENT_MAX_TIMEOUT if timeout is None else timeout
        return await self._call(self._stub.execute_agent_batch, request, deadline, retry=retry)


def _execute_timeout(options: pb_agents.ExecutionOptions | None, timeout: float | None) -> float:
    if timeout is None:
        timeout_ms = options.timeout_ms if options is not None else 0
        timeout = timeout_ms / 1000 if timeout_ms > 0 else _settings.EXECUTE_AGENT_TIMEOUT
    if timeout <= 0:
        raise InvalidArgumentError(f"timeout must be positive, got {timeout}")
    return min(timeout, _settings.EXECUTE_AGENT_MAX_TIMEOUT)


class MemoryClient(_Client):
    """Async client of MemoryService (Python agents -> memory store)."""

    _address_default = staticmethod(_settings.memory_address)

    def __init__(self, address: str | None = None, **kwargs: Any) -> None:
        super().__init__(address, **kwargs)
        self._stub = pb_memory.MemoryServiceStub(self._channel)

    async def search_memories(
        self,
        request: pb_memory.SearchMemoriesRequest | None = None,
        *,
        timeout: float | None = None,
        **fields: Any,
    ) -> pb_memory.SearchMemoriesResponse:
        """Ranked memories; default deadline by mode (hybrid 500 ms, vector 200 ms, keyword 100 ms)."""
        req = _request(pb_memory.SearchMemoriesRequest, request, fields)
        if timeout is None:
            timeout = _settings.SEARCH_TIMEOUTS.get(
                req.mode, _settings.SEARCH_TIMEOUTS[pb_memory.SearchMode.HYBRID]
            )
        return await self._call(self._stub.search_memories, req, timeout)

    async def get_contact_context(
        self,
        request: pb_memory.GetContactContextRequest | None = None,
        *,
        timeout: float | None = None,
        **fields: Any,
    ) -> pb_memory.GetContactContextResponse:
        req = _request(pb_memory.GetContactContextRequest, request, fields)
        timeout = _settings.DEFAULT_UNARY_TIMEOUT if timeout is None else timeout
        return await self._call(self._stub.get_contact_context, req, timeout)

    async def store_memory(
        self,
        request: pb_memory.StoreMemoryRequest | None = None,
        *,
        timeout: float | None = None,
        retry: bool = False,
        **fields: Any,
    ) -> pb_memory.StoreMemoryResponse:
        """Store one memory. Not retried unless ``retry=True``: a retry after a lost reply stores twice."""
        req = _request(pb_memory.StoreMemoryRequest, request, fields)
        timeout = _settings.DEFAULT_UNARY_TIMEOUT if timeout is None else timeout
        return await self._call(self._stub.store_memory, req, timeout, idempotent=False, retry=retry)

    async def get_related_entities(
        self,
        request: pb_memory.GetRelatedEntitiesRequest | None = None,
        *,
        timeout: float | None = None,
        **fields: Any,
    ) -> pb_memory.GetRelatedEntitiesResponse:
        req = _request(pb_memory.GetRelatedEntitiesRequest, request, fields)
        timeout = _settings.DEFAULT_UNARY_TIMEOUT if timeout is None else timeout
        return await self._call(self._stub.get_related_entities, req, timeout)
