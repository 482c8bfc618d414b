"""Shared fixtures: real grpclib servers on 127.0.0.1 (random ports) and a fake memory service."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import ventros
from ventros_server.agents import AgentService, make_llm
from ventros_server.server import build_server

from .fake_memory import FakeMemoryService

CONTACT = "550e8400-e29b-41d4-a716-446655440000"
CHANNEL = "660e8400-e29b-41d4-a716-446655440001"
SESSION = "770e8400-e29b-41d4-a716-446655440002"


@asynccontextmanager
async def serve(
    services: Iterable[Any], listeners: Iterable[Callable[[Any], Any]] = ()
) -> AsyncIterator[str]:
    """Start a real server on 127.0.0.1:<random port>; yields "127.0.0.1:<port>"."""
    server, _ = build_server(list(services), listeners=listeners)
    await server.start("127.0.0.1", 0)
    port = server._server.sockets[0].getsockname()[1]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


def closed_port_address() -> str:
    """An address where nothing listens (bound then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"127.0.0.1:{port}"


@pytest.fixture
def fake_memory() -> FakeMemoryService:
    memory = FakeMemoryService()
    memory.seed_contact(CONTACT, name="João Silva", tier="premium", ltv=5000.0, churn=0.125)
    memory.add(CONTACT, "Customer purchased product Y on 2024-09-15", "purchase")
    memory.add(CONTACT, "Complained about delivery delay on 2024-09-18", "support_ticket")
    return memory


@pytest.fixture
async def memory_address(fake_memory: FakeMemoryService) -> AsyncIterator[str]:
    async with serve([fake_memory]) as address:
        yield address


@asynccontextmanager
async def agent_stack(
    memory_address: str | None,
    *,
    llm: Any = None,
    listeners: Iterable[Callable[[Any], Any]] = (),
    **service_options: Any,
) -> AsyncIterator[tuple[AgentService, ventros.AgentClient]]:
    """An AgentService served on a random port, and a client (no retries) connected to it."""
    service = AgentService(
        memory_address=memory_address or closed_port_address(),
        llm=llm if llm is not None else make_llm("offline"),
        memory_timeout=5.0,
        **service_options,
    )
    async with serve([service], listeners) as address:
        client = ventros.AgentClient(address, retry=ventros.RetryPolicy(attempts=1))
        try:
            yield service, client
        finally:
            client.close()
            await service.aclose()


@pytest.fixture
async def stack(memory_address: str) -> AsyncIterator[tuple[AgentService, ventros.AgentClient]]:
    async with agent_stack(memory_address) as pair:
        yield pair


@pytest.fixture
async def client(stack: tuple[AgentService, ventros.AgentClient]) -> ventros.AgentClient:
    return stack[1]


def execute_request(**overrides: Any) -> ventros.agents.ExecuteAgentRequest:
    fields: dict[str, Any] = {
        "agent_type": "CustomerServiceAgent",
        "contact_id": CONTACT,
        "message": "Oi, quero comprar produto X",
        "channel_id": CHANNEL,
    }
    fields.update(overrides)
    return ventros.agents.ExecuteAgentRequest(**fields)


def stream_request(**overrides: Any) -> ventros.agents.StreamAgentRequest:
    fields: dict[str, Any] = {
        "agent_type": "CustomerServiceAgent",
        "contact_id": CONTACT,
        "message": "Oi, quero comprar produto X",
        "channel_id": CHANNEL,
    }
    fields.update(overrides)
    return ventros.agents.StreamAgentRequest(**fields)
