"""ventros_server.multiproc: SO_REUSEPORT workers, TCP_NODELAY, coalesced writes (behaviour only)."""

from __future__ import annotations

import asyncio
import socket

import pytest
from grpclib.protocol import H2Protocol
from ventros import AgentClient
from ventros._transport import CoalescingTransport
from ventros_server import multiproc
from ventros_server import server as server_module
from ventros_server.server import build_server

from tests.foundation.servicers import TinyAgents


@pytest.fixture(autouse=True)
def _restore_gc():
    """serve_one tunes the process's GC (server.tune_gc): give pytest its own settings back."""
    import gc

    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def make_services() -> list:
    """Module-level (picklable) factory, as start_workers requires."""
    return [TinyAgents()]


def test_reuse_port_socket_is_tcp_so_asyncio_sets_nodelay():
    sock = multiproc.reuse_port_socket("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP  # asyncio only sets TCP_NODELAY when it says so
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        port = sock.getsockname()[1]
        second = multiproc.reuse_port_socket("127.0.0.1", port)  # a second worker shares the port
        second.close()
    finally:
        sock.close()


async def test_serve_one_answers_unary_and_streaming_calls_with_coalesced_writes():
    stop, ready = asyncio.Event(), asyncio.Event()
    reservation = multiproc.reuse_port_socket("127.0.0.1", 0, listen=False)
    port = reservation.getsockname()[1]
    task = asyncio.ensure_future(
        multiproc.serve_one(make_services, "127.0.0.1", port, stop=stop, on_ready=ready.set, coalesce=True)
    )
    try:
        await asyncio.wait_for(ready.wait(), 10)
        async with AgentClient(f"127.0.0.1:{port}") as client:
            results = await asyncio.gather(*(client.list_agents(timeout=5) for _ in range(20)))
            assert all(r.agents[0].type == "EchoAgent" for r in results)
            chunks = [c.content async for c in client.stream_agent_execution(message="a b c", timeout=5)]
            assert chunks == ["a", "b", "c", "done"]
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        reservation.close()


async def test_coalescing_transport_sends_one_write_per_loop_iteration():
    written: list[bytes] = []

    class RecordingTransport:
        closed = False

        def write(self, data: bytes) -> None:
            written.append(data)

        def is_closing(self) -> bool:
            return self.closed

        def close(self) -> None:
            self.closed = True

        def get_extra_info(self, name: str) -> str:
            return f"info:{name}"

    transport = CoalescingTransport(RecordingTransport(), asyncio.get_running_loop())
    transport.write(b"HEADERS")
    transport.write(b"")
    transport.write(b"DATA")
    transport.write(b"TRAILERS")
    assert written == []
    await asyncio.sleep(0)
    assert written == [b"HEADERSDATATRAILERS"]
    transport.write(b"late")
    transport.close()  # flushes first
    assert written == [b"HEADERSDATATRAILERS", b"late"]
    assert transport.is_closing()
    assert transport.get_extra_info("peername") == "info:peername"


@pytest.mark.parametrize("coalesce", [True, False])
async def test_build_server_coalesces_writes_unless_told_not_to(coalesce):
    """The protocol stays grpclib's own (app.py drains connections through it); only the
    transport it writes to is wrapped, and only when coalescing."""
    server, _ = build_server(make_services(), coalesce_writes=coalesce)
    protocols = []
    factory = server._protocol_factory

    def recording_factory():
        protocols.append(factory())
        return protocols[-1]

    server._protocol_factory = recording_factory
    await server.start("127.0.0.1", 0)
    try:
        port = server._server.sockets[0].getsockname()[1]
        async with AgentClient(f"127.0.0.1:{port}") as client:
            assert (await client.list_agents(timeout=5)).agents[0].type == "EchoAgent"
        (protocol,) = protocols
        assert isinstance(protocol, H2Protocol)
        wrapped = isinstance(protocol.connection._transport, CoalescingTransport)
        assert wrapped is coalesce
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.timeout(90)
def test_start_workers_serves_one_port_from_two_processes():
    with multiproc.start_workers(make_services, "127.0.0.1", 0, workers=2, use_uvloop=False) as group:
        assert len(set(group.pids)) == 2 and group.alive()

        async def calls() -> list[str]:
            out = []
            for _ in range(6):  # separate connections, spread by the kernel
                async with AgentClient(group.address) as client:
                    out.append((await client.list_agents(timeout=10)).agents[0].type)
            return out

        assert asyncio.run(calls()) == ["EchoAgent"] * 6
    assert not any(p.is_alive() for p in group.processes)


def test_start_workers_rejects_a_negative_worker_count():
    with pytest.raises(ValueError):
        multiproc.start_workers(make_services, "127.0.0.1", 0, workers=-1)


def test_run_uses_uvloop_only_when_asked_and_installed():
    async def loop_type() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert multiproc.run(loop_type(), use_uvloop=False).startswith("asyncio")
    if multiproc.uvloop_available():
        assert multiproc.run(loop_type(), use_uvloop=True).startswith("uvloop")


def test_tune_gc_freezes_what_exists_and_collects_less_often():
    import gc

    gc.unfreeze()
    gc.set_threshold(700, 10, 10)  # CPython's defaults
    server_module.tune_gc()
    assert gc.get_threshold() == server_module.GC_THRESHOLDS
    assert server_module.GC_THRESHOLDS[0] > 700
    assert gc.get_freeze_count() > 0
