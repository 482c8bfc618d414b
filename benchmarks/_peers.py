"""What the benchmarks serve: the same handlers on two stacks.

Two sets of handlers (``python -m benchmarks.serving --handlers real|same-shape``):

**real** (the default): the reference services themselves, ``ventros_server.agents.AgentService``
(ListAvailableAgents) and ``ventros_server.memory.MemoryService`` over a ``:memory:`` DuckDB store
loaded with the demo data set (SearchMemories, KEYWORD_ONLY). Our grpclib server runs them as
they are (``real_services``); grpc.aio runs the very same objects through ``grpcio_real_handlers``,
which decodes the upb request, re-parses its bytes into the betterproto2 request, awaits our
handler method and turns the betterproto2 response back into a upb message.

**same-shape**: written when the reference services had not landed yet, kept because it isolates
the transport from the handlers' own cost (no DuckDB, no thread hop):

* ListAvailableAgents: a fixed catalogue of 5 AgentInfo (one per category), built per call;
* SearchMemories (KEYWORD_ONLY): a keyword search over 200 in-memory memories of one contact
  (token overlap score, top ``limit``, content + metadata + related filled, no embedding);
* StreamAgentExecution: 50 chunks (THOUGHT, TOOL_CALL, 47 PARTIAL, FINAL) per call.

The same logic (``catalogue()``, ``keyword_search()``, ``stream_script()``) feeds
* a betterproto2 servicer (what our grpclib server runs), and
* a grpcio servicer building protobuf-runtime (upb) messages from stubs that grpcio-tools
  compiles from our .proto files into a temporary directory (``grpcio_modules``); the
  generated modules are called ventros.* and clash with our package, so they are loaded under
  other names, as tests/foundation/grpcio_peer.py does.
"""

from __future__ import annotations

import asyncio
import datetime
import random
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HANDLERS = ("real", "same-shape")
#: Real handlers: the demo contact with the most English memories, and a query matching 6 of them.
REAL_CONTACT_ID = "d6ab2bca-5565-4628-84fe-5d4638b3b2b1"
REAL_QUERY = "Fone Bluetooth delivery damaged purchased"
CONTACT_ID = "6f1c0c1e-3a51-4b5e-9c64-1d2b7a9e0f11"
QUERY = "late delivery refund"
AGENT_SERVICE = "ventros.agents.AgentService"
MEMORY_SERVICE = "ventros.memory.MemoryService"
STREAM_CHUNKS = 50

# -- the data, shared by both stacks -------------------------------------------------------

_AGENTS = [
    ("SalesAgent", "Sales", "Qualifies leads and proposes the next sales step.", 0),
    ("CustomerServiceAgent", "Customer service", "Answers support questions and opens tickets.", 1),
    ("MarketingAgent", "Marketing", "Suggests campaigns and segments for a contact.", 2),
    ("RetentionAgent", "Retention", "Detects churn risk and offers retention actions.", 3),
    ("AnalyticsAgent", "Analytics", "Summarises a contact's history and key metrics.", 4),
]


def catalogue() -> list[dict[str, Any]]:
    return [
        {
            "type": type_,
            "name": name,
            "description": description,
            "capabilities": ["search_memories", "get_contact_context", "store_memory"],
            "required_inputs": ["contact_id", "message", "channel_id"],
            "avg_latency_ms": 850 + 100 * category,
            "category": category,
        }
        for type_, name, description, category in _AGENTS
    ]


_WORDS = [
    "order",
    "delivery",
    "late",
    "refund",
    "invoice",
    "payment",
    "product",
    "catalog",
    "discount",
    "ticket",
    "support",
    "call",
    "whatsapp",
    "email",
    "premium",
    "plan",
    "upgrade",
    "cancel",
    "complaint",
    "shipping",
    "address",
    "warranty",
    "return",
    "price",
    "quote",
    "meeting",
    "demo",
    "trial",
    "renewal",
    "feedback",
    "survey",
]
_TYPES = ["interaction", "preference", "complaint", "purchase", "note"]
_EPOCH = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)


