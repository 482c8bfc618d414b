"""MemoryService on the shipped fixture set (fixtures.jsonl): profiles, history, stats and the
knowledge graph. Skipped ("needs fixtures") when the target has not loaded it."""

from __future__ import annotations

import itertools

import pytest
from grpclib.const import Status
from ventros import memory as pb

from .. import contract as c
from .. import fixtures as fx
from .. import invariants
from .._transport import Target
from ..expect import expect_conforming, expect_error, expect_ok, fail
from ._support import call, check

SERVICE = "memory"
pytestmark = pytest.mark.needs_fixtures


def _context(target: Target, **fields: object) -> pb.GetContactContextResponse:
    request = pb.GetContactContextRequest(**fields)  # type: ignore[arg-type]
    outcome = call(target, "GetContactContext", request)
    response = expect_ok(outcome, target.address)
    expect_conforming(
        outcome, target.address, invariants.context(request, response), "GetContactContext invariants"
    )
    return response


def _related(target: Target, **fields: object) -> pb.GetRelatedEntitiesResponse:
    request = pb.GetRelatedEntitiesRequest(**fields)  # type: ignore[arg-type]
    outcome = call(target, "GetRelatedEntities", request)
    response = expect_ok(outcome, target.address)
    expect_conforming(
        outcome, target.address, invariants.related(request, response), "GetRelatedEntities invariants"
    )
    return response


@check("proto ContactProfile; spec 2.2 (profile of a loaded contact)", SERVICE)
def test_fixture_profile(target: Target, fixture_set: fx.FixtureSet) -> None:
    """Contact A's profile comes back exactly as loaded."""
    want = fixture_set.contact(fx.CONTACT_A)
    profile = _context(target, contact_id=fx.CONTACT_A).profile
    if profile is None:
        fail("GetContactContext returned no profile for fixture contact A", None, target.address)
        return
    problems = []
    for key in ("name", "phone", "email", "tier"):
        if getattr(profile, key) != want[key]:
            problems.append(f"{key}: {getattr(profile, key)!r}, expected {want[key]!r}")
    if profile.contact_id.lower() != fx.CONTACT_A:
        problems.append(f"contact_id: {profile.contact_id!r}")
    if sorted(profile.tags) != sorted(want["tags"]):
        problems.append(f"tags: {list(profile.tags)}, expected {want['tags']}")
    if dict(profile.custom_fields) != want["custom_fields"]:
        problems.append(f"custom_fields: {dict(profile.custom_fields)}, expected {want['custom_fields']}")
    if problems:
        fail("profile differs from the fixture set", None, target.address, problems)


@check(
    "proto GetContactContextResponse.recent_messages / recent_memories: 'Newest first'; history_limit",
    SERVICE,
)
def test_fixture_history(target: Target, fixture_set: fx.FixtureSet) -> None:
    """All 6 messages and 5 memories of contact A, newest first; history_limit=2 keeps the 2 newest."""
    response = _context(target, contact_id=fx.CONTACT_A)
    messages = [m["id"] for m in fixture_set.messages(fx.CONTACT_A)]
    got = [m.id for m in response.recent_messages]
    if got != messages:
        fail("recent_messages differ from the fixture set (newest first)", None, target.address,
             [f"got {got}", f"expected {messages}"])  # fmt: skip
    memories = [m["id"] for m in fixture_set.memories(fx.CONTACT_A)]
    got = [m.id for m in response.recent_memories]
    if got[: len(memories)] != memories:
        fail("recent_memories differ from the fixture set (newest first)", None, target.address,
             [f"got {got}", f"expected {memories}"])  # fmt: skip
    short = _context(target, contact_id=fx.CONTACT_A, history_limit=2)
    if [m.id for m in short.recent_messages] != messages[:2]:
        fail("history_limit=2 did not keep the 2 newest messages", None, target.address)
    if [m.id for m in short.recent_memories] != memories[:2]:
        fail("history_limit=2 did not keep the 2 newest memories", None, target.address)


@check("proto GetContactContextRequest.entity_types: 'recent_messages is filled only when \"message\" is listed'",
       SERVICE)  # fmt: skip
