"""Every RPC rejects what the proto comments forbid: INVALID_ARGUMENT + ErrorDetails naming the field."""

from __future__ import annotations

from typing import Any

import pytest
import ventros
from ventros import memory as pb

from .conftest import JOAO, OTHER

CID = JOAO
LONG = "x" * 4097

SEARCH_CASES: list[tuple[dict[str, Any], str, str]] = [
    ({"query": "hi"}, "contact_id", "MISSING_FIELD"),
    ({"contact_id": "not-a-uuid", "query": "hi"}, "contact_id", "INVALID_FIELD"),
    ({"contact_id": CID}, "query", "MISSING_FIELD"),
    ({"contact_id": CID, "query": "   "}, "query", "MISSING_FIELD"),
    ({"contact_id": CID, "query": "é" * 2049}, "query", "OUT_OF_RANGE"),
    ({"contact_id": CID, "query": "hi", "limit": -1}, "limit", "OUT_OF_RANGE"),
    ({"contact_id": CID, "query": "hi", "limit": 101}, "limit", "OUT_OF_RANGE"),
    ({"contact_id": CID, "query": "hi", "memory_types": ["t"] * 33}, "memory_types", "OUT_OF_RANGE"),
    (
        {"contact_id": CID, "query": "hi", "include_fields": ["content", "vector"]},
        "include_fields[1]",
        "INVALID_FIELD",
    ),
    ({"contact_id": CID, "query": "", "mode": pb.SearchMode.KEYWORD_ONLY}, "query", "MISSING_FIELD"),
]


@pytest.mark.parametrize(("fields", "field", "code"), SEARCH_CASES)
async def test_search_rejects(
    client: ventros.MemoryClient, fields: dict[str, Any], field: str, code: str
) -> None:
    with pytest.raises(ventros.InvalidArgumentError) as info:
        await client.search_memories(**fields)
    assert info.value.metadata["field"] == field
    assert info.value.code == code
    assert info.value.suggestions


async def test_search_rejects_unknown_mode(client: ventros.MemoryClient) -> None:
    raw = bytes(pb.SearchMemoriesRequest(contact_id=CID, query="hi")) + b"\x28\x07"  # field 5 = 7
    request = pb.SearchMemoriesRequest.parse(raw)
    with pytest.raises(ventros.InvalidArgumentError) as info:
        await client.search_memories(request)
    assert info.value.metadata["field"] == "mode"


async def test_graph_only_needs_no_query(client: ventros.MemoryClient) -> None:
    found = await client.search_memories(contact_id=CID, mode=pb.SearchMode.GRAPH_ONLY)
    assert found.total_count == 0 and found.metadata is not None


RELATED_OK = {"entity_type": "product", "entity_id": "p-1"}
STORE_CASES: list[tuple[dict[str, Any], str, str]] = [
    ({"content": "c", "memory_type": "fact"}, "contact_id", "MISSING_FIELD"),
    ({"contact_id": "123", "content": "c", "memory_type": "fact"}, "contact_id", "INVALID_FIELD"),
    ({"contact_id": CID, "memory_type": "fact"}, "content", "MISSING_FIELD"),
    ({"contact_id": CID, "content": " \n ", "memory_type": "fact"}, "content", "MISSING_FIELD"),
    ({"contact_id": CID, "content": "x" * 16385, "memory_type": "fact"}, "content", "OUT_OF_RANGE"),
    ({"contact_id": CID, "content": "c"}, "memory_type", "MISSING_FIELD"),
    ({"contact_id": CID, "content": "c", "memory_type": "AgentInsight"}, "memory_type", "INVALID_FIELD"),
    ({"contact_id": CID, "content": "c", "memory_type": "a" * 65}, "memory_type", "OUT_OF_RANGE"),
    (
        {
            "contact_id": CID,
            "content": "c",
            "memory_type": "fact",
            "metadata": {f"k{i}": "v" for i in range(65)},
        },
        "metadata",
        "OUT_OF_RANGE",
    ),
    (
        {"contact_id": CID, "content": "c", "memory_type": "fact", "metadata": {"": "v"}},
        "metadata['']",
        "OUT_OF_RANGE",
    ),
    (
        {"contact_id": CID, "content": "c", "memory_type": "fact", "metadata": {"k": "v" * 4097}},
        "metadata['k']",
        "OUT_OF_RANGE",
    ),
    (
        {
            "contact_id": CID,
            "content": "c",
            "memory_type": "fact",
            "related": [pb.RelatedEntity(**RELATED_OK)] * 33,
        },
        "related",
        "OUT_OF_RANGE",
    ),
    (
        {
            "contact_id": CID,
            "content": "c",
            "memory_type": "fact",
            "related": [pb.RelatedEntity(entity_id="p")],
        },
        "related[0].entity_type",
        "MISSING_FIELD",
    ),
    (
        {
            "contact_id": CID,
            "content": "c",
            "memory_type": "fact",
            "related": [pb.RelatedEntity(**RELATED_OK), pb.RelatedEntity(entity_type="product")],
        },
        "related[1].entity_id",
        "MISSING_FIELD",
    ),
    (
        {
            "contact_id": CID,
            "content": "c",
            "memory_type": "fact",
            "related": [pb.RelatedEntity(entity_type="product", entity_id="bad id!")],
        },
        "related[0].entity_id",
        "INVALID_FIELD",
    ),
    (
        {
            "contact_id": CID,
            "content": "c",
            "memory_type": "fact",
            "related": [pb.RelatedEntity(entity_type="product", entity_id="p" * 129)],
        },
        "related[0].entity_id",
        "OUT_OF_RANGE",
    ),
    (
        {
            "contact_id": CID,
            "content": "c",
            "memory_type": "fact",
            "related": [pb.RelatedEntity(**RELATED_OK, strength=1.5)],
        },
        "related[0].strength",
        "OUT_OF_RANGE",
    ),
    (
        {
            "contact_id": CID,
            "content": "c",
            "memory_type": "fact",
            "related": [pb.RelatedEntity(**RELATED_OK, relationship="Bought It")],
        },
        "related[0].relationship",
        "INVALID_FIELD",
    ),
]


