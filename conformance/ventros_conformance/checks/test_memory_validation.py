"""MemoryService: every malformed or out-of-range field is INVALID_ARGUMENT naming the field;
values on the boundary are accepted; unknown contacts and entities are NOT_FOUND."""

from __future__ import annotations

from typing import Any

import pytest
from grpclib.const import Status
from ventros import memory as pb

from .. import contract as c
from .._transport import Target
from ..expect import expect_error, expect_ok, fail
from ._support import call, check, fresh_id

SERVICE = "memory"
UUID = "550e8400-e29b-41d4-a716-446655440000"


def _search(**fields: Any) -> pb.SearchMemoriesRequest:
    base: dict[str, Any] = {
        "contact_id": fresh_id(),
        "query": "late delivery",
        "mode": pb.SearchMode.KEYWORD_ONLY,
    }
    base.update(fields)
    return pb.SearchMemoriesRequest(**base)


def _context(**fields: Any) -> pb.GetContactContextRequest:
    return pb.GetContactContextRequest(**{"contact_id": fresh_id(), **fields})


def _store(**fields: Any) -> pb.StoreMemoryRequest:
    base: dict[str, Any] = {
        "contact_id": fresh_id(),
        "content": "Customer prefers email",
        "memory_type": "preference",
    }
    base.update(fields)
    return pb.StoreMemoryRequest(**base)


def _entity(**fields: Any) -> pb.RelatedEntity:
    return pb.RelatedEntity(**{"entity_type": "product", "entity_id": fresh_id(), **fields})


def _related(**fields: Any) -> pb.GetRelatedEntitiesRequest:
    return pb.GetRelatedEntitiesRequest(**{"entity_id": fresh_id(), **fields})


