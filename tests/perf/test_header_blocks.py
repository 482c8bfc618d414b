"""The HPACK decoder of the server and of the SDK's channel reuses a header block it has just
decoded (ventros._transport.RepeatedHeaderBlocks) only while that is exactly what decoding it
again would give: checked against a plain hpack Decoder on header sets that do and do not change
the dynamic table, and over real gRPC with metadata, statuses and trailers that repeat and change
from call to call."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from hpack import Decoder, Encoder, NeverIndexedHeaderTuple, OversizedHeaderListError
from ventros import MemoryClient, NotFoundError
from ventros._transport import RepeatedHeaderBlocks
from ventros.memory import Memory, MemoryServiceBase, SearchMemoriesRequest, SearchMemoriesResponse
from ventros_server.context import current_call
from ventros_server.server import build_server


class CountingDecoder(Decoder):
    """hpack's Decoder, counting the blocks it really decodes."""

    def __init__(self) -> None:
        super().__init__()
        self.decoded = 0

    def decode(self, data: bytes, raw: bool = False) -> Any:
        self.decoded += 1
        return super().decode(data, raw)


def request(path: str, **extra: str) -> list[tuple[str, str]]:
    return [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "127.0.0.1:50051"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        *extra.items(),
    ]


def header_sets() -> list[Any]:
    """Repeats, values that enter the dynamic table, a never-indexed value, repeats again."""
    search = "/ventros.memory.MemoryService/SearchMemories"
    agents = "/ventros.agents.AgentService/ListAvailableAgents"
    sets: list[Any] = [request(search)] * 4
    sets += [request(search, **{"grpc-timeout": f"{n}m"}) for n in range(50)]  # a new entry each
    sets += [request(agents)] * 3 + [request(search)] * 3
    sets += [[*request(search), NeverIndexedHeaderTuple("authorization", "Bearer k")]] * 3
    sets += [request(search, **{"x-big": "v" * 5000})] * 2  # larger than the whole table
    sets += [request(search)] * 3
    return sets


def test_decoding_matches_hpack_block_for_block():
    encoder, plain, cached = Encoder(), Decoder(), RepeatedHeaderBlocks(CountingDecoder())
    for i, headers in enumerate(header_sets()):
        if i == 40:  # the peer shrinks its table: a size update, entries evicted
            encoder.header_table_size = 512
        block = encoder.encode(headers)
        raw = i % 3 != 0  # h2 asks for raw bytes; the str form is cached apart
        assert cached.decode(block, raw=raw) == plain.decode(block, raw=raw), i
    assert cached.header_table.dynamic_entries == plain.header_table.dynamic_entries


def _literal_indexed(name: bytes, value: bytes) -> bytes:
    """HPACK "literal header field with incremental indexing", new name, no Huffman."""
    return b"\x40" + bytes([len(name)]) + name + bytes([len(value)]) + value


def test_blocks_whose_meaning_changed_with_the_table_are_decoded_again():
    """Hand-made blocks where the same bytes mean other headers: an indexed reference to the
    newest entry after an eviction kept the table's length, and an insertion sent twice (an
    encoder may add a header that is already in the table)."""
    newest, second = b"\xbe", b"\xbf"  # indexed fields 62 and 63: the dynamic table's first two
    blocks = [
        b"\x3f\x31" + _literal_indexed(b"a", b"1"),  # table size 80: room for two entries
        _literal_indexed(b"b", b"2"),
        newest,
        _literal_indexed(b"c", b"3"),  # evicts a: same length, other entries
        newest,
        _literal_indexed(b"d", b"4"),
        _literal_indexed(b"d", b"4"),  # the same bytes again: a second entry d
        second,
        newest,
    ]
    plain, cached = Decoder(), RepeatedHeaderBlocks(Decoder())
    for i, block in enumerate(blocks):
        assert cached.decode(block, raw=True) == plain.decode(block, raw=True), i
        assert cached.header_table.dynamic_entries == plain.header_table.dynamic_entries, i


