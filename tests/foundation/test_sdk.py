"""The SDK facade over real sockets: retries, deadlines, the message cap, typed errors."""

from __future__ import annotations

import asyncio
import threading

import pytest
from ventros import (
    AgentClient,
    ConfigurationError,
    DeadlineExceededError,
    InvalidArgumentError,
    MemoryClient,
    NotFoundError,
    ResourceExhaustedError,
    RetryPolicy,
    SyncMemoryClient,
    UnavailableError,
    _settings,
)
from ventros.agents import AgentServiceBase, ExecuteAgentResponse, ExecutionOptions
from ventros.memory import Memory, MemoryServiceBase, SearchMemoriesResponse, SearchMode
from ventros_server.context import current_call
from ventros_server.testing import running

from .servicers import EchoMemory, FlakyMemory

FAST_RETRY = RetryPolicy(attempts=3, backoff=0.01)


async def test_unavailable_is_retried_until_the_third_attempt_succeeds():
    service = FlakyMemory(failures=2)
    async with running([service]) as address, MemoryClient(address, retry=FAST_RETRY) as client:
        await client.search_memories(contact_id="c", query="q")
    assert service.calls == 3


async def test_retries_stop_after_three_attempts():
    service = FlakyMemory(failures=5)
    async with running([service]) as address, MemoryClient(address, retry=FAST_RETRY) as client:
        with pytest.raises(UnavailableError) as info:
            await client.search_memories(contact_id="c", query="q")
    assert service.calls == 3
    assert info.value.code == "BACKEND_DOWN"


async def test_invalid_argument_and_not_found_are_never_retried():
    service = EchoMemory()
    async with running([service]) as address, MemoryClient(address, retry=FAST_RETRY) as client:
        with pytest.raises(InvalidArgumentError) as info:
            await client.search_memories(query="q")
        with pytest.raises(NotFoundError):
            await client.search_memories(contact_id="missing", query="q")
    assert service.calls == 2
    assert info.value.details.metadata["field"] == "contact_id"
    assert info.value.suggestions == ["Pass the contact's UUID."]


async def test_store_memory_retries_only_on_opt_in():
    service = FlakyMemory(failures=99)
    async with running([service]) as address, MemoryClient(address, retry=FAST_RETRY) as client:
        with pytest.raises(UnavailableError):
            await client.store_memory(contact_id="c", content="x", memory_type="fact")
        assert service.calls == 1
        with pytest.raises(UnavailableError):
            await client.store_memory(contact_id="c", content="x", memory_type="fact", retry=True)
    assert service.calls == 4


class DeadlineReporter(MemoryServiceBase):
    """Reports the deadline the server saw, so tests can check what the SDK sent."""

    async def search_memories(self, message):  # type: ignore[no-untyped-def]
        remaining = current_call().time_remaining()
        return SearchMemoriesResponse(memories=[Memory(content=repr(remaining))])


class AgentDeadlineReporter(AgentServiceBase):
    async def execute_agent(self, message):  # type: ignore[no-untyped-def]
        return ExecuteAgentResponse(response=repr(current_call().time_remaining()))


@pytest.mark.parametrize("mode", list(SearchMode))
async def test_search_default_deadline_follows_the_mode(mode):
    async with running([DeadlineReporter()]) as address, MemoryClient(address) as client:
        response = await client.search_memories(contact_id="c", query="q", mode=mode)
    remaining = float(response.memories[0].content)
    budget = _settings.SEARCH_TIMEOUTS[mode]
    assert budget / 2 < remaining <= budget


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, 30.0),
        ({"options": ExecutionOptions(timeout_ms=45000)}, 45.0),
        ({"timeout": 120.0}, 60.0),
        ({"options": ExecutionOptions(timeout_ms=90000)}, 60.0),
    ],
)
async def test_execute_agent_deadline_defaults_to_30s_and_never_exceeds_60s(kwargs, expected):
    async with running([AgentDeadlineReporter()]) as address, AgentClient(address) as client:
        response = await client.execute_agent(agent_type="A", **kwargs)
    remaining = float(response.response)
    assert expected - 2 < remaining <= expected