P = pytest.param
INVALID = [
    # SearchMemories
    P("SearchMemories", lambda: _search(contact_id=""), "contact_id", id="search-contact_id-missing"),
    P("SearchMemories", lambda: _search(contact_id="not-a-uuid"), "contact_id", id="search-contact_id-malformed"),
    P("SearchMemories", lambda: _search(contact_id=UUID.replace("-", "")), "contact_id", id="search-contact_id-no-dashes"),
    P("SearchMemories", lambda: _search(contact_id=UUID + "\n"), "contact_id", id="search-contact_id-trailing-newline"),
    P("SearchMemories", lambda: _search(query="", mode=pb.SearchMode.HYBRID), "query", id="search-query-empty-hybrid"),
    P("SearchMemories", lambda: _search(query=" \t\n "), "query", id="search-query-blank-keyword"),
    P("SearchMemories", lambda: _search(query="", mode=pb.SearchMode.VECTOR_ONLY), "query", id="search-query-empty-vector"),
    P("SearchMemories", lambda: _search(query="a" * 4097), "query", id="search-query-4097-bytes"),
    P("SearchMemories", lambda: _search(query="€" * 1366), "query", id="search-query-4098-bytes-multibyte"),
    P("SearchMemories", lambda: _search(limit=-1), "limit", id="search-limit-negative"),
    P("SearchMemories", lambda: _search(limit=101), "limit", id="search-limit-101"),
    P("SearchMemories", lambda: _search(limit=-(2**31)), "limit", id="search-limit-int32-min"),
    P("SearchMemories", lambda: _search(memory_types=[f"t{i}" for i in range(33)]), "memory_types", id="search-memory_types-33"),
    P("SearchMemories", lambda: _search(mode=4), "mode", id="search-mode-unknown-4"),
    P("SearchMemories", lambda: _search(mode=99), "mode", id="search-mode-unknown-99"),
    P("SearchMemories", lambda: _search(include_fields=["bogus"]), "include_fields", id="search-include_fields-unknown"),
    P("SearchMemories", lambda: _search(include_fields=["Content"]), "include_fields", id="search-include_fields-wrong-case"),
    # GetContactContext
    P("GetContactContext", lambda: _context(contact_id=""), "contact_id", id="context-contact_id-missing"),
    P("GetContactContext", lambda: _context(contact_id="42"), "contact_id", id="context-contact_id-malformed"),
    P("GetContactContext", lambda: _context(history_limit=-1), "history_limit", id="context-history_limit-negative"),
    P("GetContactContext", lambda: _context(history_limit=501), "history_limit", id="context-history_limit-501"),
    # StoreMemory
    P("StoreMemory", lambda: _store(contact_id=""), "contact_id", id="store-contact_id-missing"),
    P("StoreMemory", lambda: _store(contact_id="{" + UUID + "}"), "contact_id", id="store-contact_id-braces"),
    P("StoreMemory", lambda: _store(content=""), "content", id="store-content-empty"),
    P("StoreMemory", lambda: _store(content="  \n\t"), "content", id="store-content-blank"),
    P("StoreMemory", lambda: _store(content="a" * 16385), "content", id="store-content-16385-bytes"),
    P("StoreMemory", lambda: _store(content="😀" * 4097), "content", id="store-content-16388-bytes-emoji"),
    P("StoreMemory", lambda: _store(memory_type=""), "memory_type", id="store-memory_type-missing"),
    P("StoreMemory", lambda: _store(memory_type="Preference"), "memory_type", id="store-memory_type-uppercase"),
    P("StoreMemory", lambda: _store(memory_type="has space"), "memory_type", id="store-memory_type-space"),
    P("StoreMemory", lambda: _store(memory_type="x" * 65), "memory_type", id="store-memory_type-65-bytes"),
    P("StoreMemory", lambda: _store(metadata={f"k{i}": "v" for i in range(65)}), "metadata", id="store-metadata-65-entries"),
    P("StoreMemory", lambda: _store(metadata={"": "v"}), "metadata", id="store-metadata-empty-key"),
    P("StoreMemory", lambda: _store(metadata={"k" * 129: "v"}), "metadata", id="store-metadata-key-129-bytes"),
    P("StoreMemory", lambda: _store(metadata={"k": "v" * 4097}), "metadata", id="store-metadata-value-4097-bytes"),
    P("StoreMemory", lambda: _store(related=[_entity() for _ in range(33)]), "related", id="store-related-33"),
    P("StoreMemory", lambda: _store(related=[_entity(entity_type="")]), "related.entity_type", id="store-related-type-missing"),
    P("StoreMemory", lambda: _store(related=[_entity(entity_type="Product")]), "related.entity_type", id="store-related-type-uppercase"),
    P("StoreMemory", lambda: _store(related=[_entity(entity_type="p" * 65)]), "related.entity_type", id="store-related-type-65-bytes"),
    P("StoreMemory", lambda: _store(related=[_entity(entity_id="")]), "related.entity_id", id="store-related-id-missing"),
    P("StoreMemory", lambda: _store(related=[_entity(entity_id="has space")]), "related.entity_id", id="store-related-id-bad-char"),
    P("StoreMemory", lambda: _store(related=[_entity(entity_id="e" * 129)]), "related.entity_id", id="store-related-id-129-bytes"),
    P("StoreMemory", lambda: _store(related=[_entity(strength=1.5)]), "related.strength", id="store-related-strength-above-1"),
    P("StoreMemory", lambda: _store(related=[_entity(strength=-0.5)]), "related.strength", id="store-related-strength-negative"),
    P("StoreMemory", lambda: _store(related=[_entity(strength=float("nan"))]), "related.strength", id="store-related-strength-nan"),
    P("StoreMemory", lambda: _store(related=[_entity(relationship="Bought It")]), "related.relationship", id="store-related-relationship-not-snake"),
    # GetRelatedEntities
    P("GetRelatedEntities", lambda: _related(entity_id=""), "entity_id", id="related-entity_id-missing"),
    P("GetRelatedEntities", lambda: _related(max_depth=-1), "max_depth", id="related-max_depth-negative"),
    P("GetRelatedEntities", lambda: _related(max_depth=6), "max_depth", id="related-max_depth-6"),
    P("GetRelatedEntities", lambda: _related(limit=-1), "limit", id="related-limit-negative"),
    P("GetRelatedEntities", lambda: _related(limit=101), "limit", id="related-limit-101"),
]  # fmt: skip


@check("proto: request field comments; 'INVALID_ARGUMENT a field is missing, malformed or out of range "
       "(ErrorDetails.metadata[\"field\"])'; contract.md Status codes and ErrorDetails; spec 4.1-4.2", SERVICE)  # fmt: skip
@pytest.mark.parametrize(("rpc", "make", "field"), INVALID)
def test_invalid_field_is_invalid_argument(target: Target, rpc: str, make: Any, field: str) -> None:
    """A request with one bad field is INVALID_ARGUMENT with ErrorDetails naming that field."""
    request = make()
    assert c.VALIDATORS[rpc](request).invalid, "internal: the oracle disagrees with this case"
    expect_error(call(target, rpc, request), Status.INVALID_ARGUMENT, target.address, field=field)


