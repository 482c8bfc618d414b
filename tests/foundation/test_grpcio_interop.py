"""A real grpcio client and server talking to our grpclib server and SDK (issue: foundation §5, §6)."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_status import rpc_status
from ventros import MemoryClient
from ventros_server.testing import running

from .servicers import EchoMemory

SEARCH = "/ventros.memory.MemoryService/SearchMemories"


def _search(channel: grpc.Channel, pb2, request, **kwargs):
    call = channel.unary_unary(
        SEARCH,
        request_serializer=pb2["memory"].SearchMemoriesRequest.SerializeToString,
        response_deserializer=pb2["memory"].SearchMemoriesResponse.FromString,
    )
    return call.with_call(request, timeout=5, **kwargs)


async def _in_thread(func, *args, **kwargs):
    # grpcio's blocking client must not block the loop our grpclib server runs on.
    return await asyncio.to_thread(func, *args, **kwargs)


async def test_grpcio_client_decodes_error_details(pb2):
    async with running([EchoMemory()]) as address:
        with grpc.insecure_channel(address) as channel:
            request = pb2["memory"].SearchMemoriesRequest(query="hello")
            with pytest.raises(grpc.RpcError) as info:
                await _in_thread(_search, channel, pb2, request)
    call = info.value
    assert call.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(call)
    assert status is not None, "no grpc-status-details-bin trailer"
    details = pb2["errors"].ErrorDetails()
    assert status.details[0].Unpack(details)
    assert details.code == "MISSING_FIELD"
    assert details.metadata["field"] == "contact_id"
    assert details.suggestions == ["Pass the contact's UUID."]


@pytest.mark.parametrize("compression", [grpc.Compression.NoCompression, grpc.Compression.Gzip])
async def test_grpcio_client_call_succeeds(pb2, compression):
    async with running([EchoMemory()]) as address:
        with grpc.insecure_channel(address, compression=compression) as channel:
            request = pb2["memory"].SearchMemoriesRequest(contact_id="c", query="olá " * 500)
            response, _call = await _in_thread(_search, channel, pb2, request)
    assert response.memories[0].content == "olá " * 500


async def test_unsupported_encoding_is_unimplemented(pb2):
    async with running([EchoMemory()]) as address:
        with grpc.insecure_channel(address, compression=grpc.Compression.Deflate) as channel:
            request = pb2["memory"].SearchMemoriesRequest(contact_id="c", query="x")
            with pytest.raises(grpc.RpcError) as info:
                await _in_thread(_search, channel, pb2, request)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "deflate" in info.value.details()


async def test_sdk_reads_gzip_responses_from_a_grpcio_server(pb2):
    memory_pb2 = pb2["memory"]

    def search(request, context):
        context.set_compression(grpc.Compression.Gzip)
        return memory_pb2.SearchMemoriesResponse(
            memories=[memory_pb2.Memory(id="m", content=request.query * 100)], total_count=1
        )

    handler = grpc.method_handlers_generic_handler(
        "ventros.memory.MemoryService",
        {
            "SearchMemories": grpc.unary_unary_rpc_method_handler(
                search,
                request_deserializer=memory_pb2.SearchMemoriesRequest.FromString,
                response_serializer=memory_pb2.SearchMemoriesResponse.SerializeToString,
            )
        },
    )
    server = grpc.aio.server(compression=grpc.Compression.Gzip)
    server.add_generic_rpc_handlers([handler])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with MemoryClient(f"127.0.0.1:{port}") as client:
            response = await client.search_memories(contact_id="c", query="abc", timeout=5)
    finally:
        await server.stop(None)
    assert response.memories[0].content == "abc" * 100


async def test_grpcio_sees_unimplemented_with_details_for_an_unknown_method(pb2):
    async with running([EchoMemory()]) as address:
        with grpc.insecure_channel(address) as channel:
            call = channel.unary_unary("/ventros.memory.MemoryService/Forget")
            with pytest.raises(grpc.RpcError) as info:
                await _in_thread(call.with_call, b"", timeout=5)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    details = pb2["errors"].ErrorDetails()
    assert rpc_status.from_call(info.value).details[0].Unpack(details)
    assert details.code == "UNKNOWN_METHOD"
