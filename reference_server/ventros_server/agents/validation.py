"""ExecuteAgentRequest / StreamAgentRequest validation, exactly as the proto comments state.

Every failure is INVALID_ARGUMENT with ErrorDetails.code "MISSING_FIELD" (required and empty),
"INVALID_FIELD" (malformed: not a UUID, unknown tool) or "OUT_OF_RANGE" (a length, count or
number outside its bounds), metadata["field"] naming the request field path (e.g.
"options.timeout_ms") and one suggestion. Fields are checked in declaration order and the first failure
is reported. The agent_type lookup (NOT_FOUND) happens after, in the service.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..validation import INVALID, MISSING, OUT_OF_RANGE, UUID_RE, field_error, is_uuid, utf8_len

KNOWN_TOOLS = ("get_contact_context", "search_memories", "store_memory")

MAX_MESSAGE_BYTES = 16384
MAX_CONTEXT_ENTRIES = 64
MAX_CONTEXT_KEY_BYTES = 128
MAX_CONTEXT_VALUE_BYTES = 4096

DEFAULT_TIMEOUT_MS = 30000
MAX_TIMEOUT_MS = 60000
DEFAULT_MAX_TOKENS = 1024
MAX_MAX_TOKENS = 8192
DEFAULT_TEMPERATURE = 0.7
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.0, 2.0


@dataclass(frozen=True)
class ResolvedOptions:
    """ExecutionOptions with every default applied."""

    #: Effective run bound in ms; for streams 0 means "none" (the client's deadline rules).
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    tools: frozenset[str] = frozenset(KNOWN_TOOLS)
    max_tokens: int = DEFAULT_MAX_TOKENS
    temperature: float = DEFAULT_TEMPERATURE
    #: What the caller actually sent (None = unset), kept for metadata and logs.
    temperature_set: float | None = None
    stream_response: bool = False


@dataclass(frozen=True)
class AgentRequest:
    """A validated ExecuteAgentRequest or StreamAgentRequest."""

    agent_type: str
    contact_id: str
    message: str
    channel_id: str
    session_id: str = ""
    context: dict[str, str] = field(default_factory=dict)
    options: ResolvedOptions = field(default_factory=ResolvedOptions)


_invalid = field_error
_utf8_len = utf8_len


def require_uuid(value: str, field_name: str, *, required: bool = True) -> None:
    example = "e.g. 550e8400-e29b-41d4-a716-446655440000"
    if not value:
        if required:
            raise _invalid(
                MISSING, field_name, f"{field_name} is required", f"Set {field_name} to a UUID, {example}."
            )
        return
    if not is_uuid(value):
        raise _invalid(
            INVALID,
            field_name,
            f"{field_name} must be a UUID (8-4-4-4-12 hexadecimal)",
            f"Send {field_name} in canonical UUID form, {example}.",
        )


def validate_request(request: Any, *, stream: bool = False) -> AgentRequest:
    """Validate an ExecuteAgentRequest/StreamAgentRequest; raises InvalidArgumentError."""
    if not request.agent_type:
        raise _invalid(
            MISSING,
            "agent_type",
            "agent_type is required",
            "Call ListAvailableAgents for the registered types.",
        )
    require_uuid(request.contact_id, "contact_id")
    message = request.message
    if not message.strip():
        raise _invalid(
            MISSING,
            "message",
            "message is required (non-empty after trimming)",
            "Send the user's message text.",
        )
    if _utf8_len(message) > MAX_MESSAGE_BYTES:
        raise _invalid(
            OUT_OF_RANGE,
            "message",
            f"message is longer than {MAX_MESSAGE_BYTES} UTF-8 bytes",
            f"Shorten the message to at most {MAX_MESSAGE_BYTES} bytes.",
        )
    require_uuid(request.channel_id, "channel_id")
    require_uuid(request.session_id, "session_id", required=False)
    context = dict(request.context)
    if len(context) > MAX_CONTEXT_ENTRIES:
        raise _invalid(
            OUT_OF_RANGE,
            "context",
            f"context has {len(context)} entries; at most {MAX_CONTEXT_ENTRIES}",
            f"Send at most {MAX_CONTEXT_ENTRIES} context entries.",
        )
    for key, value in context.items():
        if _utf8_len(key) > MAX_CONTEXT_KEY_BYTES:
            raise _invalid(
                OUT_OF_RANGE,
                "context",
                f"a context key is longer than {MAX_CONTEXT_KEY_BYTES} bytes",
                f"Use context keys of at most {MAX_CONTEXT_KEY_BYTES} bytes.",
                key=key[:64] + "...",
            )
        if _utf8_len(value) > MAX_CONTEXT_VALUE_BYTES:
            raise _invalid(
                OUT_OF_RANGE,
                "context",
                f"context value is longer than {MAX_CONTEXT_VALUE_BYTES} bytes",
                f"Use context values of at most {MAX_CONTEXT_VALUE_BYTES} bytes.",
                key=key[:128],
            )
    options = resolve_options(request.options, stream=stream)
    return AgentRequest(
        agent_type=request.agent_type,
        contact_id=request.contact_id,
        message=message,
        channel_id=request.channel_id,
        session_id=request.session_id,
        context=context,
        options=options,
    )


def resolve_options(options: Any, *, stream: bool = False) -> ResolvedOptions:
    """Apply defaults and bounds. For streams an unset timeout_ms means no server-side bound."""
    if options is None:
        return ResolvedOptions(timeout_ms=0 if stream else DEFAULT_TIMEOUT_MS)
    timeout_ms = options.timeout_ms
    if timeout_ms < 0 or timeout_ms > MAX_TIMEOUT_MS:
        raise _invalid(
            OUT_OF_RANGE,
            "options.timeout_ms",
            f"options.timeout_ms must be in [0, {MAX_TIMEOUT_MS}]",
            f"Use 0 for the default ({DEFAULT_TIMEOUT_MS} ms) or at most {MAX_TIMEOUT_MS}.",
        )
    if timeout_ms == 0 and not stream:
        timeout_ms = DEFAULT_TIMEOUT_MS
    unknown = [t for t in options.tools if t not in KNOWN_TOOLS]
    if unknown:
        raise _invalid(
            INVALID,
            "options.tools",
            f"unknown tool {unknown[0][:64]!r}",
            f"Known tools: {', '.join(KNOWN_TOOLS)} (empty list = all).",
        )
    tools = frozenset(options.tools) if options.tools else frozenset(KNOWN_TOOLS)
    max_tokens = options.max_tokens
    if max_tokens < 0 or max_tokens > MAX_MAX_TOKENS:
        raise _invalid(
            OUT_OF_RANGE,
            "options.max_tokens",
            f"options.max_tokens must be in [0, {MAX_MAX_TOKENS}]",
            f"Use 0 for the default ({DEFAULT_MAX_TOKENS}) or at most {MAX_MAX_TOKENS}.",
        )
    temperature = options.temperature
    if temperature is not None and (
        math.isnan(temperature) or not MIN_TEMPERATURE <= temperature <= MAX_TEMPERATURE
    ):
        raise _invalid(
            OUT_OF_RANGE,
            "options.temperature",
            "options.temperature must be in [0.0, 2.0]",
            f"Leave it unset for the default ({DEFAULT_TEMPERATURE}) or use a value in [0.0, 2.0].",
        )
    return ResolvedOptions(
        timeout_ms=timeout_ms,
        tools=tools,
        max_tokens=max_tokens or DEFAULT_MAX_TOKENS,
        temperature=DEFAULT_TEMPERATURE if temperature is None else float(temperature),
        temperature_set=temperature,
        stream_response=options.stream_response,
    )


__all__ = [
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_TEMPERATURE",
    "DEFAULT_TIMEOUT_MS",
    "KNOWN_TOOLS",
    "MAX_TIMEOUT_MS",
    "UUID_RE",
    "AgentRequest",
    "ResolvedOptions",
    "resolve_options",
    "validate_request",
]
