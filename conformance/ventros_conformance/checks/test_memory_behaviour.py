"""MemoryService behaviour on data the checks write themselves (fresh random contact ids):
defaults, result invariants, read-your-writes, isolation, include_fields, auto_embed."""

from __future__ import annotations

import pytest
from grpclib.const import Status
from ventros import memory as pb

from .. import contract as c
from .. import invariants
from .._transport import Target
from ..expect import expect_conforming, expect_error, expect_ok, fail
from ._support import Seed, call, check, fresh_id, store, token

SERVICE = "memory"
KEYWORD = pb.SearchMode.KEYWORD_ONLY
VECTOR = pb.SearchMode.VECTOR_ONLY


def _search(target: Target, **fields: object) -> tuple[pb.SearchMemoriesRequest, pb.SearchMemoriesResponse]:
    request = pb.SearchMemoriesRequest(**fields)  # type: ignore[arg-type]
    outcome = call(target, "SearchMemories", request)
    response = expect_ok(outcome, target.address)
    expect_conforming(
        outcome, target.address, invariants.search(request, response), "SearchMemories invariants"
    )
    return request, response


def _ids(response: pb.SearchMemoriesResponse) -> list[str]:
    return [m.id for m in response.memories]


@check("proto SearchMemoriesRequest.limit: '0 means the default, 10'; spec 2.1", SERVICE)
def test_search_limit_defaults_to_10(target: Target, seeded: Seed) -> None:
    """limit 0 returns exactly 10 of the 55 matching memories; total_count counts them all."""
    _, response = _search(target, contact_id=seeded.contact_id, query=seeded.word, mode=KEYWORD)
    if len(response.memories) != c.SEARCH_DEFAULT_LIMIT:
        fail(f"limit 0 returned {len(response.memories)} memories, expected the default 10 "
             f"({len(seeded.ids)} memories match)", None, target.address)  # fmt: skip
    if response.total_count < len(seeded.ids):
        fail(f"total_count {response.total_count}, but {len(seeded.ids)} stored memories contain the query word",
             None, target.address)  # fmt: skip


@check(
    "proto SearchMemoriesResponse.memories: 'At most `limit`, sorted by relevance_score, descending'", SERVICE
)
@pytest.mark.parametrize("limit", [1, 3, 100])
def test_search_honours_limit(target: Target, seeded: Seed, limit: int) -> None:
    """An explicit limit returns min(limit, matches) memories, sorted, scores in [0, 1]."""
    _, response = _search(target, contact_id=seeded.contact_id, query=seeded.word, mode=KEYWORD, limit=limit)
    expected = min(limit, len(seeded.ids))
    if len(response.memories) != expected:
        fail(f"limit {limit}: {len(response.memories)} memories, expected {expected}", None, target.address)
    unknown = set(_ids(response)) - set(seeded.ids)
    if unknown:
        fail(
            f"memories that this contact never stored came back: {sorted(unknown)[:3]}", None, target.address
        )


@check("proto SearchMemoriesResponse.memories: 'sorted by relevance_score, descending'; Memory.relevance_score "
       "'In [0.0, 1.0]'", SERVICE)  # fmt: skip
@pytest.mark.parametrize("mode", [VECTOR, pb.SearchMode.HYBRID], ids=["vector", "hybrid"])
def test_search_is_ranked(target: Target, seeded: Seed, mode: pb.SearchMode) -> None:
    """A similarity search over 55 memories returns distinct scores, highest first, all in [0, 1]."""
    query = f"{seeded.word} note 7 about the discount of order 1007"
    _, response = _search(target, contact_id=seeded.contact_id, query=query, mode=mode, limit=100)
    scores = [m.relevance_score for m in response.memories]
    if len(set(scores)) < 2:
        fail(f"{len(scores)} memories but all with relevance_score {scores[:1]}: nothing is ranked",
             None, target.address)  # fmt: skip


@check("proto SearchMemoriesRequest.memory_types: 'Only memories whose memory_type is in this list'", SERVICE)
def test_search_honours_memory_types(target: Target, seeded: Seed) -> None:
    """memory_types=["preference"] returns every preference memory and nothing else."""
    _, response = _search(
        target,
        contact_id=seeded.contact_id,
        query=seeded.word,
        mode=KEYWORD,
        limit=100,
        memory_types=["preference"],
    )
    got, want = set(_ids(response)), seeded.ids_of("preference")
    if got != want:
        fail(f"memory_types filter: got {len(got)} memories ({len(got - want)} of other types), expected {len(want)}",
             None, target.address)  # fmt: skip


