"""The contract as code: RPC table, bounds, and the validation rules every server must apply.

Everything here restates the normative comments of proto/ventros/**/*.proto (and the spec
sections they cite). The validators return, for one request, which field paths make it invalid:
``definite`` (the server must answer INVALID_ARGUMENT naming one of them in
ErrorDetails.metadata["field"]) and ``maybe`` (the contract does not settle it, so either
answer passes, e.g. "a__b" as lower_snake_case). An empty verdict means the request is valid
and the server must not answer INVALID_ARGUMENT.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from grpclib.const import Status
from ventros import agents as pb_agents
from ventros import memory as pb_memory

MEMORY_SERVICE = "ventros.memory.MemoryService"
AGENT_SERVICE = "ventros.agents.AgentService"
SERVICE_ALIASES = {"memory": MEMORY_SERVICE, "agent": AGENT_SERVICE}

# -- bounds (proto comments) --------------------------------------------------------------------
SEARCH_DEFAULT_LIMIT, SEARCH_MAX_LIMIT = 10, 100
MAX_QUERY_BYTES = 4096
MAX_MEMORY_TYPES = 32
INCLUDE_FIELDS = ("content", "embedding", "metadata", "related")
HISTORY_DEFAULT, HISTORY_MAX = 50, 500
MAX_CONTENT_BYTES = 16384
MAX_MEMORY_TYPE_BYTES = 64
MAX_METADATA_ENTRIES, MAX_METADATA_KEY_BYTES, MAX_METADATA_VALUE_BYTES = 64, 128, 4096
MAX_RELATED = 32
MAX_ENTITY_TYPE_BYTES, MAX_ENTITY_ID_BYTES = 64, 128
DEPTH_DEFAULT, DEPTH_MAX = 2, 5
RELATED_DEFAULT_LIMIT, RELATED_MAX_LIMIT = 20, 100
GRAPH_MAX_NODES, GRAPH_MAX_EDGES = 200, 500
MAX_AGENT_MESSAGE_BYTES = 16384
MAX_CONTEXT_ENTRIES, MAX_CONTEXT_KEY_BYTES, MAX_CONTEXT_VALUE_BYTES = 64, 128, 4096
TIMEOUT_DEFAULT_MS, TIMEOUT_MAX_MS = 30000, 60000
MAX_TOKENS_DEFAULT, MAX_TOKENS_MAX = 1024, 8192
TEMPERATURE_MIN, TEMPERATURE_MAX = 0.0, 2.0
KNOWN_TOOLS = ("get_contact_context", "search_memories", "store_memory")
BATCH_MAX = 32
MAX_MESSAGE_BYTES = 50 * 1024 * 1024
FIELD_TYPES = ("string", "int", "float", "bool", "object", "list")
CHUNK_FINAL_KEYS = ("confidence", "intent", "latency_ms", "suggested_actions")

UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
#: Unambiguously lower_snake_case: "fact", "agent_insight", "v2_note".
SNAKE_STRICT_RE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")
#: Characters lower_snake_case may contain at all; outside them a value is certainly invalid.
SNAKE_CHARS_RE = re.compile(r"[a-z0-9_]+")
ENTITY_ID_RE = re.compile(r"[A-Za-z0-9_.:-]+")
ERROR_CODE_RE = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*")
#: Whitespace that Python's str.strip and Go's strings.TrimSpace disagree on; generated text
#: avoids it so "empty after trimming" means the same thing in every language.
TRIM_AMBIGUOUS = "\x1c\x1d\x1e\x1f"


@dataclass(frozen=True)
class Rpc:
    service: str  # "memory" or "agent"
    name: str
    request: Any
    response: Any
    streaming: bool = False
    #: What a request the validators call valid may get (besides OK). Never UNKNOWN or INTERNAL.
    valid_statuses: frozenset[Status] = frozenset({Status.OK})

    @property
    def path(self) -> str:
        return f"/{SERVICE_ALIASES[self.service]}/{self.name}"


_OK_NF = frozenset({Status.OK, Status.NOT_FOUND})

RPCS: dict[str, Rpc] = {
    rpc.name: rpc
    for rpc in (
        Rpc("memory", "SearchMemories", pb_memory.SearchMemoriesRequest, pb_memory.SearchMemoriesResponse),
        Rpc(
            "memory",
            "GetContactContext",
            pb_memory.GetContactContextRequest,
            pb_memory.GetContactContextResponse,
            valid_statuses=_OK_NF,
        ),
        Rpc("memory", "StoreMemory", pb_memory.StoreMemoryRequest, pb_memory.StoreMemoryResponse),
        Rpc(
            "memory",
            "GetRelatedEntities",
            pb_memory.GetRelatedEntitiesRequest,
            pb_memory.GetRelatedEntitiesResponse,
            valid_statuses=_OK_NF,
        ),
        Rpc("agent", "ListAvailableAgents", pb_agents.ListAgentsRequest, pb_agents.ListAgentsResponse),
        Rpc(
            "agent",
            "GetAgentCapabilities",
            pb_agents.GetAgentCapabilitiesRequest,
            pb_agents.GetAgentCapabilitiesResponse,
            valid_statuses=_OK_NF,
        ),
        Rpc(
            "agent",
            "ExecuteAgent",
            pb_agents.ExecuteAgentRequest,
            pb_agents.ExecuteAgentResponse,
            valid_statuses=frozenset({Status.OK, Status.NOT_FOUND, Status.DEADLINE_EXCEEDED}),
        ),
        Rpc(
            "agent",
            "StreamAgentExecution",
            pb_agents.StreamAgentRequest,
            pb_agents.AgentStreamChunk,
            streaming=True,
            valid_statuses=frozenset({Status.OK, Status.NOT_FOUND, Status.DEADLINE_EXCEEDED}),
        ),
        Rpc(
            "agent",
            "ExecuteAgentBatch",
            pb_agents.ExecuteAgentBatchRequest,
            pb_agents.ExecuteAgentBatchResponse,
            valid_statuses=frozenset({Status.OK, Status.DEADLINE_EXCEEDED}),
        ),
    )
}


@dataclass
class Verdict:
    """Which fields make a request invalid: certainly (definite) or arguably (maybe)."""

    definite: list[str] = field(default_factory=list)
    maybe: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.definite and not self.maybe

    @property
    def invalid(self) -> bool:
        return bool(self.definite)

    def add(self, path: str, *, maybe: bool = False) -> None:
        (self.maybe if maybe else self.definite).append(path)


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def is_uuid(value: str) -> bool:
    return UUID_RE.fullmatch(value) is not None


def blank(text: str) -> bool:
    return not text.strip()


def snake(
    value: str, path: str, verdict: Verdict, *, max_bytes: int, required: bool = True, lenient: bool = False
) -> None:
    """lower_snake_case of at most ``max_bytes``; ``lenient``: the contract states no rule here,
    so a violation may be INVALID_ARGUMENT or not."""
    if not value:
        if required:
            verdict.add(path)
        return
    if utf8_len(value) > max_bytes or not SNAKE_CHARS_RE.fullmatch(value):
        verdict.add(path, maybe=lenient)
    elif not SNAKE_STRICT_RE.fullmatch(value):
        verdict.add(path, maybe=True)


def uuid_field(value: str, path: str, verdict: Verdict, *, required: bool = True) -> None:
    if not value:
        if required:
            verdict.add(path)
    elif not is_uuid(value):
        verdict.add(path)


def _enum_known(enum: Any, value: Any) -> bool:
    try:
        return int(value) in {int(member) for member in enum}
    except (TypeError, ValueError):
        return False


def validate_search(req: pb_memory.SearchMemoriesRequest) -> Verdict:
    v = Verdict()
    uuid_field(req.contact_id, "contact_id", v)
    graph = int(req.mode) == int(pb_memory.SearchMode.GRAPH_ONLY)
    if (blank(req.query) and not graph) or utf8_len(req.query) > MAX_QUERY_BYTES:
        v.add("query")
    if not 0 <= req.limit <= SEARCH_MAX_LIMIT:
        v.add("limit")
    if len(req.memory_types) > MAX_MEMORY_TYPES:
        v.add("memory_types")
    if not _enum_known(pb_memory.SearchMode, req.mode):
        v.add("mode")
    if any(name not in INCLUDE_FIELDS for name in req.include_fields):
        v.add("include_fields")
    return v


def validate_context(req: pb_memory.GetContactContextRequest) -> Verdict:
    v = Verdict()
    uuid_field(req.contact_id, "contact_id", v)
    if not 0 <= req.history_limit <= HISTORY_MAX:
        v.add("history_limit")
    return v


def _finite_in(value: float, low: float, high: float) -> bool:
    return not math.isnan(value) and low <= value <= high


def validate_related_entity(entity: pb_memory.RelatedEntity, path: str, v: Verdict) -> None:
    snake(entity.entity_type, f"{path}.entity_type", v, max_bytes=MAX_ENTITY_TYPE_BYTES)
    eid = entity.entity_id
    if not eid or utf8_len(eid) > MAX_ENTITY_ID_BYTES or not ENTITY_ID_RE.fullmatch(eid):
        v.add(f"{path}.entity_id")
    relationship = entity.relationship
    snake(relationship, f"{path}.relationship", v, max_bytes=2**31, required=False)
    if utf8_len(relationship) > MAX_ENTITY_TYPE_BYTES and SNAKE_CHARS_RE.fullmatch(relationship):
        v.add(f"{path}.relationship", maybe=True)  # no stated cap; 64 bytes like every other name
    if not _finite_in(entity.strength, 0.0, 1.0):
        v.add(f"{path}.strength")


def validate_store(req: pb_memory.StoreMemoryRequest) -> Verdict:
    v = Verdict()
    uuid_field(req.contact_id, "contact_id", v)
    if blank(req.content) or utf8_len(req.content) > MAX_CONTENT_BYTES:
        v.add("content")
    snake(req.memory_type, "memory_type", v, max_bytes=MAX_MEMORY_TYPE_BYTES)
    meta = req.metadata
    if len(meta) > MAX_METADATA_ENTRIES or any(
        not 1 <= utf8_len(k) <= MAX_METADATA_KEY_BYTES or utf8_len(val) > MAX_METADATA_VALUE_BYTES
        for k, val in meta.items()
    ):
        v.add("metadata")
    if len(req.related) > MAX_RELATED:
        v.add("related")
    for entity in req.related:
        validate_related_entity(entity, "related", v)
    return v


def validate_related(req: pb_memory.GetRelatedEntitiesRequest) -> Verdict:
    v = Verdict()
    eid = req.entity_id
    if not eid:
        v.add("entity_id")
    elif utf8_len(eid) > MAX_ENTITY_ID_BYTES or not ENTITY_ID_RE.fullmatch(eid):
        # Not an id any entity can have: INVALID_ARGUMENT or NOT_FOUND are both fair answers.
        v.add("entity_id", maybe=True)
    # A type no node can have (RelatedEntity.entity_type's rules): INVALID_ARGUMENT or NOT_FOUND.
    snake(req.entity_type, "entity_type", v, max_bytes=MAX_ENTITY_TYPE_BYTES, required=False, lenient=True)
    if not 0 <= req.max_depth <= DEPTH_MAX:
        v.add("max_depth")
    if not 0 <= req.limit <= RELATED_MAX_LIMIT:
        v.add("limit")
    return v


def validate_capabilities(req: pb_agents.GetAgentCapabilitiesRequest) -> Verdict:
    v = Verdict()
    if not req.agent_type:
        v.add("agent_type")
    return v


def validate_options(options: pb_agents.ExecutionOptions | None, prefix: str, v: Verdict) -> None:
    if options is None:
        return
    if not 0 <= options.timeout_ms <= TIMEOUT_MAX_MS:
        v.add(f"{prefix}options.timeout_ms")
    if any(tool not in KNOWN_TOOLS for tool in options.tools):
        v.add(f"{prefix}options.tools")
    if not 0 <= options.max_tokens <= MAX_TOKENS_MAX:
        v.add(f"{prefix}options.max_tokens")
    if options.temperature is not None and not _finite_in(
        options.temperature, TEMPERATURE_MIN, TEMPERATURE_MAX
    ):
        v.add(f"{prefix}options.temperature")


def validate_execute(req: Any, prefix: str = "") -> Verdict:
    """ExecuteAgentRequest and StreamAgentRequest (same fields, same rules)."""
    v = Verdict()
    if not req.agent_type:
        v.add(f"{prefix}agent_type")
    uuid_field(req.contact_id, f"{prefix}contact_id", v)
    if blank(req.message) or utf8_len(req.message) > MAX_AGENT_MESSAGE_BYTES:
        v.add(f"{prefix}message")
    uuid_field(req.channel_id, f"{prefix}channel_id", v)
    uuid_field(req.session_id, f"{prefix}session_id", v, required=False)
    ctx = req.context
    if len(ctx) > MAX_CONTEXT_ENTRIES or any(
        utf8_len(k) > MAX_CONTEXT_KEY_BYTES or utf8_len(val) > MAX_CONTEXT_VALUE_BYTES
        for k, val in ctx.items()
    ):
        v.add(f"{prefix}context")
    validate_options(req.options, prefix, v)
    return v


def validate_batch(req: pb_agents.ExecuteAgentBatchRequest) -> Verdict:
    v = Verdict()
    if not 1 <= len(req.requests) <= BATCH_MAX:
        v.add("requests")
    return v


VALIDATORS: dict[str, Callable[[Any], Verdict]] = {
    "SearchMemories": validate_search,
    "GetContactContext": validate_context,
    "StoreMemory": validate_store,
    "GetRelatedEntities": validate_related,
    "GetAgentCapabilities": validate_capabilities,
    "ExecuteAgent": validate_execute,
    "StreamAgentExecution": validate_execute,
    "ExecuteAgentBatch": validate_batch,
}


_INDEX_RE = re.compile(r"\[[^\]]*\]|\.\d+(?=\.|$)")


def normalise_field(path: str) -> str:
    """ "related[3].entity_type" / "related.3.entity_type" -> "related.entity_type"."""
    return _INDEX_RE.sub("", path.strip())


def field_matches(reported: str, expected: str) -> bool:
    """The reported path names the expected field, or a part of it (metadata["k"], related[0].x)."""
    got = normalise_field(reported)
    return got == expected or got.startswith(expected + ".") or reported.strip().startswith(expected + "[")