def test_fixture_entity_types(target: Target, fixture_set: fx.FixtureSet) -> None:
    """entity_types=["message"] keeps messages only; ["purchase"] keeps purchase memories only."""
    only_messages = _context(target, contact_id=fx.CONTACT_A, entity_types=["message"])
    if (
        len(only_messages.recent_messages) != len(fixture_set.messages(fx.CONTACT_A))
        or only_messages.recent_memories
    ):
        fail("entity_types=['message'] should return every message and no memory", None, target.address)
    purchases = _context(target, contact_id=fx.CONTACT_A, entity_types=["purchase"])
    want = {m["id"] for m in fixture_set.memories(fx.CONTACT_A) if m["memory_type"] == "purchase"}
    if purchases.recent_messages or {m.id for m in purchases.recent_memories} != want:
        fail(
            "entity_types=['purchase'] should return the purchase memories and no message",
            None,
            target.address,
        )


@check("proto ContactStats (totals of the loaded messages and purchases; churn_risk in [0, 1])", SERVICE)
def test_fixture_stats(target: Target, fixture_set: fx.FixtureSet) -> None:
    """total_messages 6, total_purchases 3, lifetime_value 400.00, first_contact <= last_activity."""
    stats = _context(target, contact_id=fx.CONTACT_A).stats
    if stats is None:
        fail("GetContactContext returned no stats", None, target.address)
        return
    purchases = fixture_set.purchases(fx.CONTACT_A)
    problems = []
    if stats.total_messages != len(fixture_set.messages(fx.CONTACT_A)):
        problems.append(
            f"total_messages {stats.total_messages}, expected {len(fixture_set.messages(fx.CONTACT_A))}"
        )
    if stats.total_purchases != len(purchases):
        problems.append(f"total_purchases {stats.total_purchases}, expected {len(purchases)}")
    ltv = sum(p["amount"] for p in purchases)
    if abs(stats.lifetime_value - ltv) > 0.01:
        problems.append(f"lifetime_value {stats.lifetime_value}, expected {ltv}")
    if stats.first_contact and stats.last_activity and stats.first_contact > stats.last_activity:
        problems.append("first_contact is after last_activity")
    if problems:
        fail("ContactStats differ from the fixture set", None, target.address, problems)


@check("proto GetContactContext: NOT_FOUND only when the store knows nothing of the contact", SERVICE)
def test_fixture_profile_only_contact(target: Target, fixture_set: fx.FixtureSet) -> None:
    """Contact B (a profile, nothing else) is OK with empty history."""
    response = _context(target, contact_id=fx.CONTACT_B)
    if response.profile is None or response.profile.name != fixture_set.contact(fx.CONTACT_B)["name"]:
        fail("contact B's profile did not come back", None, target.address)
    if response.recent_messages or response.recent_memories:
        fail("contact B has no messages or memories, but some came back", None, target.address)


@check("proto GetContactContextRequest.include_graph: depth 2, at most 200 nodes / 500 edges; empty when false",
       SERVICE)  # fmt: skip
def test_fixture_graph(target: Target, fixture_set: fx.FixtureSet) -> None:
    """include_graph=true returns a non-empty, bounded graph whose edges join its nodes."""
    response = _context(target, contact_id=fx.CONTACT_A, include_graph=True)
    graph = response.graph
    if graph is None or not graph.nodes:
        fail("include_graph=true returned no graph for a contact with related entities", None, target.address)
        return
    ids = {n.id for n in graph.nodes}
    dangling = [(e.from_id, e.to_id) for e in graph.edges if e.from_id not in ids or e.to_id not in ids]
    if dangling:
        fail("graph edges refer to nodes the graph does not hold", None, target.address, [str(dangling[:3])])
    linked = {r["entity_id"] for m in fixture_set.memories(fx.CONTACT_A) for r in m["related"]}
    if not ids & linked:
        fail("the graph holds none of the entities contact A's memories are related to", None, target.address)