def _memories() -> list[dict[str, Any]]:
    rnd = random.Random(7)
    out = []
    for i in range(200):
        words = rnd.sample(_WORDS, 9)
        out.append(
            {
                "id": f"00000000-0000-4000-8000-{i:012d}",
                "content": "Customer said: " + " ".join(words) + ".",
                "memory_type": _TYPES[i % len(_TYPES)],
                "created_at": _EPOCH + datetime.timedelta(hours=i),
                "metadata": {"channel": "whatsapp", "source": "crm"},
                "related": [("product", f"sku-{i % 17}", "mentioned", 0.8)],
                "tokens": frozenset(words),
            }
        )
    return out


MEMORIES = _memories()


def keyword_search(query: str, limit: int) -> tuple[list[tuple[float, dict[str, Any]]], int]:
    """(score, memory) pairs, best first, at most ``limit``; and the number of matches."""
    terms = set(query.lower().split())
    scored = []
    for memory in MEMORIES:
        hits = len(terms & memory["tokens"])
        if hits:
            scored.append((hits / len(terms), memory))
    scored.sort(key=lambda pair: (-pair[0], pair[1]["id"]))
    return scored[: limit or 10], len(scored)


def stream_script(message: str) -> Iterable[tuple[int, str, dict[str, str]]]:
    """(chunk type, content, metadata) of one streamed run: THOUGHT, TOOL_CALL, PARTIALs, FINAL."""
    yield 0, "Looking up the contact's recent memories.", {}
    yield 1, "search_memories(query=...)", {}
    words = (message.split() or ["ok"]) * STREAM_CHUNKS
    for i in range(STREAM_CHUNKS - 3):
        yield 2, words[i] + " ", {}
    yield (
        3,
        "done",
        {"confidence": "0.9", "intent": "support", "latency_ms": "1", "suggested_actions": "open_ticket"},
    )


# -- the betterproto2 servicers (our grpclib server) ---------------------------------------


def betterproto_services() -> list[Any]:
    from ventros.agents import (
        AgentCategory,
        AgentInfo,
        AgentServiceBase,
        AgentStreamChunk,
        ChunkType,
        ListAgentsResponse,
    )
    from ventros.memory import (
        Memory,
        MemoryServiceBase,
        RelatedEntity,
        SearchMemoriesResponse,
        SearchMetadata,
    )

    class Agents(AgentServiceBase):
        async def list_available_agents(self, message):  # type: ignore[no-untyped-def]
            agents = [AgentInfo(**{**a, "category": AgentCategory(a["category"])}) for a in catalogue()]
            return ListAgentsResponse(agents=agents, total_count=len(agents))

        async def stream_agent_execution(self, message) -> AsyncIterator[Any]:  # type: ignore[no-untyped-def,override]
            for kind, content, metadata in stream_script(message.message):
                yield AgentStreamChunk(type=ChunkType(kind), content=content, metadata=metadata)

    class Memories(MemoryServiceBase):
        async def search_memories(self, message):  # type: ignore[no-untyped-def]
            started = time.perf_counter()
            found, total = keyword_search(message.query, message.limit)
            memories = [
                Memory(
                    id=m["id"],
                    content=m["content"],
                    memory_type=m["memory_type"],
                    relevance_score=score,
                    created_at=m["created_at"],
                    metadata=dict(m["metadata"]),
                    related=[
                        RelatedEntity(entity_type=t, entity_id=e, relationship=r, strength=s)
                        for t, e, r, s in m["related"]
                    ],
                )
                for score, m in found
            ]
            return SearchMemoriesResponse(
                memories=memories,
                search_latency_ms=(time.perf_counter() - started) * 1000,
                total_count=total,
                metadata=SearchMetadata(keyword_matches=total, keyword_weight=1.0),
            )

    return [Agents(), Memories()]


# -- the real reference services -----------------------------------------------------------


