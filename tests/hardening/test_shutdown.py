"""SIGTERM on a real `ventros serve`: the running ExecuteAgent finishes, new calls are refused,
the process exits 0 and the DuckDB file was closed cleanly.

The in-flight call is made slow honestly: the agents use the OpenAI-compatible backend pointed at
a local HTTP server that holds every request until the test releases it (no sleeps, no clocks).
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse
from ventros import AgentClient, MemoryClient, RetryPolicy, UnavailableError
from ventros_server.memory import open_store
from ventros_server.memory.store import SearchMode, SearchQuery

from tests.agents.fake_openai import FakeOpenAI

from .conftest import ServeProcess

ONCE = RetryPolicy(attempts=1)
CONTACT = "550e8400-e29b-41d4-a716-446655440000"
CHANNEL = "660e8400-e29b-41d4-a716-446655440001"
REPLY = "Claro! Seu pedido sai amanha cedo."


class GatedOpenAI(FakeOpenAI):
    """FakeOpenAI whose requests wait at a gate: ``arrived`` is set by the first one, and none
    is answered before ``release`` is set."""

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self.release = threading.Event()
        super().__init__(reply=REPLY)

    def _handler(self):  # type: ignore[no-untyped-def]
        base = super()._handler()
        fake = self

        class Gated(base):  # type: ignore[misc, valid-type]
            def do_POST(self) -> None:
                fake.arrived.set()
                fake.release.wait(60)
                super().do_POST()

        return Gated


@pytest.fixture
def llm():  # type: ignore[no-untyped-def]
    with GatedOpenAI() as fake:
        yield fake
        fake.release.set()


async def _health(client: AgentClient, service: str) -> int:
    reply = await HealthStub(client._channel).Check(HealthCheckRequest(service=service))
    return int(reply.status)


async def test_sigterm_lets_the_running_execute_agent_finish(tmp_path: Path, llm: GatedOpenAI) -> None:
    db = tmp_path / "drain.duckdb"
    served = ServeProcess(
        "--db", str(db), "--agent-port", "0", "--memory-port", "0", "--grace", "60",
        "--llm", "openai", "--llm-option", f"base_url={llm.base_url}", "--llm-option", "api_key=test",
        "--llm-option", "max_retries=0",
    )  # fmt: skip
    try:
        async with (
            AgentClient(served.addresses["agent"], retry=ONCE) as agents,
            AgentClient(served.addresses["agent"], retry=ONCE) as bystander,
            MemoryClient(served.addresses["memory"], retry=ONCE) as memory,
        ):
            stored = await memory.store_memory(
                contact_id=CONTACT, content="Ordered a blue kettle on Monday", memory_type="purchase"
            )
            assert await _health(bystander, "agent") == HealthCheckResponse.SERVING  # connection open
            running = asyncio.create_task(
                agents.execute_agent(
                    agent_type="CustomerServiceAgent",
                    contact_id=CONTACT,
                    channel_id=CHANNEL,
                    message="Quero comprar o produto X, quando chega?",
                    timeout=60,
                )
            )
            assert await asyncio.to_thread(llm.arrived.wait, 30), "the agent never reached the LLM"
            assert not running.done()

            served.proc.terminate()  # SIGTERM
            await asyncio.to_thread(served.wait_for_line, "shutting down")
            # A new call on an open connection is refused, and says why.
            with pytest.raises(UnavailableError) as refused:
                await bystander.list_agents()
            assert refused.value.code == "SHUTTING_DOWN"
            assert await _health(bystander, "agent") == HealthCheckResponse.NOT_SERVING
            assert await _health(bystander, "") == HealthCheckResponse.NOT_SERVING
            # A new connection is not accepted at all.
            async with AgentClient(served.addresses["agent"], retry=ONCE) as newcomer:
                with pytest.raises(UnavailableError):
                    await newcomer.list_agents()
            assert not running.done()

            llm.release.set()
            reply = await asyncio.wait_for(running, 60)
        assert reply.response.startswith(REPLY)
        assert reply.intent == "purchase_intent"
        code = await asyncio.to_thread(served.stop, timeout=60)
    finally:
        served.kill()
    assert code == 0, served.output
    assert served.lines[-1].endswith("stopped"), served.output
    assert "Traceback" not in served.output

    # Closed cleanly: checkpointed, so no write-ahead log is left next to the file.
    assert not Path(f"{db}.wal").exists()
    store = open_store(str(db))  # would fail on a lock if the server still held the file
    try:
        found = store.search(SearchQuery(CONTACT, "blue kettle", mode=SearchMode.KEYWORD, limit=10))
        assert [s.memory.id for s in found.memories] == [stored.memory_id]
        # The agent stored its insight while draining: memory kept serving until the agents were done.
        types = store._con.execute(
            "SELECT memory_type, count(*) FROM memories WHERE contact_id = ? GROUP BY 1 ORDER BY 1", [CONTACT]
        ).fetchall()
        assert dict(types) == {"agent_insight": 1, "purchase": 1}
    finally:
        store.close()