def test_a_repeated_block_is_decoded_once_while_the_table_is_unchanged():
    encoder, counting = Encoder(), CountingDecoder()
    cached = RepeatedHeaderBlocks(counting)
    headers = request("/ventros.agents.AgentService/ListAvailableAgents")
    blocks = [encoder.encode(headers) for _ in range(10)]
    decoded = [cached.decode(b, raw=True) for b in blocks]
    assert all(d == decoded[1] for d in decoded[1:])
    assert len(set(blocks[1:])) == 1  # from the second call on, the same bytes
    assert counting.decoded == 2  # the first (adds entries) and the first repeat
    cached.decode(encoder.encode([*headers, ("grpc-timeout", "5m")]), raw=True)  # adds an entry
    cached.decode(encoder.encode(headers), raw=True)
    assert counting.decoded == 4  # the table changed: decoded again


def test_settings_h2_applies_reach_the_decoder_and_apply_to_repeated_blocks():
    encoder, counting = Encoder(), CountingDecoder()
    cached = RepeatedHeaderBlocks(counting)
    cached.max_allowed_table_size = 8192
    assert counting.max_allowed_table_size == 8192
    headers = request("/ventros.agents.AgentService/ListAvailableAgents")
    cached.decode(encoder.encode(headers), raw=True)
    repeat = encoder.encode(headers)
    cached.decode(repeat, raw=True)  # kept
    cached.max_header_list_size = 64  # smaller than these headers
    assert counting.max_header_list_size == 64
    with pytest.raises(OversizedHeaderListError):
        cached.decode(repeat, raw=True)


class TagEcho(MemoryServiceBase):
    async def search_memories(self, message: SearchMemoriesRequest) -> SearchMemoriesResponse:
        call = current_call()
        timeout = call.time_remaining()
        return SearchMemoriesResponse(
            memories=[Memory(id=call.metadata.get("x-tag", ""), content="deadline" if timeout else "")]
        )


async def _tags_seen(calls: list[tuple[str, float | None]]) -> list[tuple[str, str]]:
    server, _ = build_server([TagEcho()])
    await server.start("127.0.0.1", 0)
    port = server._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    seen = []
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            search = channel.unary_unary(
                "/ventros.memory.MemoryService/SearchMemories",
                request_serializer=bytes,
                response_deserializer=SearchMemoriesResponse.parse,
            )
            body = SearchMemoriesRequest(contact_id="c", query="q")
            for tag, timeout in calls:
                answer = await search(body, metadata=(("x-tag", tag),), timeout=timeout)
                seen.append((answer.memories[0].id, answer.memories[0].content))
    finally:
        server.close()
        await server.wait_closed()
    return seen


def test_each_call_sees_its_own_metadata_over_grpc():
    calls = [("a", None)] * 3 + [(f"t{n}", None) for n in range(5)] + [("a", None)] * 3
    calls += [("b", 10.0 + n) for n in range(3)] + [("a", None)] * 2
    seen = asyncio.run(_tags_seen(calls))
    assert seen == [(tag, "deadline" if timeout else "") for tag, timeout in calls]


class QueryEcho(MemoryServiceBase):
    """Answers with the query as a memory id, or NOT_FOUND naming it when it starts with "no-"."""

    async def search_memories(self, message: SearchMemoriesRequest) -> SearchMemoriesResponse:
        if message.query.startswith("no-"):
            raise NotFoundError.of("CONTACT_NOT_FOUND", f"nothing for {message.query}")
        return SearchMemoriesResponse(memories=[Memory(id=message.query)])


async def _sdk_outcomes(queries: list[str]) -> list[str]:
    server, _ = build_server([QueryEcho()])
    await server.start("127.0.0.1", 0)
    port = server._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    outcomes = []
    try:
        async with MemoryClient(f"127.0.0.1:{port}") as client:
            for query in queries:
                try:
                    found = await client.search_memories(contact_id="c", query=query, timeout=10)
                    outcomes.append(found.memories[0].id)
                except NotFoundError as exc:
                    outcomes.append(exc.message)
    finally:
        server.close()
        await server.wait_closed()
    return outcomes


def test_the_sdk_sees_each_calls_own_status_and_trailers():
    """The SDK's channel reuses response header blocks too: repeated successes, then errors
    whose trailers differ in grpc-message, then successes again."""
    queries = ["a", "a", "a", "no-1", "no-2", "no-2", "a", "b", "no-1", "a"]
    expected = [f"nothing for {q}" if q.startswith("no-") else q for q in queries]
    assert asyncio.run(_sdk_outcomes(queries)) == expected
