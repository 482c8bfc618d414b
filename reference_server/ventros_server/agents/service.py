"""AgentService: the gRPC servicer. Validates, runs agents as event streams, maps events to replies.

Both ExecuteAgent and StreamAgentExecution consume the same ``_run_events`` stream; batch items
are ExecuteAgent runs. The run happens in its own task, bounded by the earlier of
options.timeout_ms and the caller's gRPC deadline: when the bound passes, the task is cancelled
(the memory call or LLM request in flight is cancelled with it) and the call ends with
DEADLINE_EXCEEDED. When a stream's client goes away, the same cancellation happens.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpclib.const
from ventros import (
    DeadlineExceededError,
    InternalError,
    InvalidArgumentError,
    MemoryClient,
    RetryPolicy,
    StatusError,
    _settings,
)
from ventros import agents as pb
from ventros._generated.ventros.agents import AgentServiceBase

from ..context import current_call
from .base import Agent, AgentRun
from .events import AgentEvent, Failed, Final, PartialText, Thought, ToolCalled, ToolResult
from .llm import LLMBackend, make_llm
from .registry import AgentRegistry, default_registry
from .tools import MemoryTools
from .validation import AgentRequest, validate_request

log = logging.getLogger("ventros.agents")

MAX_BATCH = 32
BATCH_CONCURRENCY = 4
#: Our run bound fires this long before the caller's deadline, so the caller receives our
#: DEADLINE_EXCEEDED (and, on a stream, the ERROR chunk) rather than a bare transport timeout.
CALLER_DEADLINE_HEADROOM = 0.02
#: Memory calls made by agents: one quick retry, not the SDK's 1 s/2 s backoff (the run has a deadline).
MEMORY_RETRY = RetryPolicy(attempts=2, backoff=0.05)


@dataclass(frozen=True)
class _Bound:
    seconds: float | None
    reason: str


@dataclass(frozen=True)
class _Raise:
    error: StatusError


_DONE = object()


@asynccontextmanager
async def _closing(iterator: AsyncIterator[Any]) -> AsyncGenerator[AsyncIterator[Any], None]:
    """Like contextlib.aclosing, for any async iterator (closed when it has an ``aclose``)."""
    try:
        yield iterator
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


def _bound(request: AgentRequest) -> _Bound:
    """The earlier of options.timeout_ms (0 on a stream: none) and the caller's deadline."""
    timeout_ms = request.options.timeout_ms
    bound = (
        _Bound(timeout_ms / 1000, f"options.timeout_ms ({timeout_ms} ms)") if timeout_ms else _Bound(None, "")
    )
    remaining = current_call().time_remaining()
    if remaining is not None:
        caller = max(remaining - CALLER_DEADLINE_HEADROOM, 0.0)
        if bound.seconds is None or caller < bound.seconds:
            bound = _Bound(caller, "the caller's gRPC deadline")
    return bound


def _deadline_error(agent_type: str, bound: _Bound) -> DeadlineExceededError:
    error = DeadlineExceededError.of(
        "DEADLINE_EXCEEDED",
        f"{agent_type} did not finish within {bound.reason}; the run was cancelled",
        suggestions=["Retry with a longer deadline (options.timeout_ms, at most 60000)."],
        agent_type=agent_type,
        limit=bound.reason,
    )
    assert isinstance(error, DeadlineExceededError)
    return error


def _unexpected(agent_type: str, exc: BaseException) -> InternalError:
    error = InternalError.of(
        "AGENT_FAILED",
        f"{agent_type} failed unexpectedly ({type(exc).__name__})",
        suggestions=["Retry later; if it persists, report it with the server log."],
        agent_type=agent_type,
    )
    assert isinstance(error, InternalError)
    return error


class _ResponseBuilder:
    """Folds a run's events into one ExecuteAgentResponse."""

    def __init__(self) -> None:
        self.steps: list[str] = []
        self.tool_calls: list[pb.ToolCall] = []
        self.parts: list[str] = []
        self.final: Final | None = None

    def add(self, event: AgentEvent) -> None:
        if isinstance(event, Thought):
            self.steps.append(event.text)
        elif isinstance(event, ToolResult):
            self.tool_calls.append(
                pb.ToolCall(
                    tool_name=event.tool_name,
                    input=dict(event.input),
                    output=event.output,
                    latency_ms=event.latency_ms,
                )
            )
        elif isinstance(event, PartialText):
            self.parts.append(event.text)
        elif isinstance(event, Final):
            self.final = event

    def response(self, agent_type: str, latency_ms: int) -> pb.ExecuteAgentResponse:
        final = self.final
        if final is None:
            raise InternalError.of(
                "AGENT_FAILED",
                f"{agent_type} ended without a final answer",
                suggestions=["Retry later; if it persists, report it with the server log."],
            )
        text = final.response or "".join(self.parts).strip()
        return pb.ExecuteAgentResponse(
            response=text,
            intent=final.intent,
            confidence=min(max(float(final.confidence), 0.0), 1.0),
            suggested_actions=list(final.suggested_actions),
            metadata=dict(final.metadata),
            latency_ms=latency_ms,
            tool_calls=self.tool_calls,
            thoughts=pb.AgentThoughts(reasoning_steps=self.steps, final_answer=text),
        )


