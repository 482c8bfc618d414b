"""``ventros serve --workers 2`` as a real subprocess. Agent only: two agent processes share one
port (SO_REUSEPORT), each a whole agent server (API keys included), and SIGTERM stops them all.
Both services: one more process owns the store and serves the memory port itself; it alone
listens there, keeps a lone connection (no hop to the store) and hands further connections to the
workers, which forward their store calls to it (memory.remote, ventros_server.handoff). So a lone
client is served by the owner, many connections reach every process, a memory stored through one
process is found through the others at once, store answers keep their status codes, SIGTERM drains
every process and then closes the store, and a dead process stops the server without leaving its
clients' connections hanging."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest
from ventros import (
    AgentClient,
    InvalidArgumentError,
    MemoryClient,
    NotFoundError,
    UnauthenticatedError,
    UnavailableError,
)
from ventros.memory import SearchMode

from .test_serve import Served, start_serve

TOKEN = "workers-test-key"
#: Connections opened at once: with 2 workers, all of them landing on one worker has odds 2**-23.
CONNECTIONS = 24


def _children(pid: int) -> list[int]:
    """The direct child processes of ``pid`` (from /proc)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(entry.name))
    return children


def _established_to(pid: int, port: int) -> int:
    """How many ESTABLISHED TCP sockets process ``pid`` holds on local port ``port``."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "01" and fields[9] in inodes:
                count += 1
    return count


@pytest.fixture(scope="module")
def workers() -> Served:
    pytest.importorskip("ventros_server.agents")
    served = start_serve(
        "--only", "agent", "--workers", "2", "--agent-port", "0", "--memory-addr", "127.0.0.1:1",
        "--token", TOKEN, "--grace", "2",
        expect=("agent",),
    )  # fmt: skip
    yield served
    served.stop()


@pytest.mark.timeout(120)
def test_two_workers_share_the_port_and_both_serve(workers):
    address = workers.addresses["agent"]
    port = int(address.rsplit(":", 1)[1])
    pids = _children(workers.proc.pid)
    assert len(pids) >= 2  # the two workers (spawn may add a resource tracker)

    async def call_on_many_connections() -> dict[int, int]:
        clients = [AgentClient(address, token=TOKEN) for _ in range(CONNECTIONS)]
        try:
            answers = await asyncio.gather(*(c.list_agents(timeout=10) for c in clients))
            assert all(a.total_count == 5 for a in answers)
            # Every connection is still open here: count them per process.
            return {pid: _established_to(pid, port) for pid in pids}
        finally:
            for client in clients:
                client.close()

    per_process = asyncio.run(call_on_many_connections())
    serving = [pid for pid, count in per_process.items() if count]
    assert len(serving) == 2, per_process
    assert sum(per_process.values()) == CONNECTIONS


@pytest.mark.timeout(60)
def test_each_worker_is_a_whole_agent_server_with_api_keys(workers):
    address = workers.addresses["agent"]

    async def without_key() -> None:
        for _ in range(6):  # fresh connections, so both workers are likely asked
            async with AgentClient(address) as client:
                with pytest.raises(UnauthenticatedError):
                    await client.list_agents(timeout=10)

    asyncio.run(without_key())


@pytest.mark.timeout(60)
def test_sigterm_stops_every_worker(workers):
    pids = _children(workers.proc.pid)
    code, rest = workers.stop(signal.SIGTERM, timeout=30)
    assert code == 0, rest
    assert rest[-1] == "stopped"
    assert not _alive(pids, wait=5)


def _alive(pids: list[int], wait: float) -> dict[int, str]:
    """The processes among ``pids`` still running (not zombies) after up to ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while True:
        alive = {}
        for pid in pids:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if stat.rsplit(")", 1)[1].split()[0] != "Z":
                alive[pid] = cmdline
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


# -- both services: the memory store in one process, forwarded to by the workers --------------

DEMO_CONTACT = "d6ab2bca-5565-4628-84fe-5d4638b3b2b1"


@pytest.fixture(scope="module")
def full(tmp_path_factory) -> Served:
    pytest.importorskip("ventros_server.memory")
    db = tmp_path_factory.mktemp("workers") / "memory.duckdb"
    served = start_serve(
        "--workers", "2", "--demo", "--db", str(db), "--agent-port", "0", "--memory-port", "0",
        "--token", TOKEN, "--grace", "2",
        expect=("agent", "memory"),
    )  # fmt: skip
    served.db = db  # type: ignore[attr-defined]
    yield served
    served.stop()


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


async def _clients_per_process(
    address: str, pids: list[int], want: int, token: str | None = TOKEN
) -> dict[int, list[MemoryClient]]:
    """Open connections one at a time until ``want`` processes hold some; group the clients by
    the process that holds their connection."""
    port, by_pid = _port(address), {}
    before = {pid: _established_to(pid, port) for pid in pids}
    for _ in range(CONNECTIONS):
        client = MemoryClient(address, token=token)
        await client.search_memories(contact_id=DEMO_CONTACT, query="delivery", mode=SearchMode.KEYWORD_ONLY)
        now = {pid: _established_to(pid, port) for pid in pids}
        (pid,) = [p for p in pids if now[p] > before[p]]
        by_pid.setdefault(pid, []).append(client)
        before = now
        if len(by_pid) == want:
            break
    return by_pid