@check(
    "proto SearchMemoriesRequest.include_fields: default 'content, metadata, related'; embedding on request",
    SERVICE,
)
@pytest.mark.parametrize(
    "include", [[], ["embedding"], ["content"], ["metadata"], ["content", "embedding", "metadata", "related"]],
    ids=["default", "embedding", "content", "metadata", "all"],
)  # fmt: skip
def test_search_honours_include_fields(target: Target, seeded: Seed, include: list[str]) -> None:
    """Only the requested optional fields are filled; id, memory_type, score and created_at always are."""
    _, response = _search(
        target, contact_id=seeded.contact_id, query=seeded.word, mode=KEYWORD, limit=5, include_fields=include
    )
    fields = set(include) or {"content", "metadata", "related"}
    problems = []
    for m in response.memories:
        if "content" in fields and seeded.word not in m.content:
            problems.append(f"memory {m.id}: content missing although requested")
        if "metadata" in fields and not m.metadata:
            problems.append(f"memory {m.id}: metadata missing although requested (it was stored with one)")
        if "embedding" in fields and not len(m.embedding):
            problems.append(
                f"memory {m.id}: embedding missing although requested (stored with auto_embed unset)"
            )
    if problems:
        fail("include_fields not honoured", None, target.address, problems[:5])


@check(
    "proto StoreMemory: 'Once it returns OK the memory is found by KEYWORD_ONLY and VECTOR_ONLY searches'",
    SERVICE,
)
@pytest.mark.parametrize("mode", [KEYWORD, VECTOR, pb.SearchMode.HYBRID], ids=["keyword", "vector", "hybrid"])
def test_read_your_writes(target: Target, mode: pb.SearchMode) -> None:
    """A memory is found by the very next search, keyed by a word no other memory has."""
    contact, word = fresh_id(), token()
    content = f"Customer {word} asked to be called back about the warranty"
    memory_id = store(target, contact, content, "fact")
    query = word if mode == KEYWORD else content
    _, response = _search(target, contact_id=contact, query=query, mode=mode)
    if memory_id not in _ids(response):
        fail(f"{pb.SearchMode(mode).name} search right after StoreMemory did not return memory {memory_id}",
             None, target.address, [f"returned: {_ids(response)}"])  # fmt: skip


@check("proto StoreMemoryRequest.auto_embed: 'Unset means true'; auto_embed=false: KEYWORD finds it, VECTOR does not",
       SERVICE)  # fmt: skip
def test_auto_embed_false_is_keyword_only(target: Target) -> None:
    """A memory stored with auto_embed=false is found by KEYWORD_ONLY but not by VECTOR_ONLY."""
    contact, word = fresh_id(), token()
    content = f"Customer {word} wants invoices by post"
    memory_id = store(target, contact, content, "preference", auto_embed=False)
    _, keyword = _search(target, contact_id=contact, query=word, mode=KEYWORD)
    if memory_id not in _ids(keyword):
        fail("KEYWORD_ONLY did not find a memory stored with auto_embed=false", None, target.address)
    _, vector = _search(target, contact_id=contact, query=content, mode=VECTOR)
    if memory_id in _ids(vector):
        fail(
            "VECTOR_ONLY found a memory stored with auto_embed=false (it has no vector)", None, target.address
        )


@check("proto SearchMemoriesRequest.contact_id: 'Results never include another contact's memories'", SERVICE)
@pytest.mark.parametrize("mode", [KEYWORD, VECTOR, pb.SearchMode.HYBRID], ids=["keyword", "vector", "hybrid"])
def test_contacts_are_isolated(target: Target, mode: pb.SearchMode) -> None:
    """Two contacts store the same text; each one's search returns only its own memory."""
    word = token()
    content = f"Customer {word} reported a damaged parcel"
    mine, theirs = fresh_id(), fresh_id()
    my_id = store(target, mine, content, "fact")
    their_id = store(target, theirs, content, "fact")
    _, response = _search(target, contact_id=mine, query=word if mode == KEYWORD else content, mode=mode)
    if their_id in _ids(response):
        fail("a search returned another contact's memory", None, target.address)
    if my_id not in _ids(response):
        fail("a search did not return the contact's own memory", None, target.address)


@check("proto StoreMemoryResponse: memory_id is a UUID; success 'Always true on OK'", SERVICE)
def test_store_response(target: Target) -> None:
    """Two stores answer two different UUIDs with success=true."""
    contact = fresh_id()
    outcomes = [
        call(target, "StoreMemory", contact_id=contact, content=f"note {i}", memory_type="fact")
        for i in (1, 2)
    ]
    responses = [expect_ok(o, target.address) for o in outcomes]
    for o, r in zip(outcomes, responses, strict=True):
        expect_conforming(o, target.address, invariants.store(r), "StoreMemoryResponse")
    if responses[0].memory_id == responses[1].memory_id:
        fail("two StoreMemory calls returned the same memory_id", None, target.address)


