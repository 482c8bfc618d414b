"""Garbage on the socket: the server answers only documented codes and stays up (a bounded run).

The longer run is `python benchmarks/fuzz_transport.py --minutes N`.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ventros import MemoryClient
from ventros.memory import SearchMemoriesRequest
from ventros_server.testing import running

from .rawh2 import grpc_frame, h2_request, request_headers, send_raw_bytes
from .servicers import EchoMemory

SEARCH = "/ventros.memory.MemoryService/SearchMemories"
#: Codes docs/contract.md lets a server answer with; UNKNOWN (2) is never one of them.
DOCUMENTED = {0, 3, 4, 5, 7, 8, 12, 13, 14, 16}
VALID_BODY = grpc_frame(bytes(SearchMemoriesRequest(contact_id="c", query="q")))
FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@pytest.fixture
async def address():
    async with running([EchoMemory()], max_message_bytes=1 << 20) as addr:
        yield addr


async def _still_serving(address: str) -> None:
    async with MemoryClient(address) as client:
        reply = await client.search_memories(contact_id="c", query="still here", timeout=5)
    assert reply.memories[0].content == "still here"


@pytest.mark.parametrize(
    ("overrides", "body", "expected"),
    [
        ({"content-type": "text/html"}, VALID_BODY, 3),
        ({"content-type": "application/grpc+json"}, VALID_BODY, 3),
        ({"grpc-timeout": "soon"}, VALID_BODY, 3),
        ({"grpc-timeout": "99999999999S"}, VALID_BODY, 3),
        ({"grpc-timeout": "0S"}, VALID_BODY, 4),
        ({"grpc-timeout": "1n"}, VALID_BODY, 4),
        ({"grpc-encoding": "br"}, VALID_BODY, 12),
        ({":path": "/nope.Service/Nope"}, VALID_BODY, 12),
        ({}, grpc_frame(b"\x0a\x05abc", declared=100), 3),  # truncated message
        ({}, grpc_frame(b"", declared=2 << 20), 8),  # length prefix above the cap
        ({}, grpc_frame(b"\xff\xff\xff"), 3),  # not protobuf
        ({"grpc-encoding": "gzip"}, grpc_frame(b"not gzip", compressed=True), 3),
        ({}, grpc_frame(b"abc", compressed=True), 13),  # compressed flag without grpc-encoding
        ({"x-huge": "v" * 60_000}, VALID_BODY, 0),
    ],
    ids=[
        "html", "json-subtype", "bogus-timeout", "overlong-timeout", "zero-timeout", "expired-timeout", "brotli", "unknown-path",
        "truncated", "over-cap-prefix", "garbage-proto", "bad-gzip", "flag-without-encoding", "huge-header",
    ],
)  # fmt: skip
async def test_malformed_requests_get_documented_codes(address, overrides, body, expected):
    response = await h2_request(address, request_headers(SEARCH, **overrides), body)
    assert response.grpc_status == expected, response
    await _still_serving(address)


@FUZZ
@given(data=st.binary(min_size=1, max_size=2048))
async def test_random_bytes_on_the_socket(address, data):
    await send_raw_bytes(address, data, timeout=2)
    await _still_serving(address)


@FUZZ
@given(
    body=st.binary(max_size=512),
    timeout=st.one_of(st.none(), st.text(max_size=12)),
    encoding=st.one_of(st.none(), st.sampled_from(["gzip", "identity", "deflate", "zstd", ""])),
)
async def test_random_grpc_requests_never_get_unknown(address, body, timeout, encoding):
    headers = request_headers(SEARCH, **{"grpc-timeout": timeout, "grpc-encoding": encoding})
    response = await h2_request(address, headers, grpc_frame(body))
    if not response.closed:
        assert response.grpc_status in DOCUMENTED, response
    await _still_serving(address)
