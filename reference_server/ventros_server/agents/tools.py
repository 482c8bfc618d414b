"""The agents' tools: MemoryService calls through ``ventros.MemoryClient``, whitelisted and recorded.

Each tool returns a ToolResult (input, a short summary of the output, measured latency, outcome)
next to its value. A tool outside the run's whitelist (ExecutionOptions.tools) is never called:
asking for it raises ToolNotAllowed, a programming error in the agent.

A failing memory service is not a failure of the run (the proto's decision):

* unreachable (UNAVAILABLE, DEADLINE_EXCEEDED, a transport error): the tool's outcome is
  "unavailable" and the later memory tools of the run are skipped;
* any other error (INTERNAL, UNAUTHENTICATED, INVALID_ARGUMENT...): the outcome is "error" and
  the other tools still run (one broken RPC does not make the others useless).

``MemoryTools.status`` (response metadata["memory"]) is "unavailable" when the service was
unreachable or when no memory call of the run succeeded although some were made, i.e. whenever
the agent answered without memory; else "ok". NOT_FOUND from get_contact_context means a contact
the store has never seen: an "ok" outcome with no profile.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ventros import DeadlineExceededError, MemoryClient, NotFoundError, StatusError, UnavailableError
from ventros import memory as pb_memory

from .events import ToolResult

_OUTPUT_LIMIT = 300
#: The memory type agents store their conclusions under.
INSIGHT_TYPE = "agent_insight"


class ToolNotAllowed(RuntimeError):
    """An agent asked for a tool outside the run's whitelist (a bug in the agent)."""


@dataclass(frozen=True)
class ContactSnapshot:
    """What get_contact_context told us, in the shape the agents use."""

    known: bool = False
    name: str = ""
    tier: str = ""
    tags: tuple[str, ...] = ()
    lifetime_value: float | None = None
    churn_risk: float | None = None
    total_purchases: int = 0
    total_messages: int = 0
    #: Contents of the recent memories, newest first, without the agents' own insights.
    recent_memories: tuple[str, ...] = ()
    #: Contents of recent "agent_insight" memories (what agents concluded before).
    insights: tuple[str, ...] = ()
    recent_messages: tuple[str, ...] = ()
    custom_fields: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_response(cls, resp: pb_memory.GetContactContextResponse) -> ContactSnapshot:
        profile = resp.profile or pb_memory.ContactProfile()
        stats = resp.stats
        return cls(
            known=True,
            name=profile.name,
            tier=profile.tier,
            tags=tuple(profile.tags),
            lifetime_value=stats.lifetime_value if stats is not None else None,
            churn_risk=stats.churn_risk if stats is not None else None,
            total_purchases=stats.total_purchases if stats is not None else 0,
            total_messages=stats.total_messages if stats is not None else 0,
            recent_memories=tuple(m.content for m in resp.recent_memories if m.memory_type != INSIGHT_TYPE),
            insights=tuple(m.content for m in resp.recent_memories if m.memory_type == INSIGHT_TYPE),
            recent_messages=tuple(m.content for m in resp.recent_messages),
            custom_fields=dict(profile.custom_fields),
        )

    def summary(self) -> str:
        if not self.known:
            return "no record of this contact yet (new contact)"
        who = self.name or "unnamed contact"
        if self.tier:
            who += f" ({self.tier})"
        parts = [who]
        if self.lifetime_value is not None:
            parts.append(f"LTV {self.lifetime_value:.2f}")
        if self.churn_risk is not None:
            parts.append(f"churn risk {self.churn_risk:.0%}")
        parts.append(
            f"{len(self.recent_memories)} recent memories, {len(self.insights)} agent insights, "
            f"{len(self.recent_messages)} recent messages"
        )
        return "; ".join(parts)