@check(
    "proto RelatedEntity: relationship 'Empty means \"mentioned\"'; strength '0 means the default, 1.0'",
    SERVICE,
)
def test_related_entity_defaults(target: Target) -> None:
    """A related entity stored without relationship/strength reads back as "mentioned" / 1.0."""
    contact, word, product = fresh_id(), token(), fresh_id()
    related = [pb.RelatedEntity(entity_type="product", entity_id=product)]
    memory_id = store(target, contact, f"Customer {word} liked the product", "fact", related=related)
    _, response = _search(target, contact_id=contact, query=word, mode=KEYWORD, include_fields=["related"])
    memory = next((m for m in response.memories if m.id == memory_id), None)
    if memory is None:
        fail("the stored memory was not found", None, target.address)
        return
    entity = next((r for r in memory.related if r.entity_id == product), None)
    if entity is None:
        fail(
            f"include_fields=['related'] did not return the related entity: {memory.related}",
            None,
            target.address,
        )
        return
    problems = []
    if entity.relationship != "mentioned":
        problems.append(f"relationship is {entity.relationship!r}, expected 'mentioned'")
    if abs(entity.strength - 1.0) > 1e-6:
        problems.append(f"strength is {entity.strength}, expected 1.0")
    if entity.entity_type != "product":
        problems.append(f"entity_type is {entity.entity_type!r}, expected 'product'")
    if problems:
        fail("RelatedEntity defaults not applied", None, target.address, problems)


@check("proto RelatedEntity.entity_id: 'An entity the store has not seen is created with this type'; "
       "GetRelatedEntities: NOT_FOUND when entity_type does not match", SERVICE)  # fmt: skip
def test_stored_entity_is_in_the_graph(target: Target) -> None:
    """An entity first named by StoreMemory exists for GetRelatedEntities, with the given type only."""
    product = fresh_id()
    store(target, fresh_id(), "Customer bought a blender", "purchase",
          related=[pb.RelatedEntity(entity_type="product", entity_id=product, relationship="purchased")])  # fmt: skip
    request = pb.GetRelatedEntitiesRequest(entity_id=product)
    outcome = call(target, "GetRelatedEntities", request)
    response = expect_ok(outcome, target.address, "for an entity created by StoreMemory")
    expect_conforming(
        outcome, target.address, invariants.related(request, response), "GetRelatedEntities invariants"
    )
    expect_ok(call(target, "GetRelatedEntities", entity_id=product, entity_type="product"), target.address,
              "with the entity's own type")  # fmt: skip
    expect_error(call(target, "GetRelatedEntities", entity_id=product, entity_type="campaign"),
                 Status.NOT_FOUND, target.address, code="ENTITY_NOT_FOUND")  # fmt: skip


@check("proto GetContactContext: NOT_FOUND only when the store knows nothing of the contact; "
       "history_limit '0 means the default, 50'; 'Newest first'", SERVICE)  # fmt: skip
def test_context_history_limit_defaults_to_50(target: Target, seeded: Seed) -> None:
    """A contact with 55 memories and no profile: OK, 50 recent memories newest first, graph empty."""
    request = pb.GetContactContextRequest(contact_id=seeded.contact_id)
    outcome = call(target, "GetContactContext", request)
    response = expect_ok(outcome, target.address, "for a contact that has memories but no profile")
    expect_conforming(
        outcome, target.address, invariants.context(request, response), "GetContactContext invariants"
    )
    if len(response.recent_memories) != c.HISTORY_DEFAULT:
        fail(f"history_limit 0 returned {len(response.recent_memories)} recent memories, expected the default 50",
             None, target.address)  # fmt: skip
    if not set(m.id for m in response.recent_memories) <= set(seeded.ids):
        fail("recent_memories holds memories this contact never stored", None, target.address)


@check("proto GetContactContextRequest.history_limit / entity_types", SERVICE)
def test_context_history_limit_and_types(target: Target, seeded: Seed) -> None:
    """history_limit=7 returns 7; entity_types=["fact"] keeps only facts."""
    request = pb.GetContactContextRequest(contact_id=seeded.contact_id, history_limit=7)
    response = expect_ok(call(target, "GetContactContext", request), target.address)
    if len(response.recent_memories) != 7:
        fail(
            f"history_limit 7 returned {len(response.recent_memories)} recent memories", None, target.address
        )
    request = pb.GetContactContextRequest(
        contact_id=seeded.contact_id, history_limit=500, entity_types=["fact"]
    )
    outcome = call(target, "GetContactContext", request)
    response = expect_ok(outcome, target.address)
    expect_conforming(
        outcome, target.address, invariants.context(request, response), "GetContactContext invariants"
    )
    got = {m.id for m in response.recent_memories}
    if got != seeded.ids_of("fact"):
        fail(f"entity_types=['fact'] returned {len(got)} memories, expected the {len(seeded.ids_of('fact'))} facts",
             None, target.address)  # fmt: skip
