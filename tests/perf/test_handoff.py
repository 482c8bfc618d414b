"""Connection steering (ventros_server.handoff) between two real app servers in this process:
an "owner" that alone listens and a "worker" it hands connections to over a Unix socket, both
serving counting servicers, so each test sees which server answered. Real gRPC clients over
127.0.0.1; `ventros serve --workers N` with real processes is tested in tests/cli."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from ventros import MemoryClient, RetryPolicy, TLSConfig, UnavailableError
from ventros_server.app import ServeConfig, VentrosApp
from ventros_server.handoff import Steering, choose

from ..hardening.conftest import Pki, pki  # noqa: F401 - the fixture
from ..hardening.servicers import CountingMemory

ONCE = RetryPolicy(attempts=1)


def test_the_owner_takes_ties_and_a_weighted_share():
    owner, workers = 0, [0, 0]
    placed = []
    for _ in range(8):
        target = choose(owner, workers, owner_weight=2)
        placed.append(target)
        if target < 0:
            owner += 1
        else:
            workers[target] += 1
    assert placed[0] == -1  # a lone connection: the owner
    assert (owner, workers) == (2, [3, 3])
    assert choose(5, [], owner_weight=2) == -1  # no worker (yet, or any more): the owner


@dataclass
class Pair:
    owner: VentrosApp
    worker: VentrosApp
    owner_memory: CountingMemory
    worker_memory: CountingMemory

    @property
    def address(self) -> str:
        return self.owner.addresses["memory"]

    @property
    def steering(self) -> Steering:
        return self.owner._running["memory"].server._server  # type: ignore[return-value]

    def served(self) -> tuple[int, int]:
        return self.owner_memory.calls["SearchMemories"], self.worker_memory.calls["SearchMemories"]


@contextlib.asynccontextmanager
async def pair(tmp_path: Path, internal: str | None = None, **config: object) -> AsyncIterator[Pair]:
    channel = str(tmp_path / "connections.sock")
    owner_memory, worker_memory = CountingMemory(), CountingMemory()
    owner = VentrosApp(
        ServeConfig(
            only="memory",
            memory_port=0,
            memory_steering=channel,
            memory_internal=internal,
            grace=2,
            **config,  # type: ignore[arg-type]
        ),
        services={"memory": lambda app: owner_memory},
        announce=lambda line: None,
    )
    await owner.start()
    port = int(owner.addresses["memory"].rsplit(":", 1)[1])
    worker = VentrosApp(
        ServeConfig(only="memory", memory_port=port, memory_handoff=channel, grace=2, **config),  # type: ignore[arg-type]
        services={"memory": lambda app: worker_memory},
        announce=lambda line: None,
    )
    await worker.start()
    result = Pair(owner, worker, owner_memory, worker_memory)
    try:
        async with asyncio.timeout(5):  # the owner registers the worker's channel on its loop
            while not result.steering.worker_connections:
                await asyncio.sleep(0.01)
        yield result
    finally:
        await worker.stop(grace=0)
        await owner.stop(grace=0)


async def _search(client: MemoryClient) -> None:
    await client.search_memories(contact_id="c1", query="x", timeout=10)


async def _until(condition: object, timeout: float = 5) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.01)


async def test_a_lone_connection_is_served_by_the_owner_each_time(tmp_path: Path) -> None:
    async with pair(tmp_path) as p:
        for round_ in range(1, 4):
            async with MemoryClient(p.address, retry=ONCE) as client:
                await _search(client)
                await _search(client)
            assert p.served() == (2 * round_, 0)
            await _until(lambda: p.steering.owner_connections == 0)


async def test_more_connections_go_to_the_worker_and_its_closes_are_counted(tmp_path: Path) -> None:
    async with pair(tmp_path) as p:
        clients = [MemoryClient(p.address, retry=ONCE) for _ in range(6)]
        try:
            for client in clients:  # one at a time: each placement sees the previous ones
                await _search(client)
            owner, worker = p.served()
            assert (owner, worker) == (2, 4)  # weight 2: the owner holds half a worker's share
            assert p.steering.worker_connections == [4]
        finally:
            for client in clients:
                client.close()
        # The worker reported its closed connections: a lone client is the owner's again.
        await _until(lambda: p.steering.worker_connections == [0] and p.steering.owner_connections == 0)
        async with MemoryClient(p.address, retry=ONCE) as client:
            await _search(client)
        assert p.served() == (3, 4)


async def test_the_servers_own_agents_use_a_unix_socket_the_steering_does_not_count(tmp_path: Path) -> None:
    internal = str(tmp_path / "agents.sock")
    async with pair(tmp_path, internal=internal) as p:
        agents = [MemoryClient(f"unix:{internal}", retry=ONCE) for _ in range(3)]
        try:
            for client in agents:
                await _search(client)
            assert p.served() == (3, 0)  # the owner serves them, with the store in-process
            assert (p.steering.internal_connections, p.steering.owner_connections) == (3, 0)
            # So an outside client alone on the memory port is still the owner's: no hop.
            async with MemoryClient(p.address, retry=ONCE) as client:
                await _search(client)
            assert p.served() == (4, 0)
        finally:
            for client in agents:
                client.close()
        await _until(lambda: p.steering.internal_connections == 0)


async def test_a_worker_gone_gets_no_more_connections(tmp_path: Path) -> None:
    async with pair(tmp_path) as p:
        await p.worker.stop(grace=0)
        await _until(lambda: not p.steering.worker_connections)
        clients = [MemoryClient(p.address, retry=ONCE) for _ in range(4)]
        try:
            for client in clients:
                await _search(client)
        finally:
            for client in clients:
                client.close()
        assert p.served() == (4, 0)


async def test_the_owner_draining_stops_accepting_and_handed_calls_finish(tmp_path: Path) -> None:
    async with pair(tmp_path) as p:
        release = asyncio.Event()
        search = p.worker_memory.search_memories

        async def slow_search(message):  # type: ignore[no-untyped-def]
            await release.wait()
            return await search(message)

        p.worker_memory.search_memories = slow_search  # type: ignore[method-assign]
        address = p.address
        first, second = MemoryClient(address, retry=ONCE), MemoryClient(address, retry=ONCE)
        try:
            await _search(first)  # the owner's
            running = asyncio.ensure_future(_search(second))  # handed to the worker, held there
            await _until(lambda: p.steering.worker_connections == [1])
            stopping = asyncio.ensure_future(asyncio.gather(p.owner.stop(), p.worker.stop()))
            await asyncio.sleep(0.2)
            release.set()
            await running  # finished during the drain, not cut off
            await stopping
            with pytest.raises(UnavailableError):  # nobody listens any more
                async with MemoryClient(address, retry=ONCE) as late:
                    await _search(late)
        finally:
            first.close()
            second.close()


async def test_handed_off_connections_keep_mutual_tls(tmp_path: Path, pki: Pki) -> None:  # noqa: F811
    tls = {"tls_cert": str(pki.server_cert), "tls_key": str(pki.server_key), "tls_client_ca": str(pki.ca)}
    good = TLSConfig(ca_file=str(pki.ca), cert_file=str(pki.client_cert), key_file=str(pki.client_key))
    rogue = TLSConfig(ca_file=str(pki.ca), cert_file=str(pki.rogue_cert), key_file=str(pki.rogue_key))
    async with pair(tmp_path, **tls) as p:
        clients = [MemoryClient(p.address, retry=ONCE, tls=good) for _ in range(3)]
        try:
            for client in clients:
                await _search(client)
            assert p.served() == (1, 2)  # both servers did the handshake and answered
            with pytest.raises(UnavailableError):  # a certificate the CA did not sign
                async with MemoryClient(p.address, retry=ONCE, tls=rogue) as client:
                    await _search(client)
        finally:
            for client in clients:
                client.close()
        assert p.served() == (1, 2)