def _clip(text: str, limit: int = _OUTPUT_LIMIT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _failure(exc: BaseException) -> tuple[str, str]:
    """(outcome, summary) of a failed memory call."""
    if isinstance(exc, UnavailableError | DeadlineExceededError):
        return "unavailable", f"unavailable: {exc.status.name}: {exc.message}"
    if isinstance(exc, StatusError):
        return "error", f"error: {exc.status.name} {exc.code}: {exc.message}"
    return "unavailable", f"unavailable: {type(exc).__name__}: {exc}"


class MemoryTools:
    """The three memory tools of one run, bound to its whitelist."""

    def __init__(
        self, client: MemoryClient | None, allowed: frozenset[str], *, timeout: float | None = None
    ) -> None:
        self._client = client
        self.allowed = allowed
        self.timeout = timeout
        self.unreachable = client is None
        self.succeeded = 0
        self.failed = 0

    @property
    def status(self) -> str:
        """ "unavailable" when the agent is answering without memory, else "ok"."""
        without_memory = self.unreachable or (self.failed > 0 and self.succeeded == 0)
        return "unavailable" if without_memory else "ok"

    def can_use(self, tool_name: str) -> bool:
        """Allowed by the whitelist and the memory service not known to be unreachable."""
        return tool_name in self.allowed and not self.unreachable

    async def _run(self, tool_name: str, inputs: dict[str, str], call: Any) -> tuple[ToolResult, Any, bool]:
        if tool_name not in self.allowed:
            raise ToolNotAllowed(f"tool {tool_name!r} is not in this run's whitelist")
        if self._client is None or self.unreachable:
            raise ToolNotAllowed(f"tool {tool_name!r} called while memory is unreachable")
        started = time.perf_counter()
        value: Any = None
        found = True
        try:
            value = await call(self._client)
            outcome, output = "ok", ""
        except NotFoundError as exc:
            outcome, output, found = "ok", exc.message, False
        except (StatusError, OSError) as exc:
            outcome, output = _failure(exc)
            self.unreachable = self.unreachable or outcome == "unavailable"
        if outcome == "ok":
            self.succeeded += 1
        else:
            self.failed += 1
        latency_ms = int((time.perf_counter() - started) * 1000)
        result = ToolResult(tool_name, inputs, _clip(output), latency_ms, outcome)
        return result, value, found and outcome == "ok"

    async def get_contact_context(
        self, contact_id: str, *, history_limit: int = 20
    ) -> tuple[ToolResult, ContactSnapshot]:
        inputs = {"contact_id": contact_id, "history_limit": str(history_limit)}
        result, resp, ok = await self._run(
            "get_contact_context",
            inputs,
            lambda c: c.get_contact_context(
                contact_id=contact_id, history_limit=history_limit, timeout=self.timeout
            ),
        )
        snapshot = ContactSnapshot.from_response(resp) if ok else ContactSnapshot()
        if result.outcome == "ok":
            result = ToolResult(result.tool_name, inputs, _clip(snapshot.summary()), result.latency_ms, "ok")
        return result, snapshot

    async def search_memories(
        self, contact_id: str, query: str, *, limit: int = 5
    ) -> tuple[ToolResult, list[pb_memory.Memory]]:
        query = query[:1000]
        inputs = {"contact_id": contact_id, "query": query, "limit": str(limit)}
        result, resp, ok = await self._run(
            "search_memories",
            inputs,
            lambda c: c.search_memories(
                contact_id=contact_id, query=query, limit=limit, timeout=self.timeout
            ),
        )
        memories = list(resp.memories) if ok and resp is not None else []
        if result.outcome == "ok":
            if memories:
                listed = "; ".join(
                    f"[{m.memory_type}] {_clip(m.content, 80)} ({m.relevance_score:.2f})"
                    for m in memories[:3]
                )
                output = f"Found {len(memories)} memories: {listed}"
            else:
                output = "no matching memories"
            result = ToolResult(result.tool_name, inputs, _clip(output), result.latency_ms, "ok")
        return result, memories

    async def store_memory(
        self, contact_id: str, content: str, *, memory_type: str, metadata: dict[str, str] | None = None
    ) -> tuple[ToolResult, str]:
        inputs = {"contact_id": contact_id, "memory_type": memory_type, "content": _clip(content, 200)}
        result, resp, ok = await self._run(
            "store_memory",
            inputs,
            lambda c: c.store_memory(
                contact_id=contact_id,
                content=content,
                memory_type=memory_type,
                metadata=dict(metadata or {}),
                timeout=self.timeout,
            ),
        )
        memory_id = resp.memory_id if ok and resp is not None else ""
        if result.outcome == "ok":
            result = ToolResult(
                result.tool_name, inputs, f"stored memory {memory_id}", result.latency_ms, "ok"
            )
        return result, memory_id


__all__ = ["INSIGHT_TYPE", "ContactSnapshot", "MemoryTools", "ToolNotAllowed"]
