"""What an agent run produces: an async stream of events, consumed by every RPC.

An agent's ``run()`` is an ``AsyncIterator[AgentEvent]``. ExecuteAgent folds the events into one
ExecuteAgentResponse; StreamAgentExecution turns each into an AgentStreamChunk as it arrives.
Nothing in the RPC layer knows how the agent works inside, so an adapter can put any framework
(e.g. a Google ADK ``LlmAgent``, whose own event stream maps one-to-one onto these) behind it.

    Thought       a reasoning step                      -> THOUGHT chunk, thoughts.reasoning_steps
    ToolCalled    a tool is about to run                -> TOOL_CALL chunk ("Calling tool(args)")
    ToolResult    the tool finished (summary, latency)  -> TOOL_CALL chunk, response.tool_calls
    PartialText   incremental answer text               -> PARTIAL chunk
    Final         the answer, intent, confidence, ...   -> FINAL chunk, the response fields
    Failed        the run failed with a status          -> ERROR chunk, then the non-OK status

An agent must end with exactly one Final (or raise / yield Failed). Failed is only needed by
adapters whose framework reports errors as events; raising a ``ventros.StatusError`` is the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ventros import StatusError


@dataclass(frozen=True)
class Thought:
    text: str


@dataclass(frozen=True)
class ToolCalled:
    tool_name: str
    input: dict[str, str]


@dataclass(frozen=True)
class ToolResult:
    tool_name: str
    input: dict[str, str]
    #: A short human-readable summary of the result, never the raw payload.
    output: str
    latency_ms: int
    #: "ok", "error" or "unavailable".
    outcome: str = "ok"


@dataclass(frozen=True)
class PartialText:
    text: str


@dataclass(frozen=True)
class Final:
    response: str
    intent: str
    confidence: float
    suggested_actions: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Failed:
    error: StatusError


AgentEvent = Thought | ToolCalled | ToolResult | PartialText | Final | Failed

__all__ = ["AgentEvent", "Failed", "Final", "PartialText", "Thought", "ToolCalled", "ToolResult"]
