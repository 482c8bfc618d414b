"""The server core: health, reflection, negotiation and error mapping on a real socket."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import sys
from pathlib import Path

import pytest
from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse
from ventros import InternalError, MemoryClient, RetryPolicy
from ventros._wire import VentrosCodec, VentrosStatusDetailsCodec, install
from ventros.common import ErrorDetails
from ventros.memory import MemoryServiceBase, SearchMemoriesRequest, SearchMemoriesResponse
from ventros_server.testing import running

from .servicers import EchoMemory, TinyAgents

BUF = shutil.which("buf") or str(Path(sys.executable).parent / "buf")


def _channel(address: str) -> Channel:
    install()
    host, port = address.rsplit(":", 1)
    return Channel(host, int(port), codec=VentrosCodec(), status_details_codec=VentrosStatusDetailsCodec())


@pytest.mark.parametrize(
    "service", ["", "agent", "memory", "ventros.agents.AgentService", "ventros.memory.MemoryService"]
)
async def test_health_serves_full_names_aliases_and_overall(service):
    async with running([TinyAgents(), EchoMemory()]) as address:
        channel = _channel(address)
        try:
            reply = await HealthStub(channel).Check(HealthCheckRequest(service=service))
        finally:
            channel.close()
    assert reply.status == HealthCheckResponse.SERVING


async def test_health_reports_not_serving_and_unknown_services():
    from ventros_server.server import build_server

    server, statuses = build_server([EchoMemory()])
    statuses["ventros.memory.MemoryService"].set(False)
    await server.start("127.0.0.1", 0)
    port = server._server.sockets[0].getsockname()[1]
    channel = _channel(f"127.0.0.1:{port}")
    try:
        stub = HealthStub(channel)
        assert (
            await stub.Check(HealthCheckRequest(service="memory"))
        ).status == HealthCheckResponse.NOT_SERVING
        with pytest.raises(GRPCError) as info:
            await stub.Check(HealthCheckRequest(service="agent"))
        assert info.value.status == Status.NOT_FOUND
    finally:
        channel.close()
        server.close()
        await server.wait_closed()


async def _buf_curl(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        BUF,
        "curl",
        "--protocol",
        "grpc",
        "--http2-prior-knowledge",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_buf_curl_lists_and_calls_services_through_reflection():
    async with running([TinyAgents(), EchoMemory()]) as address:
        code, listing, err = await _buf_curl("--list-methods", f"http://{address}")
        assert code == 0, err
        code, reply, err = await _buf_curl(
            "-d",
            json.dumps({"contactId": "c", "query": "via reflection"}),
            f"http://{address}/ventros.memory.MemoryService/SearchMemories",
        )
    assert code == 0, err
    for method in (
        "ventros.agents.AgentService/ExecuteAgentBatch",
        "ventros.memory.MemoryService/SearchMemories",
        "grpc.health.v1.Health/Check",
    ):
        assert method in listing
    assert json.loads(reply)["memories"][0]["content"] == "via reflection"


async def test_unknown_method_is_unimplemented():
    async with running([EchoMemory()]) as address:
        channel = _channel(address)
        try:
            with pytest.raises(GRPCError) as info:
                async with channel.request(
                    "/ventros.memory.MemoryService/Forget",
                    Cardinality.UNARY_UNARY,
                    SearchMemoriesRequest,
                    SearchMemoriesResponse,
                ) as stream:
                    await stream.send_message(SearchMemoriesRequest(), end=True)
                    await stream.recv_message()
        finally:
            channel.close()
    assert info.value.status == Status.UNIMPLEMENTED


class _RawBytes:
    """A "message" whose encoding is whatever bytes the test chooses."""

    def __init__(self, data: bytes) -> None:
        self.data = data


class _RawCodec(VentrosCodec):
    def encode(self, message, message_type):  # type: ignore[no-untyped-def]
        return message.data if isinstance(message, _RawBytes) else super().encode(message, message_type)


async def test_malformed_message_is_invalid_argument_with_details():
    async with running([EchoMemory()]) as address:
        install()
        host, port = address.rsplit(":", 1)
        channel = Channel(
            host, int(port), codec=_RawCodec(), status_details_codec=VentrosStatusDetailsCodec()
        )
        try:
            with pytest.raises(GRPCError) as info:
                async with channel.request(
                    "/ventros.memory.MemoryService/SearchMemories",
                    Cardinality.UNARY_UNARY,
                    _RawBytes,
                    SearchMemoriesResponse,
                ) as stream:
                    await stream.send_message(_RawBytes(b"\x0a\xff\xff\xff"), end=True)
                    await stream.recv_message()
        finally:
            channel.close()
    assert info.value.status == Status.INVALID_ARGUMENT
    assert isinstance(info.value.details[0], ErrorDetails)
    assert info.value.details[0].code == "MALFORMED_MESSAGE"


async def test_every_response_advertises_gzip():
    async with running([EchoMemory()]) as address:
        channel = _channel(address)
        try:
            async with channel.request(
                "/ventros.memory.MemoryService/SearchMemories",
                Cardinality.UNARY_UNARY,
                SearchMemoriesRequest,
                SearchMemoriesResponse,
            ) as stream:
                await stream.send_message(SearchMemoriesRequest(contact_id="c", query="q"), end=True)
                await stream.recv_message()
                headers = dict(stream._stream.headers)
        finally:
            channel.close()
    assert headers["grpc-accept-encoding"] == "identity,gzip"


class Crashing(MemoryServiceBase):
    async def search_memories(self, message):  # type: ignore[no-untyped-def]
        raise ZeroDivisionError("boom")


async def test_unexpected_handler_errors_are_internal_never_unknown():
    async with (
        running([Crashing()]) as address,
        MemoryClient(address, retry=RetryPolicy(attempts=1)) as client,
    ):
        with pytest.raises(InternalError) as info:
            await client.search_memories(contact_id="c", query="q")
    assert info.value.code == "INTERNAL"
    assert "boom" not in info.value.message  # internals are logged, not leaked


class Gauge(MemoryServiceBase):
    """Counts how many calls run at once."""

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0

    async def search_memories(self, message):  # type: ignore[no-untyped-def]
        self.running += 1
        self.peak = max(self.peak, self.running)
        await asyncio.sleep(0.05)
        self.running -= 1
        return SearchMemoriesResponse(total_count=1)


async def test_concurrent_streams_per_connection_are_capped_and_clients_queue():
    gauge = Gauge()
    async with running([gauge], max_concurrent_streams=3) as address, MemoryClient(address) as client:
        replies = await asyncio.gather(
            *(client.search_memories(contact_id="c", query="q", timeout=10) for _ in range(12))
        )
    assert [r.total_count for r in replies] == [1] * 12
    assert gauge.peak == 3


def test_listen_socket_is_tcp_so_asyncio_disables_nagle():
    # asyncio sets TCP_NODELAY on accepted connections only for IPPROTO_TCP listeners; without
    # it every unary call waited ~45 ms for a delayed ACK (measured, see docs/benchmarks.md).
    from ventros_server.server import listen_socket

    sock = listen_socket("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()
