"""What every OK response must satisfy, whatever the data: one function per response type.

Each returns a list of problems (empty when the response conforms), phrased for the report.
The request is passed in so the effective limits (0 means the default) can be applied.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from ventros import agents as pb_agents
from ventros import memory as pb_memory

from . import contract as c

_EPS = 1e-6


def _in_unit(value: float) -> bool:
    return not math.isnan(value) and -_EPS <= value <= 1 + _EPS


def _descending(values: list[float]) -> bool:
    return all(a >= b - _EPS for a, b in itertools.pairwise(values))


def _newest_first(stamps: list[Any]) -> bool:
    known = [s for s in stamps if s is not None]
    return all(a >= b for a, b in itertools.pairwise(known))


def effective(value: int, default: int) -> int:
    return default if value == 0 else value


def search(req: pb_memory.SearchMemoriesRequest, resp: pb_memory.SearchMemoriesResponse) -> list[str]:
    problems: list[str] = []
    limit = effective(req.limit, c.SEARCH_DEFAULT_LIMIT)
    memories = list(resp.memories)
    if len(memories) > limit:
        problems.append(f"{len(memories)} memories returned for limit {req.limit} (effective {limit})")
    scores = [m.relevance_score for m in memories]
    if not all(_in_unit(s) for s in scores):
        problems.append(f"relevance_score outside [0, 1]: {scores}")
    if not _descending(scores):
        problems.append(f"memories not sorted by relevance_score, descending: {scores}")
    if resp.total_count < len(memories):
        problems.append(f"total_count {resp.total_count} < {len(memories)} memories returned")
    if resp.metadata is None:
        problems.append("SearchMetadata is not set (proto: 'Always set')")
    if req.memory_types:
        wrong = sorted({m.memory_type for m in memories} - set(req.memory_types))
        if wrong:
            problems.append(f"memory_types {list(req.memory_types)} requested, got types {wrong}")
    fields = set(req.include_fields) or {"content", "metadata", "related"}
    for m in memories:
        if not c.is_uuid(m.id):
            problems.append(f"Memory.id {m.id!r} is not a UUID")
        if not m.memory_type:
            problems.append(f"Memory {m.id} has no memory_type (always filled)")
        if m.created_at is None:
            problems.append(f"Memory {m.id} has no created_at (always filled)")
        if "embedding" not in fields and len(m.embedding):
            problems.append(f"Memory {m.id} carries an embedding that include_fields did not ask for")
        if "embedding" in fields and not len(m.embedding):
            # A memory stored with auto_embed=false has no vector; only complain when others have one.
            pass
        if "content" not in fields and m.content:
            problems.append(f"Memory {m.id} carries content that include_fields did not ask for")
        if "metadata" not in fields and m.metadata:
            problems.append(f"Memory {m.id} carries metadata that include_fields did not ask for")
        if "related" not in fields and m.related:
            problems.append(f"Memory {m.id} carries related entities that include_fields did not ask for")
    dims = {len(m.embedding) for m in memories if len(m.embedding)}
    if len(dims) > 1:
        problems.append(f"embeddings of different lengths in one response: {sorted(dims)}")
    meta = resp.metadata
    if meta is not None:
        weights = {
            pb_memory.SearchMode.VECTOR_ONLY: (1.0, 0.0, 0.0),
            pb_memory.SearchMode.KEYWORD_ONLY: (0.0, 1.0, 0.0),
            pb_memory.SearchMode.GRAPH_ONLY: (0.0, 0.0, 1.0),
        }
        expected = weights.get(req.mode) if c._enum_known(pb_memory.SearchMode, req.mode) else None
        got = (meta.vector_weight, meta.keyword_weight, meta.graph_weight)
        if expected is not None and any(abs(a - b) > 1e-4 for a, b in zip(got, expected, strict=True)):
            problems.append(
                f"{pb_memory.SearchMode(req.mode).name}: weights (vector, keyword, graph) = {got}, "
                f"expected {expected} ('in a single-source mode that source weighs 1.0, others 0')"
            )
        if min(meta.vector_matches, meta.keyword_matches, meta.graph_matches) < 0:
            problems.append("negative match counts in SearchMetadata")
    return problems


def context(req: pb_memory.GetContactContextRequest, resp: pb_memory.GetContactContextResponse) -> list[str]:
    problems: list[str] = []
    limit = effective(req.history_limit, c.HISTORY_DEFAULT)
    if len(resp.recent_memories) > limit:
        problems.append(f"{len(resp.recent_memories)} recent_memories for history_limit {limit}")
    if len(resp.recent_messages) > limit:
        problems.append(f"{len(resp.recent_messages)} recent_messages for history_limit {limit}")
    if not _newest_first([m.created_at for m in resp.recent_memories]):
        problems.append("recent_memories are not newest first")
    if not _newest_first([m.sent_at for m in resp.recent_messages]):
        problems.append("recent_messages are not newest first")
    graph = resp.graph
    nodes = list(graph.nodes) if graph else []
    edges = list(graph.edges) if graph else []
    if not req.include_graph and (nodes or edges):
        problems.append(f"include_graph=false but graph has {len(nodes)} nodes, {len(edges)} edges")
    if len(nodes) > c.GRAPH_MAX_NODES or len(edges) > c.GRAPH_MAX_EDGES:
        problems.append(f"graph of {len(nodes)} nodes / {len(edges)} edges exceeds 200 / 500")
    if any(not _in_unit(e.weight) for e in edges):
        problems.append("an edge weight is outside [0, 1]")
    if req.entity_types:
        types = set(req.entity_types)
        if "message" not in types and resp.recent_messages:
            problems.append("recent_messages filled although entity_types does not list 'message'")
        wrong = sorted({m.memory_type for m in resp.recent_memories} - types)
        if wrong:
            problems.append(f"recent_memories of types {wrong} not in entity_types {sorted(types)}")
    stats = resp.stats
    if stats is not None and not _in_unit(stats.churn_risk):
        problems.append(f"churn_risk {stats.churn_risk} outside [0, 1]")
    return problems


def store(resp: pb_memory.StoreMemoryResponse) -> list[str]:
    problems = []
    if not c.is_uuid(resp.memory_id):
        problems.append(f"memory_id {resp.memory_id!r} is not a UUID")
    if not resp.success:
        problems.append("success=false on OK (proto: 'Always true on OK')")
    return problems


def _path_problem(start: str, result: pb_memory.RelatedEntityResult) -> str | None:
    entity = result.entity
    if entity is None:
        return "a result has no entity"
    if not result.path:
        return f"entity {entity.id}: empty path"
    at = start
    for edge in result.path:
        if edge.from_id == at:
            at = edge.to_id
        elif edge.to_id == at:
            at = edge.from_id
        else:
            return f"entity {entity.id}: path is not a walk from {start} (edge {edge.from_id}->{edge.to_id})"
    if at != entity.id:
        return f"entity {entity.id}: path from {start} ends at {at}"
    return None


def related(
    req: pb_memory.GetRelatedEntitiesRequest, resp: pb_memory.GetRelatedEntitiesResponse
) -> list[str]:
    problems: list[str] = []
    limit = effective(req.limit, c.RELATED_DEFAULT_LIMIT)
    depth = effective(req.max_depth, c.DEPTH_DEFAULT)
    results = list(resp.entities)
    if len(results) > limit:
        problems.append(f"{len(results)} entities for limit {req.limit} (effective {limit})")
    scores = [r.relevance for r in results]
    if not all(_in_unit(s) for s in scores):
        problems.append(f"relevance outside [0, 1]: {scores}")
    if not _descending(scores):
        problems.append(f"entities not sorted by relevance, descending: {scores}")
    for r in results:
        if r.entity is not None and r.entity.id == req.entity_id:
            problems.append("the start entity is among the results ('never included')")
        if len(r.path) > depth:
            problems.append(
                f"entity {r.entity.id if r.entity else '?'}: path of {len(r.path)} > max_depth {depth}"
            )
        problem = _path_problem(req.entity_id, r)
        if problem:
            problems.append(problem)
        if req.target_types and r.entity is not None and r.entity.type not in req.target_types:
            problems.append(f"entity {r.entity.id} of type {r.entity.type!r} not in target_types")
        if any(not _in_unit(e.weight) for e in r.path):
            problems.append("an edge weight is outside [0, 1]")
    return problems


def agents_list(resp: pb_agents.ListAgentsResponse) -> list[str]:
    problems = []
    if resp.total_count != len(resp.agents):
        problems.append(f"total_count {resp.total_count} != {len(resp.agents)} agents")
    types = [a.type for a in resp.agents]
    if len(set(types)) != len(types):
        problems.append(f"duplicate agent types: {types}")
    if any(not t for t in types):
        problems.append("an agent has an empty type")
    return problems


def execute(resp: pb_agents.ExecuteAgentResponse) -> list[str]:
    problems = []
    if not _in_unit(resp.confidence):
        problems.append(f"confidence {resp.confidence} outside [0, 1]")
    if "llm_backend" not in resp.metadata:
        problems.append("metadata lacks 'llm_backend' (always carried)")
    if resp.metadata.get("memory") not in ("ok", "unavailable"):
        problems.append(
            f"metadata['memory'] is {resp.metadata.get('memory')!r}, expected 'ok' or 'unavailable'"
        )
    if resp.latency_ms < 0:
        problems.append("negative latency_ms")
    return problems


def stream_ok(chunks: list[pb_agents.AgentStreamChunk]) -> list[str]:
    problems = []
    types = [pb_agents.ChunkType(ch.type).name if c._enum_known(pb_agents.ChunkType, ch.type) else str(ch.type)
             for ch in chunks]  # fmt: skip
    finals = [i for i, ch in enumerate(chunks) if ch.type == pb_agents.ChunkType.FINAL]
    if len(finals) != 1 or finals[0] != len(chunks) - 1:
        problems.append(f"expected exactly one FINAL chunk, last; got {types}")
    if any(ch.type == pb_agents.ChunkType.ERROR for ch in chunks):
        problems.append(f"an ERROR chunk in a stream that ended OK: {types}")
    if finals:
        missing = [k for k in c.CHUNK_FINAL_KEYS if k not in chunks[finals[-1]].metadata]
        if missing:
            problems.append(f"FINAL chunk metadata lacks {missing}")
    return problems


def stream_failed(chunks: list[pb_agents.AgentStreamChunk], status_name: str) -> list[str]:
    """A stream that ended non-OK: no FINAL; at most one ERROR, last, naming the status."""
    problems = []
    if any(ch.type == pb_agents.ChunkType.FINAL for ch in chunks):
        problems.append(f"a FINAL chunk was sent but the call ended {status_name}")
    errors = [i for i, ch in enumerate(chunks) if ch.type == pb_agents.ChunkType.ERROR]
    if len(errors) > 1:
        problems.append(f"{len(errors)} ERROR chunks (exactly one is sent)")
    if errors:
        if errors[-1] != len(chunks) - 1:
            problems.append("the ERROR chunk is not the last chunk")
        meta = chunks[errors[-1]].metadata
        if meta.get("status") != status_name:
            problems.append(
                f"ERROR chunk metadata['status'] is {meta.get('status')!r}, the call ended {status_name}"
            )
        if not meta.get("error_code"):
            problems.append("ERROR chunk metadata lacks 'error_code'")
    elif chunks:
        problems.append(f"the stream started ({len(chunks)} chunks) and failed without an ERROR chunk")
    return problems