ACCEPTED = [
    P("SearchMemories", lambda: _search(limit=100), id="search-limit-100"),
    P("SearchMemories", lambda: _search(limit=0), id="search-limit-0-default"),
    P("SearchMemories", lambda: _search(contact_id=fresh_id().upper()), id="search-contact_id-uppercase"),
    P("SearchMemories", lambda: _search(query="a" * 4096), id="search-query-4096-bytes"),
    P("SearchMemories", lambda: _search(query="", mode=pb.SearchMode.GRAPH_ONLY), id="search-graph-only-empty-query"),
    P("SearchMemories", lambda: _search(memory_types=[f"t{i}" for i in range(32)]), id="search-memory_types-32"),
    P("SearchMemories", lambda: _search(include_fields=list(c.INCLUDE_FIELDS)), id="search-include_fields-all"),
    P("SearchMemories", lambda: _search(query="entrega atrasada 配送 😀"), id="search-query-unicode"),
    P("GetContactContext", lambda: _context(history_limit=500), id="context-history_limit-500"),
    P("GetContactContext", lambda: _context(include_graph=True, entity_types=["message"]), id="context-graph-and-types"),
    P("StoreMemory", lambda: _store(content="😀" * 4096), id="store-content-16384-bytes"),
    P("StoreMemory", lambda: _store(memory_type="x" * 64), id="store-memory_type-64-bytes"),
    P("StoreMemory", lambda: _store(metadata={f"{i:03d}" + "k" * 125: "v" * 4096 for i in range(64)}), id="store-metadata-at-caps"),
    P("StoreMemory", lambda: _store(related=[_entity() for _ in range(32)]), id="store-related-32"),
    P("StoreMemory", lambda: _store(related=[_entity(strength=0.0), _entity(strength=1.0)]), id="store-related-strength-bounds"),
    P("StoreMemory", lambda: _store(related=[_entity(entity_id="sku:A-1_b.2", entity_type="product_variant")]), id="store-related-id-charset"),
    P("StoreMemory", lambda: _store(auto_embed=False), id="store-auto_embed-false"),
    P("GetRelatedEntities", lambda: _related(max_depth=5, limit=100), id="related-max_depth-5-limit-100"),
]  # fmt: skip


@check("proto: request field comments (bounds are inclusive; 0 means the default)", SERVICE)
@pytest.mark.parametrize(("rpc", "make"), ACCEPTED)
def test_boundary_value_is_accepted(target: Target, rpc: str, make: Any) -> None:
    """A request on the boundary of every rule is not rejected (OK, or NOT_FOUND where documented)."""
    request = make()
    assert c.VALIDATORS[rpc](request).valid, "internal: the oracle disagrees with this case"
    outcome = call(target, rpc, request)
    if outcome.status not in c.RPCS[rpc].valid_statuses:
        fail(f"expected one of {sorted(s.name for s in c.RPCS[rpc].valid_statuses)}", outcome, target.address)


@check('proto GetContactContext: NOT_FOUND ("CONTACT_NOT_FOUND")', SERVICE)
def test_unknown_contact_context_is_not_found(target: Target) -> None:
    """GetContactContext of a contact the store knows nothing of is NOT_FOUND / CONTACT_NOT_FOUND."""
    outcome = call(target, "GetContactContext", contact_id=fresh_id())
    expect_error(outcome, Status.NOT_FOUND, target.address, code="CONTACT_NOT_FOUND")


@check('proto GetRelatedEntities: NOT_FOUND ("ENTITY_NOT_FOUND")', SERVICE)
def test_unknown_entity_is_not_found(target: Target) -> None:
    """GetRelatedEntities of an id no node has is NOT_FOUND / ENTITY_NOT_FOUND."""
    outcome = call(target, "GetRelatedEntities", entity_id=fresh_id())
    expect_error(outcome, Status.NOT_FOUND, target.address, code="ENTITY_NOT_FOUND")


@check("proto SearchMemories: 'A contact with no memories is OK with no results'", SERVICE)
def test_search_of_unknown_contact_is_empty_ok(target: Target) -> None:
    """SearchMemories for a contact with no memories is OK, empty, total_count 0."""
    response = expect_ok(call(target, "SearchMemories", _search()), target.address)
    if response.memories or response.total_count:
        fail(
            f"expected no results, got {len(response.memories)} (total_count {response.total_count})",
            None,
            target.address,
        )