@pytest.mark.parametrize(("fields", "field", "code"), STORE_CASES)
async def test_store_rejects(
    client: ventros.MemoryClient, fields: dict[str, Any], field: str, code: str
) -> None:
    with pytest.raises(ventros.InvalidArgumentError) as info:
        await client.store_memory(**fields)
    assert info.value.metadata["field"] == field
    assert info.value.code == code
    assert info.value.suggestions


CONTEXT_CASES: list[tuple[dict[str, Any], str, str]] = [
    ({}, "contact_id", "MISSING_FIELD"),
    ({"contact_id": "550e8400e29b41d4a716446655440000"}, "contact_id", "INVALID_FIELD"),
    ({"contact_id": CID, "history_limit": -5}, "history_limit", "OUT_OF_RANGE"),
    ({"contact_id": CID, "history_limit": 501}, "history_limit", "OUT_OF_RANGE"),
]


@pytest.mark.parametrize(("fields", "field", "code"), CONTEXT_CASES)
async def test_context_rejects(
    client: ventros.MemoryClient, fields: dict[str, Any], field: str, code: str
) -> None:
    with pytest.raises(ventros.InvalidArgumentError) as info:
        await client.get_contact_context(**fields)
    assert info.value.metadata["field"] == field
    assert info.value.code == code


RELATED_CASES: list[tuple[dict[str, Any], str, str]] = [
    ({}, "entity_id", "MISSING_FIELD"),
    ({"entity_id": "has space"}, "entity_id", "INVALID_FIELD"),
    ({"entity_id": "p-1", "max_depth": 6}, "max_depth", "OUT_OF_RANGE"),
    ({"entity_id": "p-1", "max_depth": -1}, "max_depth", "OUT_OF_RANGE"),
    ({"entity_id": "p-1", "limit": 101}, "limit", "OUT_OF_RANGE"),
    ({"entity_id": "p-1", "limit": -1}, "limit", "OUT_OF_RANGE"),
    ({"entity_id": "p-1", "entity_type": "Product"}, "entity_type", "INVALID_FIELD"),
]


@pytest.mark.parametrize(("fields", "field", "code"), RELATED_CASES)
async def test_related_rejects(
    client: ventros.MemoryClient, fields: dict[str, Any], field: str, code: str
) -> None:
    with pytest.raises(ventros.InvalidArgumentError) as info:
        await client.get_related_entities(**fields)
    assert info.value.metadata["field"] == field
    assert info.value.code == code


async def test_not_found_statuses(client: ventros.MemoryClient) -> None:
    with pytest.raises(ventros.NotFoundError) as info:
        await client.get_contact_context(contact_id=CID)
    assert info.value.code == "CONTACT_NOT_FOUND"
    with pytest.raises(ventros.NotFoundError) as info2:
        await client.get_related_entities(entity_id="nothing-here")
    assert info2.value.code == "ENTITY_NOT_FOUND"


async def test_uuid_any_case_is_accepted(client: ventros.MemoryClient) -> None:
    stored = await client.store_memory(contact_id=CID.upper(), content="Likes blue", memory_type="preference")
    assert stored.success
    found = await client.search_memories(contact_id=CID, query="blue", mode=pb.SearchMode.KEYWORD_ONLY)
    assert [m.id for m in found.memories] == [stored.memory_id]


@pytest.mark.parametrize("content", ["😀" * 4096, "🙂", "—…—"])
async def test_content_without_indexable_words_is_stored(client, content):
    # Found by the conformance suite: no keyword terms used to insert a NULL posting (INTERNAL).
    stored = await client.store_memory(contact_id=OTHER, content=content, memory_type="fact")
    assert stored.success
    context = await client.get_contact_context(contact_id=OTHER)
    assert content in [m.content for m in context.recent_memories]
