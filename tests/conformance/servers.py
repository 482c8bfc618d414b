"""Small in-test servers for the conformance suite's own tests.

``MiniMemory`` and ``MiniAgents`` implement the contract in the simplest way that is still right
(in-memory, a toy bag-of-words "embedding"), so the suite can be shown to pass against them;
the ``Broken*`` subclasses each carry one deliberate defect that a named check must report.
``serving(services)`` runs them with the project's build_server on 127.0.0.1 in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import hashlib
import json
import math
import re
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from grpclib.const import Status
from grpclib.exceptions import GRPCError
from ventros import InvalidArgumentError, NotFoundError
from ventros import agents as pba
from ventros import memory as pbm
from ventros_conformance import contract as c
from ventros_conformance import fixtures as fx
from ventros_server.testing import running

# -- validation (independent wording, the contract's rules) --------------------------------------


def _invalid(verdict: c.Verdict) -> None:
    fields = verdict.definite or verdict.maybe
    if fields:
        name = fields[0]
        code = "MISSING_FIELD" if name.endswith("_id") else "INVALID_FIELD"
        raise InvalidArgumentError.of(code, f"{name} is missing, malformed or out of range",
                                      suggestions=[f"Fix {name}; see docs/contract.md."], field=name)  # fmt: skip


def _tokens(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _embed(text: str, dims: int = 32) -> list[float]:
    vec = [0.0] * dims
    for tok in _tokens(text):
        h = int(hashlib.md5(tok.encode()).hexdigest(), 16)
        vec[h % dims] += 1.0 if (h >> 8) & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


def _cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


@dataclass
class _Memory:
    id: str
    contact_id: str
    content: str
    memory_type: str
    metadata: dict[str, str]
    created_at: datetime
    embedding: list[float] | None
    related: list[pbm.RelatedEntity] = field(default_factory=list)


@dataclass
class _Edge:
    from_id: str
    to_id: str
    relationship: str
    weight: float
    created_at: datetime


class MiniMemory(pbm.MemoryServiceBase):
    """A correct, tiny MemoryService (everything in dictionaries)."""

    def __init__(self, fixtures: bool = False) -> None:
        self.memories: list[_Memory] = []
        self.profiles: dict[str, dict[str, Any]] = {}
        self.messages: dict[str, list[dict[str, Any]]] = {}
        self.purchases: dict[str, list[dict[str, Any]]] = {}
        self.nodes: dict[str, tuple[str, dict[str, str]]] = {}
        self.edges: list[_Edge] = []
        self._clock = 0
        if fixtures:
            self.load(fx.load())

    # -- data ----------------------------------------------------------------------------------

    def _now(self) -> datetime:
        self._clock += 1  # strictly increasing, so "newest first" is never a tie
        return datetime.fromtimestamp(1_700_000_000 + self._clock / 1000, UTC)

    def load(self, data: fx.FixtureSet) -> None:
        for r in data.records:
            kind = r["kind"]
            if kind == "contact":
                self.profiles[r["id"]] = r
                self.nodes[r["id"]] = ("contact", {"name": r["name"]})
            elif kind == "message":
                self.messages.setdefault(r["contact_id"], []).append(r)
            elif kind == "purchase":
                self.purchases.setdefault(r["contact_id"], []).append(r)
            elif kind == "entity":
                self.nodes[r["id"]] = (r["type"], dict(r["properties"]))
            elif kind == "edge":
                self.edges.append(_Edge(r["from_id"], r["to_id"], r["relationship"], r["weight"],
                                        fx.parse_time(r["created_at"])))  # fmt: skip
            elif kind == "memory":
                related = [pbm.RelatedEntity(**x) for x in r["related"]]
                self._add(r["contact_id"], r["content"], r["memory_type"], r["metadata"], True, related,
                          memory_id=r.get("id"), created_at=fx.parse_time(r["created_at"]))  # fmt: skip

    def _add(self, contact: str, content: str, memory_type: str, metadata: dict[str, str], embed: bool,
             related: list[pbm.RelatedEntity], memory_id: str | None = None,
             created_at: datetime | None = None) -> _Memory:  # fmt: skip
        now = created_at or self._now()
        rel = [pbm.RelatedEntity(entity_type=r.entity_type, entity_id=r.entity_id,
                                 relationship=r.relationship or "mentioned", strength=r.strength or 1.0)
               for r in related]  # fmt: skip
        m = _Memory(memory_id or str(uuid.uuid4()), contact.lower(), content, memory_type, dict(metadata), now,
                    _embed(content) if embed else None, rel)  # fmt: skip
        self.memories.append(m)
        self.nodes.setdefault(m.id, ("memory", {}))
        self.nodes.setdefault(m.contact_id, ("contact", {}))
        self.edges.append(_Edge(m.contact_id, m.id, "remembers", 1.0, now))
        for r in rel:
            self.nodes.setdefault(r.entity_id, (r.entity_type, {}))
            self.edges.append(_Edge(m.id, r.entity_id, r.relationship, r.strength, now))
        return m

    def _proto(self, m: _Memory, fields: set[str], score: float = 0.0) -> pbm.Memory:
        return pbm.Memory(
            id=m.id, memory_type=m.memory_type, relevance_score=score, created_at=m.created_at,
            content=m.content if "content" in fields else "",
            embedding=list(m.embedding or []) if "embedding" in fields else [],
            metadata=dict(m.metadata) if "metadata" in fields else {},
            related=list(m.related) if "related" in fields else [],
        )  # fmt: skip

    # -- search --------------------------------------------------------------------------------

    def _score(self, m: _Memory, mode: int, query: str) -> float | None:
        words = set(_tokens(query))
        keyword = len(words & set(_tokens(m.content))) / len(words) if words else 0.0
        vector = (_cos(m.embedding, _embed(query)) + 1) / 2 if m.embedding is not None else None
        graph = max((r.strength for r in m.related), default=0.0)
        if mode == pbm.SearchMode.KEYWORD_ONLY:
            return keyword if keyword > 0 else None
        if mode == pbm.SearchMode.VECTOR_ONLY:
            return vector
        if mode == pbm.SearchMode.GRAPH_ONLY:
            return graph if m.related else None
        if keyword == 0 and vector is None:
            return None
        return 0.5 * keyword + 0.5 * (vector or 0.0)

    def _rank(self, hits: list[tuple[float, _Memory]]) -> list[tuple[float, _Memory]]:
        return sorted(hits, key=lambda h: (-h[0], h[1].id))

    async def search_memories(self, message: pbm.SearchMemoriesRequest) -> pbm.SearchMemoriesResponse:
        _invalid(c.validate_search(message))
        contact = message.contact_id.lower()
        hits = []
        for m in self.memories:
            if m.contact_id != contact or (
                message.memory_types and m.memory_type not in message.memory_types
            ):
                continue
            score = self._score(m, int(message.mode), message.query)
            if score is not None:
                hits.append((min(max(score, 0.0), 1.0), m))
        ranked = self._rank(hits)
        limit = message.limit or c.SEARCH_DEFAULT_LIMIT
        fields = set(message.include_fields) or {"content", "metadata", "related"}
        weights = {pbm.SearchMode.VECTOR_ONLY: (1.0, 0.0, 0.0), pbm.SearchMode.KEYWORD_ONLY: (0.0, 1.0, 0.0),
                   pbm.SearchMode.GRAPH_ONLY: (0.0, 0.0, 1.0)}.get(message.mode, (0.5, 0.5, 0.0))  # fmt: skip
        return pbm.SearchMemoriesResponse(
            memories=[self._proto(m, fields, s) for s, m in ranked[:limit]],
            total_count=len(ranked),
            metadata=pbm.SearchMetadata(
                vector_weight=weights[0], keyword_weight=weights[1], graph_weight=weights[2]
            ),
        )

    # -- context -------------------------------------------------------------------------------

    async def get_contact_context(
        self, message: pbm.GetContactContextRequest
    ) -> pbm.GetContactContextResponse:
        _invalid(c.validate_context(message))
        contact = message.contact_id.lower()
        memories = sorted((m for m in self.memories if m.contact_id == contact), key=lambda m: m.created_at,
                          reverse=True)  # fmt: skip
        messages = sorted(self.messages.get(contact, []), key=lambda r: r["sent_at"], reverse=True)
        profile = self.profiles.get(contact)
        if not (memories or messages or profile):
            raise NotFoundError.of(
                "CONTACT_NOT_FOUND", "no such contact", suggestions=["Store a memory first."]
            )
        types = set(message.entity_types)
        if types:
            memories = [m for m in memories if m.memory_type in types]
            if "message" not in types:
                messages = []
        limit = message.history_limit or c.HISTORY_DEFAULT
        purchases = self.purchases.get(contact, [])
        stamps = [m.created_at for m in memories] + [fx.parse_time(r["sent_at"]) for r in messages]
        graph = pbm.KnowledgeGraph()
        if message.include_graph:
            graph = self._neighbourhood(contact)
        return pbm.GetContactContextResponse(
            profile=pbm.ContactProfile(
                contact_id=contact, name=profile["name"], phone=profile["phone"], email=profile["email"],
                tier=profile["tier"], tags=list(profile["tags"]), custom_fields=dict(profile["custom_fields"]),
            ) if profile else pbm.ContactProfile(contact_id=contact),
            recent_memories=[self._proto(m, {"content", "metadata", "related"}) for m in memories[:limit]],
            recent_messages=[
                pbm.Message(id=r["id"], content=r["content"], is_inbound=r["is_inbound"], channel=r["channel"],
                            sent_at=fx.parse_time(r["sent_at"]))
                for r in messages[:limit]
            ],
            graph=graph,
            stats=pbm.ContactStats(
                total_messages=len(self.messages.get(contact, [])), total_purchases=len(purchases),
                lifetime_value=sum(p["amount"] for p in purchases), churn_risk=0.25,
                first_contact=min(stamps) if stamps else None, last_activity=max(stamps) if stamps else None,
            ),
        )  # fmt: skip

    def _neighbourhood(self, start: str) -> pbm.KnowledgeGraph:
        seen, frontier, edges = {start}, {start}, []
        for _ in range(2):
            nxt = set()
            for e in self.edges:
                if e.from_id in frontier or e.to_id in frontier:
                    edges.append(e)
                    nxt |= {e.from_id, e.to_id} - seen
            seen |= nxt
            frontier = nxt
        unique = {(e.from_id, e.to_id, e.relationship): e for e in edges}
        return pbm.KnowledgeGraph(
            nodes=[pbm.Node(id=i, type=self.nodes.get(i, ("unknown", {}))[0]) for i in sorted(seen)],
            edges=[pbm.Edge(from_id=e.from_id, to_id=e.to_id, relationship=e.relationship, weight=e.weight,
                            created_at=e.created_at) for e in unique.values()],
        )  # fmt: skip

    # -- store ---------------------------------------------------------------------------------

    async def store_memory(self, message: pbm.StoreMemoryRequest) -> pbm.StoreMemoryResponse:
        _invalid(c.validate_store(message))
        embed = True if message.auto_embed is None else message.auto_embed
        m = self._add(message.contact_id, message.content, message.memory_type, dict(message.metadata), embed,
                      list(message.related))  # fmt: skip
        return pbm.StoreMemoryResponse(memory_id=m.id, success=True)

    # -- graph ---------------------------------------------------------------------------------

    async def get_related_entities(
        self, message: pbm.GetRelatedEntitiesRequest
    ) -> pbm.GetRelatedEntitiesResponse:
        _invalid(c.validate_related(message))
        start = message.entity_id
        node = self.nodes.get(start)
        if node is None or (message.entity_type and node[0] != message.entity_type):
            raise NotFoundError.of(
                "ENTITY_NOT_FOUND", "no such entity", suggestions=["Check the id and type."]
            )
        depth = message.max_depth or c.DEPTH_DEFAULT
        best: dict[str, tuple[float, list[_Edge]]] = {}
        frontier: list[tuple[str, float, list[_Edge]]] = [(start, 1.0, [])]
        for level in range(1, depth + 1):
            nxt = []
            for at, score, path in frontier:
                for e in self.edges:
                    if at not in (e.from_id, e.to_id):
                        continue
                    other = e.to_id if e.from_id == at else e.from_id
                    if other == start or (other in best and len(best[other][1]) < level):
                        continue
                    s = score * e.weight * 0.8
                    if other not in best or s > best[other][0]:
                        best[other] = (s, [*path, e])
                        nxt.append((other, s, [*path, e]))
            frontier = nxt
        results = [
            pbm.RelatedEntityResult(
                entity=pbm.Node(id=i, type=self.nodes.get(i, ("unknown", {}))[0],
                                properties=dict(self.nodes.get(i, ("", {}))[1])),
                path=[pbm.Edge(from_id=e.from_id, to_id=e.to_id, relationship=e.relationship, weight=e.weight,
                               created_at=e.created_at) for e in path],
                relevance=min(1.0, s),
            )
            for i, (s, path) in best.items()
            if not message.target_types or self.nodes.get(i, ("",))[0] in message.target_types
        ]  # fmt: skip
        results.sort(key=lambda r: (-r.relevance, r.entity.id if r.entity else ""))
        return pbm.GetRelatedEntitiesResponse(entities=results[: message.limit or c.RELATED_DEFAULT_LIMIT])


# -- agents ----------------------------------------------------------------------------------------

AGENTS = {
    "CustomerServiceAgent": pba.AgentCategory.SUPPORT,
    "LeadQualifierAgent": pba.AgentCategory.SALES,
}


def _agent_not_found(agent_type: str) -> NotFoundError:
    close = difflib.get_close_matches(agent_type, list(AGENTS), n=2, cutoff=0.0)
    error = NotFoundError.of("AGENT_NOT_FOUND", f"no agent type {agent_type!r}",
                             suggestions=[f"Try {name} instead" for name in close])  # fmt: skip
    assert isinstance(error, NotFoundError)
    return error


class MiniAgents(pba.AgentServiceBase):
    """A correct, tiny AgentService: two canned agents that take ~30 ms."""

    run_seconds = 0.03

    def _check(self, message: Any) -> float:
        _invalid(c.validate_execute(message))
        if message.agent_type not in AGENTS:
            raise _agent_not_found(message.agent_type)
        options = message.options
        return (options.timeout_ms if options and options.timeout_ms else c.TIMEOUT_DEFAULT_MS) / 1000

    def _deadline(self, agent_type: str) -> GRPCError:
        from ventros import DeadlineExceededError

        return DeadlineExceededError.of(
            "DEADLINE_EXCEEDED", f"{agent_type} ran past options.timeout_ms"
        ).to_grpc()

    async def list_available_agents(self, message: pba.ListAgentsRequest) -> pba.ListAgentsResponse:
        agents = [pba.AgentInfo(type=t, name=t, category=cat, required_inputs=["contact_id", "message", "channel_id"])
                  for t, cat in AGENTS.items()]  # fmt: skip
        return pba.ListAgentsResponse(agents=agents, total_count=len(agents))

    async def get_agent_capabilities(
        self, message: pba.GetAgentCapabilitiesRequest
    ) -> pba.GetAgentCapabilitiesResponse:
        _invalid(c.validate_capabilities(message))
        if message.agent_type not in AGENTS:
            raise _agent_not_found(message.agent_type)
        fields = [pba.Field(name="contact_id", type="string", required=True),
                  pba.Field(name="context", type="object")]  # fmt: skip
        return pba.GetAgentCapabilitiesResponse(
            agent=pba.AgentInfo(
                type=message.agent_type, name=message.agent_type, category=AGENTS[message.agent_type]
            ),
            schema=pba.AgentSchema(
                input_fields=fields, output_fields=[pba.Field(name="response", type="string")]
            ),
        )

    def _response(self, message: Any) -> pba.ExecuteAgentResponse:
        return pba.ExecuteAgentResponse(response=f"Echo: {message.message[:40]}", intent="question", confidence=0.8,
                                        suggested_actions=["open_ticket"], latency_ms=30,
                                        metadata={"llm_backend": "canned", "memory": "unavailable"})  # fmt: skip

    async def execute_agent(self, message: pba.ExecuteAgentRequest) -> pba.ExecuteAgentResponse:
        bound = self._check(message)
        try:
            async with asyncio.timeout(bound):
                await asyncio.sleep(self.run_seconds)
        except TimeoutError:
            raise self._deadline(message.agent_type) from None
        return self._response(message)

    async def stream_agent_execution(
        self, message: pba.StreamAgentRequest
    ) -> AsyncIterator[pba.AgentStreamChunk]:
        bound = self._check(message)
        yield pba.AgentStreamChunk(type=pba.ChunkType.THOUGHT, content="thinking")
        try:
            async with asyncio.timeout(bound):
                await asyncio.sleep(self.run_seconds)
        except TimeoutError:
            yield pba.AgentStreamChunk(
                type=pba.ChunkType.ERROR,
                content="too slow",
                metadata={"status": "DEADLINE_EXCEEDED", "error_code": "DEADLINE_EXCEEDED"},
            )
            raise self._deadline(message.agent_type) from None  # fmt: skip
        r = self._response(message)
        yield pba.AgentStreamChunk(type=pba.ChunkType.PARTIAL, content=r.response)
        yield pba.AgentStreamChunk(type=pba.ChunkType.FINAL, content=r.response, metadata={
            "confidence": "0.8", "intent": r.intent, "latency_ms": "30", "suggested_actions": "open_ticket"})  # fmt: skip

    async def execute_agent_batch(
        self, message: pba.ExecuteAgentBatchRequest
    ) -> pba.ExecuteAgentBatchResponse:
        _invalid(c.validate_batch(message))
        out = []
        for item in message.requests:
            try:
                r = await self.execute_agent(item)
                r.metadata["status"] = "OK"
            except (InvalidArgumentError, NotFoundError) as exc:
                r = pba.ExecuteAgentResponse(metadata={"status": exc.status.name, "error_code": exc.code,
                                                       "error_message": exc.message})  # fmt: skip
            except GRPCError as exc:
                r = pba.ExecuteAgentResponse(metadata={"status": exc.status.name, "error_code": "DEADLINE_EXCEEDED",
                                                       "error_message": exc.message or ""})  # fmt: skip
            out.append(r)
        return pba.ExecuteAgentBatchResponse(responses=out)


# -- deliberately broken -----------------------------------------------------------------------------


class WrongStatusMemory(MiniMemory):
    """Defect: a malformed contact_id is NOT_FOUND (should be INVALID_ARGUMENT)."""

    async def get_contact_context(
        self, message: pbm.GetContactContextRequest
    ) -> pbm.GetContactContextResponse:
        if message.contact_id and not c.is_uuid(message.contact_id):
            raise NotFoundError.of("CONTACT_NOT_FOUND", "no such contact", suggestions=["Check the id."])
        return await super().get_contact_context(message)


class NoDetailsMemory(MiniMemory):
    """Defect: validation errors carry no ErrorDetails (a bare status and message)."""

    async def store_memory(self, message: pbm.StoreMemoryRequest) -> pbm.StoreMemoryResponse:
        try:
            return await super().store_memory(message)
        except InvalidArgumentError as exc:
            raise GRPCError(Status.INVALID_ARGUMENT, exc.message) from None


class UnsortedMemory(MiniMemory):
    """Defect: search results come back in ascending score order."""

    def _rank(self, hits: list[tuple[float, _Memory]]) -> list[tuple[float, _Memory]]:
        return sorted(hits, key=lambda h: (h[0], h[1].id))


class IgnoredLimitMemory(MiniMemory):
    """Defect: limit is ignored (every match comes back, so the default of 10 is not applied)."""

    async def search_memories(self, message: pbm.SearchMemoriesRequest) -> pbm.SearchMemoriesResponse:
        message.limit = c.SEARCH_MAX_LIMIT if 0 <= message.limit <= c.SEARCH_MAX_LIMIT else message.limit
        return await super().search_memories(message)


class DroppedWriteMemory(MiniMemory):
    """Defect: StoreMemory answers OK but memories with auto_embed unset are never stored."""

    async def store_memory(self, message: pbm.StoreMemoryRequest) -> pbm.StoreMemoryResponse:
        _invalid(c.validate_store(message))
        if message.auto_embed is None:
            return pbm.StoreMemoryResponse(memory_id=str(uuid.uuid4()), success=True)
        return await super().store_memory(message)


class CrashingMemory(MiniMemory):
    """Defect: a unicode query crashes the handler (INTERNAL)."""

    async def search_memories(self, message: pbm.SearchMemoriesRequest) -> pbm.SearchMemoriesResponse:
        message.query.encode("ascii")  # UnicodeEncodeError -> INTERNAL
        return await super().search_memories(message)


class FinalNotLastAgents(MiniAgents):
    """Defect: a PARTIAL chunk follows the FINAL one."""

    async def stream_agent_execution(
        self, message: pba.StreamAgentRequest
    ) -> AsyncIterator[pba.AgentStreamChunk]:
        async for chunk in super().stream_agent_execution(message):
            yield chunk
        yield pba.AgentStreamChunk(type=pba.ChunkType.PARTIAL, content="one more thing")


class NoSuggestionAgents(MiniAgents):
    """Defect: AGENT_NOT_FOUND without suggestions."""

    async def get_agent_capabilities(
        self, message: pba.GetAgentCapabilitiesRequest
    ) -> pba.GetAgentCapabilitiesResponse:
        if message.agent_type and message.agent_type not in AGENTS:
            raise NotFoundError.of("AGENT_NOT_FOUND", "no such agent")
        return await super().get_agent_capabilities(message)


# -- serving -----------------------------------------------------------------------------------------


@contextlib.contextmanager
def serving(services: list[Any], **options: Any) -> Iterator[str]:
    """Serve ``services`` (build_server) on 127.0.0.1:<random> in a background thread."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    result: dict[str, Any] = {}
    stop = asyncio.Event()

    async def main() -> None:
        try:
            async with running(services, **options) as address:
                result["address"] = address
                started.set()
                await stop.wait()
        except BaseException as exc:  # pragma: no cover - surfaced below
            result["error"] = exc
            started.set()
            raise

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    if not started.wait(15) or "error" in result:
        raise RuntimeError(f"the test server did not start: {result.get('error')}")
    try:
        yield result["address"]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)


def fixture_lines() -> list[str]:
    return [json.dumps(r) for r in fx.load().records]