def real_agent_service() -> Any:
    """The reference AgentService (offline LLM). ListAvailableAgents never calls memory, so the
    memory address only has to be well-formed."""
    from ventros_server.agents import AgentService, make_llm

    return AgentService(memory_address="127.0.0.1:9", llm=make_llm("offline"))


def real_memory_store() -> Any:
    """An in-memory DuckDB store holding the demo data set (module-level: also the opener of
    the store-owner process of "ours x2")."""
    from ventros_server.memory import load_demo, open_store

    store = open_store(":memory:")
    load_demo(store)
    return store


def real_memory_service() -> Any:
    """The reference MemoryService over an in-memory DuckDB store holding the demo data set."""
    from ventros_server.memory import MemoryService

    return MemoryService(real_memory_store())


def real_services() -> list[Any]:
    return [real_agent_service(), real_memory_service()]


def real_agent_services() -> list[Any]:
    """What grpc.aio worker processes serve: they cannot share one DuckDB store."""
    return [real_agent_service()]


def real_forwarding_services(store_address: str, authkey: bytes) -> list[Any]:
    """What our worker processes serve: the agent service, and the memory service forwarding
    its store calls to the one store-owner process (ventros_server.memory.remote), as
    ``ventros serve --workers N`` does. Use through functools.partial (picklable)."""
    from ventros_server.memory import MemoryService
    from ventros_server.memory.remote import RemoteStore

    return [real_agent_service(), MemoryService(RemoteStore(store_address, authkey))]


def store_ipc_cost_us(repeat: int = 400) -> dict[str, float]:
    """Microseconds per store call, in-process against forwarded to a store-owner process over
    its Unix socket (the demo store, the benchmark's KEYWORD_ONLY search; median of ``repeat``):
    by a blocking call, and by RemoteStore.aio on an event loop as MemoryService does."""
    import statistics

    from ventros_server.memory.remote import RemoteStore, start_store_process
    from ventros_server.memory.store import SearchMode, SearchQuery

    query = SearchQuery(REAL_CONTACT_ID, REAL_QUERY, limit=10, mode=SearchMode.KEYWORD)

    def per_call(func: Any, *args: Any) -> float:
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            func(*args)
            times.append(time.perf_counter() - started)
        return statistics.median(times) * 1e6

    async def awaited() -> float:
        """The path MemoryService takes in a worker: RemoteStore.aio, awaited on the loop."""
        await remote.aio.search(query)
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            await remote.aio.search(query)
            times.append(time.perf_counter() - started)
        return statistics.median(times) * 1e6

    local = real_memory_store()
    owner = start_store_process(real_memory_store)
    remote = RemoteStore(owner.address, owner.authkey)
    try:
        costs = {
            "round trip (no store work)": per_call(remote._call, "describe_embedder"),
            "search in-process": per_call(local.search, query),
            "search forwarded, blocking call": per_call(remote.search, query),
            "search forwarded, awaited on the loop": asyncio.run(awaited()),
        }
    finally:
        remote.close()
        owner.stop()
        local.close()
    return costs