def _owner_and_workers(served: Served, port: int) -> tuple[int, list[int]]:
    """The store owner (the one process listening on the memory port) and the other children."""
    children = _own_children(served.proc.pid)
    (owner,) = [pid for pid in children if _listening_on(pid, port)]
    return owner, [pid for pid in children if pid != owner]


@pytest.fixture(scope="module")
def memory_only() -> Served:
    """Memory workers with no agent service: no connection to the memory port but the tests'."""
    served = _serve_memory_workers()
    yield served
    served.stop(timeout=30)


@pytest.mark.timeout(120)
def test_a_lone_connection_is_served_by_the_store_owner(memory_only):
    address = memory_only.addresses["memory"]
    port = _port(address)
    owner, others = _owner_and_workers(memory_only, port)

    async def one_client_at_a_time() -> list[dict[int, int]]:
        seen = []
        for _ in range(3):
            async with MemoryClient(address) as client:
                found = await client.search_memories(
                    contact_id=DEMO_CONTACT, query="delivery", mode=SearchMode.KEYWORD_ONLY, timeout=10
                )
                assert found.total_count == 0  # an empty store: the call went through
                seen.append({pid: _established_to(pid, port) for pid in [owner, *others]})
            await asyncio.sleep(0.3)  # the owner sees the close before the next connection
        return seen

    for per_process in asyncio.run(one_client_at_a_time()):
        assert per_process == {owner: 1, **dict.fromkeys(others, 0)}, (owner, per_process)


@pytest.mark.timeout(120)
def test_many_memory_connections_reach_every_process(memory_only):
    address = memory_only.addresses["memory"]
    port = _port(address)
    owner, others = _owner_and_workers(memory_only, port)

    async def many_at_once() -> dict[int, int]:
        clients = [MemoryClient(address) for _ in range(CONNECTIONS)]
        try:
            await asyncio.gather(
                *(c.search_memories(contact_id=DEMO_CONTACT, query="x", timeout=10) for c in clients)
            )
            return {pid: _established_to(pid, port) for pid in [owner, *others]}
        finally:
            for client in clients:
                client.close()

    per_process = asyncio.run(many_at_once())
    assert all(per_process.values()), per_process
    assert sum(per_process.values()) == CONNECTIONS
    # The owner also runs every forwarded store call: it holds a smaller share.
    assert per_process[owner] < min(per_process[pid] for pid in others), per_process


@pytest.mark.timeout(120)
def test_a_memory_stored_through_one_process_is_found_through_the_others(full):
    address = full.addresses["memory"]

    async def scenario() -> None:
        by_pid = await _clients_per_process(address, _children(full.proc.pid), want=3)
        assert len(by_pid) == 3, f"the connections reached {len(by_pid)} of 3 processes"
        first, second, third = (clients[0] for clients in by_pid.values())
        pairs = ((first, second, "aardvark"), (second, third, "zeppelin"), (third, first, "quokka"))
        try:
            for writer, reader, word in pairs:
                stored = await writer.store_memory(
                    contact_id=DEMO_CONTACT,
                    content=f"Asked about the {word} gift box",
                    memory_type="preference",
                )
                found = await reader.search_memories(
                    contact_id=DEMO_CONTACT, query=f"{word} gift box", mode=SearchMode.KEYWORD_ONLY
                )
                assert found.memories[0].id == stored.memory_id
        finally:
            for clients in by_pid.values():
                for client in clients:
                    client.close()

    asyncio.run(scenario())


async def _run_an_agent(agents: str) -> None:
    """One ExecuteAgent call on a new connection; the agent must have reached the memory service."""
    async with AgentClient(agents, token=TOKEN) as client:
        run = await client.execute_agent(
            agent_type="CustomerServiceAgent", contact_id=DEMO_CONTACT,
            channel_id="660e8400-e29b-41d4-a716-446655440001", message="where is my order?",
        )  # fmt: skip
        assert run.metadata["memory"] == "ok", run.metadata


@pytest.mark.timeout(120)
def test_memory_workers_keep_the_status_codes_and_agents_reach_memory(full):
    memory, agents = full.addresses["memory"], full.addresses["agent"]

    async def scenario() -> None:
        for _ in range(6):  # fresh connections, so both workers are likely asked
            async with MemoryClient(memory, token=TOKEN) as client:
                with pytest.raises(NotFoundError) as missing:
                    await client.get_contact_context(contact_id="00000000-0000-4000-8000-00000000dead")
                assert missing.value.code == "CONTACT_NOT_FOUND"
                with pytest.raises(NotFoundError) as unknown:
                    await client.get_related_entities(entity_id="no-such-entity")
                assert unknown.value.code == "ENTITY_NOT_FOUND"
                with pytest.raises(InvalidArgumentError):
                    await client.search_memories(contact_id="nope", query="x")
            async with MemoryClient(memory) as anonymous:
                with pytest.raises(UnauthenticatedError):
                    await anonymous.search_memories(contact_id=DEMO_CONTACT, query="x")
            # Every worker's agents reach the store owner (its private socket) with one internal key.
            await _run_an_agent(agents)

    asyncio.run(scenario())