def _chunk(event: AgentEvent, latency_ms: int) -> pb.AgentStreamChunk | None:
    T = pb.ChunkType
    if isinstance(event, Thought):
        return pb.AgentStreamChunk(type=T.THOUGHT, content=event.text)
    if isinstance(event, ToolCalled):
        args = ", ".join(f"{k}={v!r}" if k == "query" else f"{k}={v}" for k, v in event.input.items())
        return pb.AgentStreamChunk(
            type=T.TOOL_CALL,
            content=f"Calling {event.tool_name}({args})",
            metadata={"tool": event.tool_name, "phase": "call"},
        )
    if isinstance(event, ToolResult):
        return pb.AgentStreamChunk(
            type=T.TOOL_CALL,
            content=f"{event.tool_name}: {event.output}",
            metadata={
                "tool": event.tool_name,
                "phase": "result",
                "outcome": event.outcome,
                "latency_ms": str(event.latency_ms),
            },
        )
    if isinstance(event, PartialText):
        return pb.AgentStreamChunk(type=T.PARTIAL, content=event.text)
    if isinstance(event, Final):
        metadata = dict(event.metadata)
        metadata.update(
            confidence=f"{min(max(event.confidence, 0.0), 1.0):.4g}",
            intent=event.intent,
            latency_ms=str(latency_ms),
            suggested_actions=",".join(event.suggested_actions),
        )
        return pb.AgentStreamChunk(type=T.FINAL, content=event.response, metadata=metadata)
    return None


def _error_chunk(error: StatusError) -> pb.AgentStreamChunk:
    return pb.AgentStreamChunk(
        type=pb.ChunkType.ERROR,
        content=error.message,
        metadata={"status": error.status.name, "error_code": error.code or error.status.name},
    )