@check(
    "proto GetRelatedEntitiesRequest.max_depth: '0 means the default, 2'; RelatedEntityResult.path", SERVICE
)
@pytest.mark.parametrize(("depth", "reach"), [(0, 2), (1, 1), (2, 2), (5, 5)])
def test_fixture_max_depth(target: Target, fixture_set: fx.FixtureSet, depth: int, reach: int) -> None:
    """From the end of a 7-entity chain, max_depth d reaches exactly the next d entities."""
    response = _related(target, entity_id=fx.CHAIN[0], max_depth=depth, limit=100)
    got = {r.entity.id for r in response.entities if r.entity}
    want = set(fx.CHAIN[1 : reach + 1])
    if got != want:
        fail(f"max_depth {depth}: reached {len(got)} chain entities, expected {reach}", None, target.address,
             [f"missing {sorted(want - got)}", f"unexpected {sorted(got - want)}"])  # fmt: skip
    by_id = {r.entity.id: r for r in response.entities if r.entity}
    lengths = {fx.CHAIN.index(i): len(r.path) for i, r in by_id.items()}
    if any(length != position for position, length in lengths.items()):
        fail(f"path lengths (position: length) {lengths}: the best path to the n-th link has n edges",
             None, target.address)  # fmt: skip
    scores = [by_id[i].relevance for i in fx.CHAIN[1 : reach + 1]]
    if any(a <= b for a, b in itertools.pairwise(scores)):
        fail(f"relevance does not decay with depth along the chain: {scores}", None, target.address)


@check("proto GetRelatedEntitiesRequest.limit: '0 means the default, 20'", SERVICE)
@pytest.mark.parametrize(("limit", "expected"), [(0, 20), (5, 5), (100, 25)])
def test_fixture_related_limit(target: Target, fixture_set: fx.FixtureSet, limit: int, expected: int) -> None:
    """The hub has 25 neighbours: limit 0 returns 20, limit 5 returns 5, limit 100 all 25."""
    response = _related(target, entity_id=fx.HUB, max_depth=1, limit=limit)
    if len(response.entities) != expected:
        fail(f"limit {limit}: {len(response.entities)} entities, expected {expected}", None, target.address)


@check("proto GetRelatedEntitiesRequest.target_types / entity_type", SERVICE)
def test_fixture_target_and_entity_types(target: Target, fixture_set: fx.FixtureSet) -> None:
    """target_types=["ticket"] returns the hub's 5 tickets; a wrong entity_type is NOT_FOUND."""
    response = _related(target, entity_id=fx.HUB, max_depth=1, limit=100, target_types=["ticket"])
    tickets = {i for i in fx.HUB_LEAVES if fixture_set.entity(i)["type"] == "ticket"}
    if {r.entity.id for r in response.entities if r.entity} != tickets:
        fail("target_types=['ticket'] did not return exactly the hub's tickets", None, target.address)
    _related(target, entity_id=fx.HUB, entity_type="category")
    outcome = call(target, "GetRelatedEntities", entity_id=fx.HUB, entity_type="product")
    expect_error(outcome, Status.NOT_FOUND, target.address, code="ENTITY_NOT_FOUND")


@check("proto GetRelatedEntitiesRequest.entity_id: 'an entity id (a contact id, product id, ...)'", SERVICE)
def test_fixture_contact_is_an_entity(target: Target, fixture_set: fx.FixtureSet) -> None:
    """GetRelatedEntities starting at contact A is OK (a contact is a node of the graph)."""
    _related(target, entity_id=fx.CONTACT_A, max_depth=c.DEPTH_MAX)


@check("proto SearchMemoriesRequest.memory_types on loaded memories", SERVICE)
def test_fixture_search(target: Target, fixture_set: fx.FixtureSet) -> None:
    """KEYWORD_ONLY "conformance fixture" finds contact A's memories; memory_types filters them."""
    request = pb.SearchMemoriesRequest(contact_id=fx.CONTACT_A, query="conformance fixture",
                                       mode=pb.SearchMode.KEYWORD_ONLY, limit=100)  # fmt: skip
    outcome = call(target, "SearchMemories", request)
    response = expect_ok(outcome, target.address)
    expect_conforming(
        outcome, target.address, invariants.search(request, response), "SearchMemories invariants"
    )
    want = {m["id"] for m in fixture_set.memories(fx.CONTACT_A)}
    if not want <= {m.id for m in response.memories}:
        fail("the fixture memories were not all found", None, target.address)
    request.memory_types = ["support_ticket"]
    response = expect_ok(call(target, "SearchMemories", request), target.address)
    if {m.memory_type for m in response.memories} != {"support_ticket"}:
        fail("memory_types=['support_ticket'] not honoured", None, target.address)
