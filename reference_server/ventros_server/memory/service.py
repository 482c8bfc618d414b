"""MemoryService over gRPC: validate, apply the contract's defaults, call the store, map back.

The store is blocking (DuckDB, numpy). A call that may take long runs in a worker thread so the
event loop keeps serving other calls (health checks, other RPCs) meanwhile; a call that is
known to be short runs on the loop itself (``_Placement``). A store whose work happens elsewhere
offers its calls as coroutines in ``store.aio`` (memory.remote.RemoteStore: the store-owner
process of ``--workers N``); those are awaited on the loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ventros import NotFoundError, UnavailableError
from ventros import memory as pb
from ventros._generated.ventros.memory import MemoryServiceBase

from . import validation as v
from .embedders.openai import EmbeddingAPIError
from .store import (
    ContactContext,
    EdgeRecord,
    Entity,
    MemoryRecord,
    MemoryStore,
    NewMemory,
    RelatedRef,
    SearchMode,
    SearchQuery,
)

T = TypeVar("T")

_MODES = {
    pb.SearchMode.HYBRID: SearchMode.HYBRID,
    pb.SearchMode.VECTOR_ONLY: SearchMode.VECTOR,
    pb.SearchMode.KEYWORD_ONLY: SearchMode.KEYWORD,
    pb.SearchMode.GRAPH_ONLY: SearchMode.GRAPH,
}


def _elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


#: A store call of a kind that recently took less than this runs on the event loop (see _Placement).
INLINE_BELOW_SECONDS = 0.001
#: How long a short call waits for the store calls running in threads before it joins them.
THREADS_WAIT_SECONDS = 0.002
#: Weight of the newest duration in a kind's running average.
_NEWEST = 0.3


class _Placement:
    """Where a store call runs: on the event loop, or in a worker thread.

    A thread keeps the loop serving while the call runs, but the hand-off costs much more than
    its two wake-ups: SearchMemories KEYWORD_ONLY (~0.3-0.4 ms of store work) in one process
    took ~1.9 ms of server CPU per call through a thread and ~1.4 ms run on the loop, 486 ->
    682 calls/s one at a time, 595 -> 665 with 16 in flight (docs/benchmarks.md). And a store
    call holds the GIL for most of its time, so below the interpreter's 5 ms switch interval a
    thread barely lets the loop run anyway. So a call runs on the loop when its kind's recent
    cost (a running average) is under INLINE_BELOW_SECONDS, unless:

    * ``offload``: it may wait on an embedder (a network API must never block the loop) or
      write (DuckDB commits and checkpoints);
    * store calls are running in threads: one may hold the store's lock, which the loop would
      then wait for. The short call first waits for those, asynchronously: for the short ones
      until they end, for the others (writes, embeddings) up to THREADS_WAIT_SECONDS; it runs
      on the loop if none is left, else it joins them in a thread. Joining at once, as it did
      before, kept a busy server in threads: with 16-64 calls in flight some call was always in
      a thread, so every new one went to a thread too (a server started under that load:
      778-956 against 1,387-1,607 calls/s, `python -m benchmarks.cold_start`,
      docs/benchmarks.md).

    A call on the loop is timed by the wall clock (what it blocks the loop for); one in a thread
    by its thread's CPU time, since its wall time also counts waits for the GIL while the loop
    runs, which would keep a short kind looking long. The first call of a kind runs in a thread
    (its cost is unknown yet).
    """

    def __init__(self) -> None:
        self._typical: dict[Any, float] = {}
        #: The calls running in threads, and whether each is of a short kind.
        self._in_threads: dict[asyncio.Future[Any], bool] = {}

    def short(self, kind: Any, offload: bool) -> bool:
        return not offload and self._typical.get(kind, math.inf) < INLINE_BELOW_SECONDS

    async def run(self, kind: Any, offload: bool, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        short = self.short(kind, offload)
        if short:
            await self._wait_for_threads()
            if not self._in_threads:
                return self._timed(kind, time.perf_counter, func, args, kwargs)
        call = contextvars.copy_context().run  # as asyncio.to_thread: the caller's context
        future = asyncio.get_running_loop().run_in_executor(
            None, call, self._timed, kind, time.thread_time, func, args, kwargs
        )
        # Counted until the thread is done, even if the caller is cancelled meanwhile.
        self._in_threads[future] = short
        future.add_done_callback(self._thread_done)
        return await asyncio.shield(future)

    def _thread_done(self, future: asyncio.Future[Any]) -> None:
        del self._in_threads[future]
        if not future.cancelled():
            future.exception()  # retrieved: a cancelled caller's error is not logged as lost

    async def _wait_for_threads(self) -> None:
        shorts = [future for future, short in self._in_threads.items() if short]
        if shorts:
            await asyncio.wait(shorts)
        if self._in_threads:
            await asyncio.wait(list(self._in_threads), timeout=THREADS_WAIT_SECONDS)

    def _timed(
        self, kind: Any, clock: Callable[[], float], func: Callable[..., T], args: Any, kwargs: Any
    ) -> T:
        started = clock()
        try:
            return func(*args, **kwargs)
        finally:
            elapsed = clock() - started
            previous = self._typical.get(kind)
            self._typical[kind] = elapsed if previous is None else previous + _NEWEST * (elapsed - previous)


class MemoryService(MemoryServiceBase):
    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self._aio: Any = getattr(store, "aio", None)
        self._placement = _Placement()

    async def _store_call(
        self, name: str, *args: Any, kind: Any = None, offload: bool = False, **kwargs: Any
    ) -> Any:
        """Run the store method ``name``. A store with an ``aio`` form (its calls are I/O to
        another process) is awaited on the loop: with the store-owner process, one call at a
        time, that took SearchMemories from 402 to 465 calls/s against a thread per call
        (docs/benchmarks.md). Otherwise _Placement picks the loop or a thread; ``kind`` (default
        ``name``) groups calls of similar cost, ``offload`` forces a thread."""
        if self._aio is not None:
            return await getattr(self._aio, name)(*args, **kwargs)
        return await self._placement.run(kind or name, offload, getattr(self.store, name), *args, **kwargs)

    # -- SearchMemories -------------------------------------------------------------------------

    async def search_memories(self, message: pb.SearchMemoriesRequest) -> pb.SearchMemoriesResponse:
        started = time.perf_counter()
        query = self._search_query(message)
        include = v.include_fields(list(message.include_fields))
        embeds = query.mode not in (SearchMode.KEYWORD, SearchMode.GRAPH)
        result = await _embedding_call(self._store_call("search", query, kind=query.mode, offload=embeds))
        memories = [_memory(s.memory, s.score, include) for s in result.memories]
        return pb.SearchMemoriesResponse(
            memories=memories,
            total_count=result.total_count,
            metadata=pb.SearchMetadata(
                vector_matches=result.vector_matches,
                keyword_matches=result.keyword_matches,
                graph_matches=result.graph_matches,
                vector_weight=result.weights.vector,
                keyword_weight=result.weights.keyword,
                graph_weight=result.weights.graph,
            ),
            search_latency_ms=_elapsed_ms(started),
        )

    def _search_query(self, message: pb.SearchMemoriesRequest) -> SearchQuery:
        contact_id = v.uuid_field("contact_id", message.contact_id)
        mode = _MODES.get(message.mode)  # type: ignore[call-overload]
        if mode is None:
            raise v.invalid(
                "mode",
                f"unknown SearchMode {int(message.mode)}",
                "Use HYBRID, VECTOR_ONLY, KEYWORD_ONLY or GRAPH_ONLY.",
            )
        v.text_field("query", message.query, max_bytes=4096, required=mode is not SearchMode.GRAPH)
        limit = v.bounded_int("limit", message.limit, default=10, maximum=100)
        v.list_size("memory_types", message.memory_types, 32)
        include = v.include_fields(list(message.include_fields))
        return SearchQuery(
            contact_id=contact_id,
            query=message.query,
            limit=limit,
            memory_types=frozenset(message.memory_types),
            mode=mode,
            with_embedding="embedding" in include,
        )

    # -- GetContactContext ----------------------------------------------------------------------

    async def get_contact_context(self, message: pb.GetContactContextRequest) -> pb.GetContactContextResponse:
        started = time.perf_counter()
        contact_id = v.uuid_field("contact_id", message.contact_id)
        history_limit = v.bounded_int("history_limit", message.history_limit, default=50, maximum=500)
        context = await self._store_call(
            "contact_context",
            contact_id,
            history_limit=history_limit,
            entity_types=frozenset(message.entity_types),
            include_graph=message.include_graph,
        )
        if context is None:
            raise NotFoundError.of(
                "CONTACT_NOT_FOUND",
                f"no profile, memory or message for contact {contact_id}",
                suggestions=["Check the contact id, or store a memory for this contact first."],
                contact_id=contact_id,
            )
        return _context(context, _elapsed_ms(started))

    # -- StoreMemory ----------------------------------------------------------------------------

    async def store_memory(self, message: pb.StoreMemoryRequest) -> pb.StoreMemoryResponse:
        started = time.perf_counter()
        memory = self._new_memory(message)
        stored = await _embedding_call(self._store_call("store_memory", memory, offload=True))
        return pb.StoreMemoryResponse(memory_id=stored.id, success=True, latency_ms=_elapsed_ms(started))

    def _new_memory(self, message: pb.StoreMemoryRequest) -> NewMemory:
        contact_id = v.uuid_field("contact_id", message.contact_id)
        content = v.text_field("content", message.content, max_bytes=16384, required=True)
        memory_type = v.snake_name("memory_type", message.memory_type, example="agent_insight")
        metadata = v.metadata_map("metadata", dict(message.metadata))
        v.list_size("related", message.related, 32)
        related = [_related_ref(i, r) for i, r in enumerate(message.related)]
        return NewMemory(
            contact_id=contact_id,
            content=content,
            memory_type=memory_type,
            metadata=metadata,
            # optional bool: None (unset) means true, the spec's default.
            embed=message.auto_embed is not False,
            related=related,
        )

    # -- GetRelatedEntities ---------------------------------------------------------------------

    async def get_related_entities(
        self, message: pb.GetRelatedEntitiesRequest
    ) -> pb.GetRelatedEntitiesResponse:
        started = time.perf_counter()
        entity_id = v.entity_id("entity_id", message.entity_id)
        if message.entity_type:
            v.snake_name("entity_type", message.entity_type, example="product")
        max_depth = v.bounded_int("max_depth", message.max_depth, default=2, maximum=5)
        limit = v.bounded_int("limit", message.limit, default=20, maximum=100)
        results = await self._store_call(
            "related_entities",
            entity_id,
            entity_type=message.entity_type or None,
            target_types=frozenset(message.target_types),
            max_depth=max_depth,
            limit=limit,
        )
        if results is None:
            of_type = f" of type {message.entity_type!r}" if message.entity_type else ""
            raise NotFoundError.of(
                "ENTITY_NOT_FOUND",
                f"no entity {entity_id!r}{of_type} in the knowledge graph",
                suggestions=[
                    "Check the id (and entity_type); entities appear when imported or linked by StoreMemory."
                ],
                entity_id=entity_id,
            )
        return pb.GetRelatedEntitiesResponse(
            entities=[
                pb.RelatedEntityResult(
                    entity=_node(r.entity), path=[_edge(e) for e in r.path], relevance=_unit(r.relevance)
                )
                for r in results
            ],
            latency_ms=_elapsed_ms(started),
        )


async def _embedding_call(call: Awaitable[T]) -> T:
    """Await a store call that embeds text; an unreachable embeddings API is UNAVAILABLE (retryable)."""
    try:
        return await call
    except EmbeddingAPIError as exc:
        raise UnavailableError.of(
            "EMBEDDER_UNAVAILABLE",
            f"the embeddings endpoint failed: {exc}",
            suggestions=["Retry later; KEYWORD_ONLY and GRAPH_ONLY searches do not need it."],
        ) from exc


# -- mapping store dataclasses to messages -------------------------------------------------------


def _unit(value: float) -> float:
    return 0.0 if math.isnan(value) else min(max(float(value), 0.0), 1.0)


def _related_ref(index: int, related: pb.RelatedEntity) -> RelatedRef:
    field = f"related[{index}]"
    return RelatedRef(
        entity_type=v.snake_name(f"{field}.entity_type", related.entity_type, example="product"),
        entity_id=v.entity_id(f"{field}.entity_id", related.entity_id),
        relationship=v.snake_name(f"{field}.relationship", related.relationship, example="mentioned")
        if related.relationship
        else "mentioned",
        strength=v.strength(f"{field}.strength", related.strength),
    )


def _memory(record: MemoryRecord, score: float, include: frozenset[str]) -> pb.Memory:
    fields: dict[str, Any] = {
        "id": record.id,
        "memory_type": record.memory_type,
        "relevance_score": _unit(score),
        "created_at": record.created_at,
    }
    if "content" in include:
        fields["content"] = record.content
    if "metadata" in include:
        fields["metadata"] = dict(record.metadata)
    if "related" in include:
        fields["related"] = [
            pb.RelatedEntity(
                entity_type=r.entity_type,
                entity_id=r.entity_id,
                relationship=r.relationship,
                strength=r.strength,
            )
            for r in record.related
        ]
    if "embedding" in include and record.embedding is not None:
        fields["embedding"] = [float(x) for x in record.embedding]
    return pb.Memory(**fields)


def _node(entity: Entity) -> pb.Node:
    return pb.Node(
        id=entity.id, type=entity.type, properties={k: str(val) for k, val in entity.properties.items()}
    )


def _edge(edge: EdgeRecord) -> pb.Edge:
    return pb.Edge(
        from_id=edge.from_id, to_id=edge.to_id, relationship=edge.relationship, weight=_unit(edge.weight),
        created_at=edge.created_at,
    )  # fmt: skip


def _context(context: ContactContext, latency_ms: float) -> pb.GetContactContextResponse:
    profile, stats = context.profile, context.stats
    everything = frozenset(v.INCLUDE_FIELDS) - {"embedding"}
    return pb.GetContactContextResponse(
        profile=pb.ContactProfile(
            contact_id=profile.id,
            name=profile.name,
            phone=profile.phone,
            email=profile.email,
            tier=profile.tier,
            tags=list(profile.tags),
            custom_fields={k: str(val) for k, val in profile.custom_fields.items()},
        ),
        recent_memories=[_memory(m, 0.0, everything) for m in context.recent_memories],
        recent_messages=[
            pb.Message(
                id=m.id, content=m.content, is_inbound=m.is_inbound, sent_at=m.sent_at, channel=m.channel
            )
            for m in context.recent_messages
        ],
        graph=pb.KnowledgeGraph(
            nodes=[_node(n) for n in context.graph.nodes] if context.graph else [],
            edges=[_edge(e) for e in context.graph.edges] if context.graph else [],
        ),
        stats=pb.ContactStats(
            total_messages=stats.total_messages,
            total_purchases=stats.total_purchases,
            lifetime_value=stats.lifetime_value,
            first_contact=stats.first_contact,
            last_activity=stats.last_activity,
            churn_risk=_unit(stats.churn_risk),
        ),
        latency_ms=latency_ms,
    )