class AgentService(AgentServiceBase):
    """The reference AgentService.

    ``registry``: the agents (default: ``default_registry()``, the five built-in ones).
    ``memory_address``: MemoryService "host:port" (default: MEMORY_SERVICE_GRPC or localhost:50052).
    ``llm``: the LLM backend (default: ``make_llm("offline")``).
    ``memory_client``: a ready MemoryClient (then ``memory_address`` is ignored; not closed by us).
    ``memory_timeout``: per memory call, in seconds (default: the SDK's per-method defaults).
    """

    def __init__(
        self,
        registry: AgentRegistry | None = None,
        *,
        memory_address: str | None = None,
        llm: LLMBackend | None = None,
        memory_client: MemoryClient | None = None,
        memory_timeout: float | None = None,
        batch_concurrency: int = BATCH_CONCURRENCY,
    ) -> None:
        self.registry = registry if registry is not None else default_registry()
        self.llm: LLMBackend = llm if llm is not None else make_llm("offline")
        self.memory_address = memory_address
        self.memory_timeout = memory_timeout
        self._memory_client = memory_client
        self._owns_memory_client = memory_client is None
        if memory_client is None:  # a bad address fails here, at startup, not on the first call
            _settings.check_address(_settings.memory_address(memory_address))
        self._batch_concurrency = max(1, min(batch_concurrency, BATCH_CONCURRENCY))

    # -- plumbing --------------------------------------------------------------------------------

    def memory_client(self) -> MemoryClient:
        """The MemoryClient the agents use (created on first use; its channel connects lazily)."""
        if self._memory_client is None:
            self._memory_client = MemoryClient(self.memory_address, retry=MEMORY_RETRY)
        return self._memory_client

    async def aclose(self) -> None:
        """Close what this service opened: its MemoryClient (if it made it) and the LLM backend."""
        if self._owns_memory_client and self._memory_client is not None:
            self._memory_client.close()
            self._memory_client = None
        await self.llm.aclose()

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        mapping = super().__mapping__()
        path = "/ventros.agents.AgentService/StreamAgentExecution"
        generated = mapping[path]
        # Same as the generated handler, except that the chunk generator is always closed
        # (cancelling the run) when the handler ends, including when the client goes away.
        mapping[path] = grpclib.const.Handler(
            self._rpc_stream_agent_execution,
            generated.cardinality,
            generated.request_type,
            generated.reply_type,
        )
        return mapping

    async def _rpc_stream_agent_execution(self, stream: Any) -> None:
        request = await stream.recv_message()
        assert request is not None
        async with _closing(self.stream_agent_execution(request)) as chunks:
            async for chunk in chunks:
                await stream.send_message(chunk)

    async def _run_events(self, agent: Agent, request: AgentRequest) -> AsyncGenerator[AgentEvent, None]:
        """The agent's events, produced by a separate task bounded by ``_bound(request)``.

        Errors arrive as ``Failed`` events (always the last one). Closing this iterator cancels
        the task and waits for it, so no work outlives the call.
        """
        bound = _bound(request)
        agent_type = agent.spec.type
        tools = MemoryTools(self.memory_client(), request.options.tools, timeout=self.memory_timeout)
        run = AgentRun(request=request, tools=tools, llm=self.llm)
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=1)

        async def produce() -> None:
            timer = asyncio.timeout(bound.seconds)
            try:
                async with timer, _closing(agent.run(run)) as events:
                    async for event in events:
                        await queue.put(event)
                        if isinstance(event, Failed | Final):
                            break
                await queue.put(_DONE)
            except TimeoutError as exc:
                error = (
                    _deadline_error(agent_type, bound) if timer.expired() else _unexpected(agent_type, exc)
                )
                await queue.put(_Raise(error))
            except StatusError as exc:
                await queue.put(_Raise(exc))
            except Exception as exc:
                log.exception("agent %s failed", agent_type)
                await queue.put(_Raise(_unexpected(agent_type, exc)))

        task = asyncio.create_task(produce(), name=f"agent-run:{agent_type}")
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    return
                if isinstance(item, _Raise):
                    yield Failed(item.error)
                    return
                yield item
                if isinstance(item, Failed):
                    return
        finally:
            if not task.done():
                task.cancel()
            await asyncio.wait([task])

    async def _execute(self, request: AgentRequest) -> pb.ExecuteAgentResponse:
        agent = self.registry.get(request.agent_type)
        started = time.perf_counter()
        builder = _ResponseBuilder()
        async with _closing(self._run_events(agent, request)) as events:
            async for event in events:
                if isinstance(event, Failed):
                    raise event.error
                builder.add(event)
        latency_ms = int((time.perf_counter() - started) * 1000)
        response = builder.response(agent.spec.type, latency_ms)
        self.registry.record_latency(agent.spec.type, latency_ms)
        return response

    # -- RPCs ------------------------------------------------------------------------------------

    async def list_available_agents(self, message: pb.ListAgentsRequest) -> pb.ListAgentsResponse:
        agents = [self.registry.info(t) for t in self.registry.types()]
        return pb.ListAgentsResponse(agents=agents, total_count=len(agents))

    async def get_agent_capabilities(
        self, message: pb.GetAgentCapabilitiesRequest
    ) -> pb.GetAgentCapabilitiesResponse:
        if not message.agent_type:
            raise InvalidArgumentError.of(
                "MISSING_FIELD",
                "agent_type is required",
                suggestions=["Call ListAvailableAgents for the registered types."],
                field="agent_type",
            )
        return self.registry.capabilities(message.agent_type)

    async def execute_agent(self, message: pb.ExecuteAgentRequest) -> pb.ExecuteAgentResponse:
        return await self._execute(validate_request(message))

    async def stream_agent_execution(
        self, message: pb.StreamAgentRequest
    ) -> AsyncIterator[pb.AgentStreamChunk]:
        request = validate_request(message, stream=True)
        agent = self.registry.get(request.agent_type)
        started = time.perf_counter()
        async with _closing(self._run_events(agent, request)) as events:
            async for event in events:
                latency_ms = int((time.perf_counter() - started) * 1000)
                if isinstance(event, Failed):
                    yield _error_chunk(event.error)
                    raise event.error
                chunk = _chunk(event, latency_ms)
                if chunk is not None:
                    yield chunk
                if isinstance(event, Final):
                    self.registry.record_latency(agent.spec.type, latency_ms)

    async def execute_agent_batch(self, message: pb.ExecuteAgentBatchRequest) -> pb.ExecuteAgentBatchResponse:
        count = len(message.requests)
        if count == 0 or count > MAX_BATCH:
            raise InvalidArgumentError.of(
                "MISSING_FIELD" if count == 0 else "OUT_OF_RANGE",
                f"a batch holds 1 to {MAX_BATCH} requests, got {count}",
                suggestions=[f"Split the work into batches of at most {MAX_BATCH}."],
                field="requests",
            )
        gate = asyncio.Semaphore(self._batch_concurrency)

        async def item(raw: pb.ExecuteAgentRequest) -> pb.ExecuteAgentResponse:
            async with gate:
                try:
                    response = await self._execute(validate_request(raw))
                except StatusError as exc:
                    return pb.ExecuteAgentResponse(
                        metadata={
                            "status": exc.status.name,
                            "error_code": exc.code or exc.status.name,
                            "error_message": exc.message,
                            "llm_backend": self.llm.name,
                        }
                    )
                response.metadata["status"] = "OK"
                return response

        responses = await asyncio.gather(*(item(r) for r in message.requests))
        return pb.ExecuteAgentBatchResponse(responses=list(responses))


__all__ = ["BATCH_CONCURRENCY", "MAX_BATCH", "AgentService"]