def grpcio_real_handlers(pb: dict[str, ModuleType], services: list[Any]) -> list[Any]:
    """grpc.aio generic handlers running our real servicer objects behind upb messages.

    Per call: upb parses the request (grpcio's deserializer), its bytes become the betterproto2
    request (``_fastcodec.decode``, our fastest decoder), our handler runs, and its response
    becomes a upb message (``_fastcodec.encode`` + ``FromString``) that grpcio serializes. The
    two extra conversions are the adapter's price, measured apart by ``adapter_cost_us``.
    """
    import grpc
    from ventros import _fastcodec
    from ventros.agents import ListAgentsRequest
    from ventros.memory import SearchMemoriesRequest

    def adapt(method: Any, bp_request: type, pb_response: Any) -> Any:
        async def call(request: Any, context: Any) -> Any:
            message = _fastcodec.decode(bp_request, request.SerializeToString())
            response = await method(message)
            return pb_response.FromString(_fastcodec.encode(response))

        return call

    def serialize(message: Any) -> bytes:
        return message.SerializeToString()  # type: ignore[no-any-return]

    handlers = []
    pa, pm = pb["agents"], pb["memory"]
    for service in services:
        if hasattr(service, "list_available_agents"):
            call = adapt(service.list_available_agents, ListAgentsRequest, pa.ListAgentsResponse)
            method = grpc.unary_unary_rpc_method_handler(
                call, request_deserializer=pa.ListAgentsRequest.FromString, response_serializer=serialize
            )
            handlers.append(
                grpc.method_handlers_generic_handler(AGENT_SERVICE, {"ListAvailableAgents": method})
            )
        if hasattr(service, "search_memories"):
            call = adapt(service.search_memories, SearchMemoriesRequest, pm.SearchMemoriesResponse)
            method = grpc.unary_unary_rpc_method_handler(
                call, request_deserializer=pm.SearchMemoriesRequest.FromString, response_serializer=serialize
            )
            handlers.append(grpc.method_handlers_generic_handler(MEMORY_SERVICE, {"SearchMemories": method}))
    return handlers


def grpcio_real_betterproto_handlers(services: list[Any]) -> list[Any]:
    """grpc.aio running our real servicers with our codec (``_fastcodec``) and no upb at all:
    the transport alone differs from our server."""
    import grpc
    from ventros import _fastcodec
    from ventros.agents import ListAgentsRequest
    from ventros.memory import SearchMemoriesRequest

    def parser(cls: type) -> Any:
        return lambda data: _fastcodec.decode(cls, data)

    def adapt(method: Any) -> Any:
        async def call(request: Any, context: Any) -> Any:
            return await method(request)

        return call

    handlers = []
    for service in services:
        if hasattr(service, "list_available_agents"):
            method = grpc.unary_unary_rpc_method_handler(
                adapt(service.list_available_agents),
                request_deserializer=parser(ListAgentsRequest),
                response_serializer=_fastcodec.encode,
            )
            handlers.append(
                grpc.method_handlers_generic_handler(AGENT_SERVICE, {"ListAvailableAgents": method})
            )
        if hasattr(service, "search_memories"):
            method = grpc.unary_unary_rpc_method_handler(
                adapt(service.search_memories),
                request_deserializer=parser(SearchMemoriesRequest),
                response_serializer=_fastcodec.encode,
            )
            handlers.append(grpc.method_handlers_generic_handler(MEMORY_SERVICE, {"SearchMemories": method}))
    return handlers


def adapter_cost_us(
    pb: dict[str, ModuleType], bodies: dict[str, bytes], repeat: int = 300
) -> dict[str, float]:
    """Microseconds per call that grpcio_real_handlers adds to a call of each real RPC: request
    upb -> bytes -> betterproto2, response betterproto2 -> bytes -> upb (bodies: gRPC frames)."""
    import asyncio
    import timeit

    from ventros import _fastcodec
    from ventros.agents import ListAgentsRequest
    from ventros.memory import SearchMemoriesRequest

    agents, memory = real_services()
    rpcs = {
        "ListAvailableAgents": (agents.list_available_agents, ListAgentsRequest, pb["agents"].ListAgentsRequest, pb["agents"].ListAgentsResponse),
        "SearchMemories": (memory.search_memories, SearchMemoriesRequest, pb["memory"].SearchMemoriesRequest, pb["memory"].SearchMemoriesResponse),
    }  # fmt: skip
    costs = {}
    for name, (method, bp_request, pb_request, pb_response) in rpcs.items():
        upb = pb_request.FromString(bodies[name][5:])
        response = asyncio.run(method(_fastcodec.decode(bp_request, upb.SerializeToString())))

        def convert(
            upb: Any = upb, response: Any = response, bp: type = bp_request, out: Any = pb_response
        ) -> None:
            _fastcodec.decode(bp, upb.SerializeToString())
            out.FromString(_fastcodec.encode(response))

        costs[name] = min(timeit.repeat(convert, number=repeat, repeat=3)) / repeat * 1e6
    memory.store.close()
    return costs