@pytest.mark.timeout(120)
def test_the_agents_memory_connections_leave_a_lone_client_to_the_store_owner(full):
    memory, agents = full.addresses["memory"], full.addresses["agent"]
    port = _port(memory)
    owner, others = _owner_and_workers(full, port)

    async def scenario() -> dict[int, int]:
        for _ in range(6):  # fresh connections, so both workers' agents are likely to run
            await _run_an_agent(agents)
        # The agents' memory clients stay connected, over the owner's private Unix socket.
        async with MemoryClient(memory, token=TOKEN) as client:
            await client.search_memories(contact_id=DEMO_CONTACT, query="delivery", timeout=10)
            return {pid: _established_to(pid, port) for pid in [owner, *others]}

    per_process = asyncio.run(scenario())
    assert per_process == {owner: 1, **dict.fromkeys(others, 0)}, (owner, per_process)


@pytest.mark.timeout(60)
def test_sigterm_drains_the_workers_then_closes_the_store(full):
    pids = _children(full.proc.pid)
    assert len(pids) >= 3  # two workers and the store process
    code, rest = full.stop(signal.SIGTERM, timeout=30)
    assert code == 0, rest
    assert rest[-1] == "stopped"
    assert not _alive(pids, wait=5)
    # Closed cleanly: the file opens again (no lock left) and holds what the workers stored.
    from ventros_server.memory import open_store
    from ventros_server.memory.store import SearchMode as StoreMode
    from ventros_server.memory.store import SearchQuery

    store = open_store(str(full.db))
    try:
        found = store.search(SearchQuery(DEMO_CONTACT, "aardvark gift box", mode=StoreMode.KEYWORD))
        assert "aardvark" in found.memories[0].memory.content
    finally:
        store.close()


def _listening_on(pid: int, port: int) -> bool:
    inodes = {os.readlink(fd)[8:-1] for fd in Path(f"/proc/{pid}/fd").iterdir() if _is_socket(fd)}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A" and fields[9] in inodes:
                return True
    return False


def _is_socket(fd: Path) -> bool:
    try:
        return os.readlink(fd).startswith("socket:[")
    except OSError:
        return False


def _serve_memory_workers():
    """`ventros serve --only memory --workers 2` on an in-memory store: two workers, one store."""
    pytest.importorskip("ventros_server.memory")
    return start_serve(
        "--only", "memory", "--workers", "2", "--db", ":memory:", "--memory-port", "0", "--grace", "1",
        expect=("memory",),
    )  # fmt: skip


def _own_children(pid: int) -> list[int]:
    """The server's child processes, without multiprocessing's resource tracker."""
    return [child for child in _children(pid) if "resource_tracker" not in _cmdline(child)]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("victim", ["store owner", "worker"])
def test_a_dead_process_stops_the_server_and_no_connection_hangs(victim):
    served = _serve_memory_workers()
    try:
        address = served.addresses["memory"]
        owner, workers = _owner_and_workers(served, _port(address))
        assert len(workers) == 2, workers
        killed = owner if victim == "store owner" else workers[0]

        async def scenario() -> None:
            by_pid = await _clients_per_process(address, [owner, *workers], want=3, token=None)
            assert len(by_pid) == 3, by_pid
            clients = [client for group in by_pid.values() for client in group]
            try:
                os.kill(killed, signal.SIGKILL)
                code = await asyncio.to_thread(served.proc.wait, 30)
                assert code != 0
                # Every connection was closed: a call fails at once, none waits for its deadline.
                for client in clients:
                    with pytest.raises(UnavailableError):
                        await asyncio.wait_for(_search(client, timeout=60), 10)
            finally:
                for client in clients:
                    client.close()

        asyncio.run(scenario())
        assert not _alive([owner, *workers], wait=5)
    finally:
        served.stop(timeout=30)


async def _search(client: MemoryClient, timeout: float) -> None:
    await client.search_memories(contact_id=DEMO_CONTACT, query="x", timeout=timeout)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.mark.timeout(90)
def test_a_killed_parent_takes_its_workers_and_store_with_it():
    served = _serve_memory_workers()
    try:
        children = _own_children(served.proc.pid)
        assert len(children) == 3, children  # two workers and the store owner
        served.proc.kill()  # SIGKILL: the parent cannot forward anything
        served.proc.wait(10)
        assert not _alive(children, wait=20)
    finally:
        served.stop(timeout=30)