async def test_a_slow_call_ends_with_deadline_exceeded_and_error_details():
    async with (
        running([EchoMemory()]) as address,
        MemoryClient(address, retry=RetryPolicy(attempts=1)) as client,
    ):
        with pytest.raises(DeadlineExceededError) as info:
            await client.search_memories(contact_id="c", query="slow", timeout=0.3)
    assert info.value.code == "DEADLINE_EXCEEDED"


async def test_server_caps_incoming_messages():
    async with running([EchoMemory()], max_message_bytes=1024) as address, MemoryClient(address) as client:
        ok = await client.search_memories(contact_id="c", query="x" * 900)
        with pytest.raises(ResourceExhaustedError) as info:
            await client.search_memories(contact_id="c", query="x" * 2000)
    assert ok.memories[0].content == "x" * 900
    assert info.value.code == "MESSAGE_TOO_LARGE"


async def test_fifty_mebibyte_cap_in_both_directions():
    over_cap = "x" * (50 * 1024 * 1024 + 1)
    async with running([EchoMemory()]) as address:
        async with MemoryClient(address) as client:
            with pytest.raises(ResourceExhaustedError) as local:
                await client.store_memory(contact_id="c", content=over_cap, memory_type="fact")
        async with MemoryClient(address, max_message_bytes=60 * 1024 * 1024) as unbounded:
            with pytest.raises(ResourceExhaustedError) as remote:
                await unbounded.store_memory(contact_id="c", content=over_cap, memory_type="fact")
    assert local.value.code == remote.value.code == "MESSAGE_TOO_LARGE"


async def test_unreachable_server_gives_unavailable_with_a_hint():
    async with MemoryClient("127.0.0.1:1", retry=RetryPolicy(attempts=1)) as client:
        with pytest.raises(UnavailableError) as info:
            await client.search_memories(contact_id="c", query="q")
    assert info.value.code == "UNREACHABLE"
    assert "ventros serve" in info.value.suggestions[0]


def test_addresses_default_to_the_spec_environment_variables(monkeypatch):
    for name in ("PYTHON_ADK_GRPC", "MEMORY_SERVICE_GRPC", "GO_MEMORY_SERVICE"):
        monkeypatch.delenv(name, raising=False)
    assert _settings.agent_address() == "localhost:50051"
    assert _settings.memory_address() == "localhost:50052"
    monkeypatch.setenv("GO_MEMORY_SERVICE", "crm-api:50052")
    assert _settings.memory_address() == "crm-api:50052"
    monkeypatch.setenv("MEMORY_SERVICE_GRPC", "memory:1")
    monkeypatch.setenv("PYTHON_ADK_GRPC", "python-adk:50051")
    assert _settings.memory_address() == "memory:1"
    assert _settings.agent_address() == "python-adk:50051"
    assert _settings.agent_address("explicit:9") == "explicit:9"


def test_sync_client_wraps_the_async_one():
    # The server needs a loop of its own: run it in a thread while the sync client blocks here.
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    stop = loop.create_future()
    address: list[str] = []

    async def serve() -> None:
        async with running([EchoMemory()]) as addr:
            address.append(addr)
            ready.set()
            await stop

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),))
    thread.start()
    try:
        assert ready.wait(10)
        with SyncMemoryClient(address[0]) as client:
            response = client.search_memories(contact_id="c", query="sync")
        assert response.memories[0].content == "sync"
    finally:
        loop.call_soon_threadsafe(stop.set_result, None)
        thread.join(10)


async def test_a_unix_socket_address_reaches_a_server_listening_there(tmp_path):
    from ventros_server.server import build_server

    path = tmp_path / "memory.sock"
    server, _ = build_server([EchoMemory()])
    await server.start(path=str(path))
    try:
        # gRPC's two spellings: unix:PATH and unix:///ABSOLUTE/PATH.
        for address in (f"unix:{path}", f"unix://{path}"):
            async with MemoryClient(address) as client:
                found = await client.search_memories(contact_id="c", query="over a unix socket")
            assert found.memories[0].content == "over a unix socket"
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("address", ["unix:", "unix://host/path", "localhost", "host:0", "host:port"])
def test_a_malformed_address_is_a_configuration_error_naming_both_forms(address):
    with pytest.raises(ConfigurationError) as info:
        _settings.check_address(address)
    assert "unix:" in str(info.value)
    assert address in str(info.value)