# -- the grpcio peer -----------------------------------------------------------------------


def grpcio_modules(out: Path) -> dict[str, ModuleType]:
    """protobuf-runtime modules of the contract, compiled by grpcio-tools into ``out``."""
    from tests.foundation.grpcio_peer import generate  # the one place that compiles them

    return generate(out)


def grpcio_handlers(pb: dict[str, ModuleType], codec: str = "upb") -> list[Any]:
    """Generic handlers for grpc.aio. codec "upb": protobuf-runtime messages (grpcio's own
    stack); "betterproto2": the very servicer objects our server runs, (de)serialised by
    betterproto2, which isolates the transport."""
    import grpc

    if codec == "betterproto2":
        agents, memories = betterproto_services()
        from ventros.agents import ListAgentsRequest, StreamAgentRequest
        from ventros.memory import SearchMemoriesRequest

        async def list_agents(request, context):  # type: ignore[no-untyped-def]
            return await agents.list_available_agents(request)

        async def search(request, context):  # type: ignore[no-untyped-def]
            return await memories.search_memories(request)

        async def stream(request, context):  # type: ignore[no-untyped-def]
            async for chunk in agents.stream_agent_execution(request):
                yield chunk

        list_req, search_req, stream_req = ListAgentsRequest, SearchMemoriesRequest, StreamAgentRequest
        parse = {c: c.parse for c in (list_req, search_req, stream_req)}
        serialize = bytes
    else:
        pa, pm = pb["agents"], pb["memory"]

        async def list_agents(request, context):  # type: ignore[no-untyped-def]
            agents = [pa.AgentInfo(**a) for a in catalogue()]
            return pa.ListAgentsResponse(agents=agents, total_count=len(agents))

        async def search(request, context):  # type: ignore[no-untyped-def]
            started = time.perf_counter()
            found, total = keyword_search(request.query, request.limit)
            response = pm.SearchMemoriesResponse(total_count=total)
            for score, m in found:
                memory = response.memories.add(
                    id=m["id"],
                    content=m["content"],
                    memory_type=m["memory_type"],
                    relevance_score=score,
                    metadata=m["metadata"],
                )
                memory.created_at.FromDatetime(m["created_at"])
                for t, e, r, s in m["related"]:
                    memory.related.add(entity_type=t, entity_id=e, relationship=r, strength=s)
            response.metadata.keyword_matches = total
            response.metadata.keyword_weight = 1.0
            response.search_latency_ms = (time.perf_counter() - started) * 1000
            return response

        async def stream(request, context):  # type: ignore[no-untyped-def]
            for kind, content, metadata in stream_script(request.message):
                yield pa.AgentStreamChunk(type=kind, content=content, metadata=metadata)

        list_req, search_req, stream_req = (
            pa.ListAgentsRequest,
            pm.SearchMemoriesRequest,
            pa.StreamAgentRequest,
        )
        parse = {c: c.FromString for c in (list_req, search_req, stream_req)}

        def serialize(message: Any) -> bytes:
            return message.SerializeToString()  # type: ignore[no-any-return]

    agent_handler = grpc.method_handlers_generic_handler(
        AGENT_SERVICE,
        {
            "ListAvailableAgents": grpc.unary_unary_rpc_method_handler(
                list_agents, request_deserializer=parse[list_req], response_serializer=serialize
            ),
            "StreamAgentExecution": grpc.unary_stream_rpc_method_handler(
                stream, request_deserializer=parse[stream_req], response_serializer=serialize
            ),
        },
    )
    memory_handler = grpc.method_handlers_generic_handler(
        MEMORY_SERVICE,
        {
            "SearchMemories": grpc.unary_unary_rpc_method_handler(
                search, request_deserializer=parse[search_req], response_serializer=serialize
            )
        },
    )
    return [agent_handler, memory_handler]
