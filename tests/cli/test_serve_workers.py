"""``ventros serve --only agent --workers 2`` as a real subprocess: two agent processes share one
port (SO_REUSEPORT), each a whole agent server (API keys included), and SIGTERM stops them all."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest
from ventros import AgentClient, UnauthenticatedError

from .conftest import run_cli
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


def test_workers_above_one_need_only_agent():
    result = run_cli("serve", "--workers", "2", "--agent-port", "0", "--memory-port", "0")
    assert result.code == 2
    assert "--only agent" in result.stderr
