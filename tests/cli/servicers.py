"""Small deterministic servicers the CLI tests serve through ventros_server.app.

They answer like the reference services do (same messages, status codes and ErrorDetails) but
with fixed data, so tables and JSON can be compared with snapshots byte for byte.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import uuid

from ventros import InvalidArgumentError, NotFoundError
from ventros.agents import (
    AgentCategory,
    AgentInfo,
    AgentSchema,
    AgentServiceBase,
    AgentStreamChunk,
    AgentThoughts,
    ChunkType,
    Example,
    ExecuteAgentResponse,
    Field,
    GetAgentCapabilitiesResponse,
    ListAgentsResponse,
    ToolCall,
)
from ventros.memory import (
    ContactProfile,
    ContactStats,
    Edge,
    GetContactContextResponse,
    GetRelatedEntitiesResponse,
    KnowledgeGraph,
    Memory,
    MemoryServiceBase,
    Message,
    Node,
    RelatedEntity,
    RelatedEntityResult,
    SearchMemoriesResponse,
    SearchMetadata,
    SearchMode,
    StoreMemoryResponse,
)

CONTACT = "5f0c6d1e-8a7b-4c3d-9e2f-1a2b3c4d5e6f"
CHANNEL = "0b9a8c7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d"
UNKNOWN_CONTACT = "99999999-9999-4999-8999-999999999999"
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
T0 = dt.datetime(2024, 9, 15, 10, 30, tzinfo=dt.UTC)

AGENTS = [
    AgentInfo(
        type="CustomerServiceAgent",
        name="Customer Service Specialist",
        description="Handles customer inquiries with the contact's history at hand.",
        capabilities=["intent_classification", "response_generation", "sentiment_analysis"],
        required_inputs=["contact_id", "message", "channel_id"],
        avg_latency_ms=850,
        category=AgentCategory.SUPPORT,
    ),
    AgentInfo(
        type="LeadQualifierAgent",
        name="Lead Qualifier",
        description="Scores leads and asks qualification questions.",
        capabilities=["lead_scoring", "qualification_questions", "urgency_detection"],
        required_inputs=["contact_id", "message", "channel_id"],
        avg_latency_ms=920,
        category=AgentCategory.SALES,
    ),
]


def _check_uuid(value: str, field: str) -> None:
    if not value:
        raise InvalidArgumentError.of(
            "MISSING_FIELD", f"{field} is required", suggestions=[f"Pass {field} as a UUID."], field=field
        )
    if not _UUID.match(value):
        raise InvalidArgumentError.of(
            "INVALID_FIELD",
            f"{field} must be a UUID",
            suggestions=[f"Pass {field} in the 8-4-4-4-12 hex form."],
            field=field,
        )


def _agent(agent_type: str) -> AgentInfo:
    for agent in AGENTS:
        if agent.type == agent_type:
            return agent
    raise NotFoundError.of(
        "AGENT_NOT_FOUND",
        f"Agent type '{agent_type}' does not exist",
        suggestions=["Try CustomerServiceAgent instead"],
        agent_type=agent_type,
    )


class FakeAgents(AgentServiceBase):
    async def list_available_agents(self, message):  # type: ignore[no-untyped-def]
        return ListAgentsResponse(agents=AGENTS, total_count=len(AGENTS))

    async def get_agent_capabilities(self, message):  # type: ignore[no-untyped-def]
        agent = _agent(message.agent_type)
        return GetAgentCapabilitiesResponse(
            agent=agent,
            schema=AgentSchema(
                input_fields=[
                    Field(name="contact_id", type="string", required=True, description="UUID of the contact"),
                    Field(
                        name="message", type="string", required=True, description="User message to process"
                    ),
                    Field(name="session_id", type="string", description="Current session UUID"),
                    Field(
                        name="options.timeout_ms", type="int", description="Run bound", default_value="30000"
                    ),
                ],
                output_fields=[
                    Field(name="response", type="string", required=True, description="The answer")
                ],
            ),
            examples=[
                Example(
                    description="A delivery question",
                    input={"message": "Where is my order?"},
                    output={"intent": "order_status", "response": "It ships tomorrow."},
                )
            ],
        )

    def _validate(self, message) -> AgentInfo:  # type: ignore[no-untyped-def]
        agent = _agent(message.agent_type)
        _check_uuid(message.contact_id, "contact_id")
        _check_uuid(message.channel_id, "channel_id")
        if not message.message.strip():
            raise InvalidArgumentError.of("MISSING_FIELD", "message is required", field="message")
        return agent

    async def execute_agent(self, message):  # type: ignore[no-untyped-def]
        self._validate(message)
        if message.message == "slow":
            await asyncio.sleep(10)
        if message.message.startswith("sleep:"):
            await asyncio.sleep(float(message.message.removeprefix("sleep:")))
        context = ",".join(f"{k}={v}" for k, v in sorted(message.context.items()))
        return ExecuteAgentResponse(
            response=f"Olá! You said: {message.message}",
            intent="order_status",
            confidence=0.95,
            suggested_actions=["open_ticket"],
            metadata={"llm_backend": "offline", "memory": "ok", "context": context},
            latency_ms=12,
            tool_calls=[
                ToolCall(
                    tool_name="search_memories",
                    input={"query": "purchases"},
                    output="1 memory found",
                    latency_ms=3,
                )
            ],
            thoughts=AgentThoughts(
                reasoning_steps=["Check the purchase history", "Answer politely"], final_answer="done"
            ),
        )

    async def stream_agent_execution(self, message):  # type: ignore[no-untyped-def]
        self._validate(message)
        yield AgentStreamChunk(type=ChunkType.THOUGHT, content="User is asking about an order")
        yield AgentStreamChunk(
            type=ChunkType.TOOL_CALL, content='Calling search_memories(contact_id=..., query="purchases")'
        )
        yield AgentStreamChunk(type=ChunkType.TOOL_CALL, content="Found: Customer purchased product Y")
        if message.message == "fail":
            yield AgentStreamChunk(
                type=ChunkType.ERROR,
                content="the LLM backend is down",
                metadata={"status": "UNAVAILABLE", "error_code": "LLM_UNAVAILABLE"},
            )
            from ventros import UnavailableError

            raise UnavailableError.of(
                "LLM_UNAVAILABLE", "the LLM backend is down", suggestions=["Retry later."]
            )
        for word in ["Olá! ", "Your order ", "ships tomorrow."]:
            await asyncio.sleep(0.01)
            yield AgentStreamChunk(type=ChunkType.PARTIAL, content=word)
        yield AgentStreamChunk(
            type=ChunkType.FINAL,
            content="Olá! Your order ships tomorrow.",
            metadata={
                "confidence": "0.95",
                "intent": "order_status",
                "latency_ms": "40",
                "suggested_actions": "open_ticket",
            },
        )


class FakeMemory(MemoryServiceBase):
    def __init__(self) -> None:
        self.stored: list[tuple[str, str, str, dict[str, str]]] = []

    async def search_memories(self, message):  # type: ignore[no-untyped-def]
        _check_uuid(message.contact_id, "contact_id")
        if message.mode != SearchMode.GRAPH_ONLY and not message.query.strip():
            raise InvalidArgumentError.of(
                "MISSING_FIELD",
                "query is required for this mode",
                suggestions=["Pass --query, or use --mode graph."],
                field="query",
            )
        memories = [
            Memory(
                id="m-1",
                content="Customer purchased product Y",
                memory_type="purchase",
                relevance_score=0.95,
                created_at=T0,
                related=[RelatedEntity(entity_type="product", entity_id="p-123", relationship="purchased")],
            ),
            Memory(
                id="m-2",
                content="Complained about delivery delay",
                memory_type="support_ticket",
                relevance_score=0.87,
                created_at=T0 + dt.timedelta(days=3),
                related=[RelatedEntity(entity_type="ticket", entity_id="t-789")],
            ),
        ]
        if message.memory_types:
            memories = [m for m in memories if m.memory_type in message.memory_types]
        total = len(memories)
        return SearchMemoriesResponse(
            memories=memories[: message.limit or 10],
            search_latency_ms=1.25,
            total_count=total,
            metadata=SearchMetadata(
                vector_matches=2,
                keyword_matches=1,
                graph_matches=0,
                vector_weight=0.6,
                keyword_weight=0.4,
                graph_weight=0.0,
            ),
        )

    async def store_memory(self, message):  # type: ignore[no-untyped-def]
        _check_uuid(message.contact_id, "contact_id")
        self.stored.append((message.contact_id, message.content, message.memory_type, dict(message.metadata)))
        return StoreMemoryResponse(memory_id=str(uuid.uuid4()), success=True, latency_ms=0.5)

    async def get_contact_context(self, message):  # type: ignore[no-untyped-def]
        _check_uuid(message.contact_id, "contact_id")
        if message.contact_id == UNKNOWN_CONTACT:
            raise NotFoundError.of(
                "CONTACT_NOT_FOUND",
                "the store knows nothing of this contact",
                suggestions=["Store a memory for it first."],
            )
        graph = KnowledgeGraph()
        if message.include_graph:
            graph = KnowledgeGraph(
                nodes=[
                    Node(id=message.contact_id, type="contact"),
                    Node(id="p-123", type="product"),
                    Node(id="t-789", type="ticket"),
                ],
                edges=[
                    Edge(from_id=message.contact_id, to_id="p-123", relationship="purchased", weight=1.0),
                    Edge(
                        from_id=message.contact_id, to_id="t-789", relationship="complained_about", weight=0.8
                    ),
                ],
            )
        return GetContactContextResponse(
            profile=ContactProfile(
                contact_id=message.contact_id,
                name="João Silva",
                email="joao@example.com",
                tier="premium",
                tags=["vip"],
            ),
            recent_memories=[
                Memory(
                    id="m-2",
                    content="Complained about delivery delay",
                    memory_type="support_ticket",
                    created_at=T0,
                )
            ],
            recent_messages=[
                Message(
                    id="msg-1", content="Where is my order?", is_inbound=True, sent_at=T0, channel="whatsapp"
                )
            ],
            graph=graph,
            stats=ContactStats(
                total_messages=14,
                total_purchases=3,
                lifetime_value=5000.0,
                churn_risk=0.125,
                first_contact=T0,
                last_activity=T0 + dt.timedelta(days=10),
            ),
            latency_ms=0.7,
        )

    async def get_related_entities(self, message):  # type: ignore[no-untyped-def]
        if message.entity_id == "nothing":
            raise NotFoundError.of("ENTITY_NOT_FOUND", f"no entity {message.entity_id!r}")
        purchased = Edge(from_id=message.entity_id, to_id="p-123", relationship="purchased", weight=1.0)
        results = [
            RelatedEntityResult(
                entity=Node(id="p-123", type="product", properties={"name": "Phone Y"}),
                path=[purchased],
                relevance=0.9,
            ),
            RelatedEntityResult(
                entity=Node(id="c-9", type="category", properties={"name": "electronics"}),
                path=[purchased, Edge(from_id="p-123", to_id="c-9", relationship="in_category")],
                relevance=0.45,
            ),
        ]
        if message.target_types:
            results = [r for r in results if r.entity.type in message.target_types]
        return GetRelatedEntitiesResponse(entities=results[: message.limit or 20], latency_ms=0.3)
