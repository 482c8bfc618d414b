"""Personal data stays out of the server log.

A real `ventros serve` (demo data, a DuckDB file, logging at INFO and at DEBUG, a bearer token) serves store,
search, context, related-entities, execute and stream calls, good and bad, full of distinctive
names, phones, e-mails and message text; none of it, nor the token, may appear in what the
process printed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from ventros import AgentClient, MemoryClient, RetryPolicy, StatusError
from ventros.memory import RelatedEntity, SearchMode

from .conftest import ServeProcess, serve_env

ONCE = RetryPolicy(attempts=1)
JOAO = "550e8400-e29b-41d4-a716-446655440000"  # the demo contact
CHANNEL = "660e8400-e29b-41d4-a716-446655440001"
TOKEN = "tok-canary-7f3a9e1c5b"

PHONE = "+55 21 99876-1234"
EMAIL = "ana.canary.pii@example.org"
NAME = "Anastacia Canarinho"
ENTITY = "ana.canary.pii-example.org"
SECRET_MESSAGE = "my card ends in 4929 and my address is Rua Canario 77"
#: Everything that must never be logged. The demo contact's own details are in the store and
#: returned by GetContactContext: they must not be logged either.
CANARIES = [PHONE, EMAIL, NAME, ENTITY, "Canarinho", SECRET_MESSAGE, "Rua Canario", "4929", TOKEN,
            "João Silva", "+55 11 91234-5678", "joao.silva@example.com"]  # fmt: skip


async def _traffic(agent_addr: str, memory_addr: str) -> None:
    async with (
        MemoryClient(memory_addr, retry=ONCE, token=TOKEN) as memory,
        AgentClient(agent_addr, retry=ONCE, token=TOKEN) as agents,
    ):
        pii = f"{NAME} called from {PHONE}, wrote from {EMAIL}: {SECRET_MESSAGE}"
        await memory.store_memory(
            contact_id=JOAO,
            content=pii,
            memory_type="conversation",
            metadata={"email": EMAIL, "phone": PHONE},
            related=[RelatedEntity(entity_type="person", entity_id=ENTITY, relationship="is")],
        )
        for mode in SearchMode:
            await memory.search_memories(contact_id=JOAO, query=f"{EMAIL} {PHONE}", mode=mode, timeout=10)
        await memory.get_contact_context(contact_id=JOAO)
        await memory.get_related_entities(entity_id=ENTITY, entity_type="person")
        reply = await agents.execute_agent(
            agent_type="CustomerServiceAgent", contact_id=JOAO, channel_id=CHANNEL, message=pii
        )
        assert reply.response
        chunks = [
            c
            async for c in agents.stream_agent_execution(
                agent_type="CustomerServiceAgent",
                contact_id=JOAO,
                channel_id=CHANNEL,
                message=pii,
                timeout=30,
            )
        ]
        assert chunks
        # Refused calls carrying personal data: validation, not found, bad credentials.
        failing = [
            memory.store_memory(contact_id=JOAO, content=pii, memory_type=f"type {EMAIL}"),
            memory.search_memories(contact_id=EMAIL, query=PHONE, timeout=10),
            memory.get_related_entities(entity_id=f"missing-{ENTITY}", entity_type="person"),
            memory.get_related_entities(entity_id=EMAIL, entity_type="person"),
            agents.execute_agent(agent_type=NAME, contact_id=JOAO, channel_id=CHANNEL, message=pii),
            agents.execute_agent(agent_type="CustomerServiceAgent", contact_id=PHONE, message=pii),
        ]
        for call in failing:
            with pytest.raises(StatusError):
                await call
    async with MemoryClient(memory_addr, retry=ONCE, token=f"{TOKEN}-wrong") as intruder:
        with pytest.raises(StatusError):
            await intruder.search_memories(contact_id=JOAO, query=EMAIL, timeout=10)


@pytest.mark.parametrize("level", ["info", "debug"])
async def test_no_personal_data_or_token_in_the_log(tmp_path: Path, level: str) -> None:
    served = ServeProcess(
        "--demo", "--db", str(tmp_path / "pii.duckdb"), "--agent-port", "0", "--memory-port", "0",
        "--log-level", level,
        env=serve_env(VENTROS_TOKEN=TOKEN),
    )  # fmt: skip
    try:
        await _traffic(served.addresses["agent"], served.addresses["memory"])
    finally:
        code = served.stop()
    log = served.output
    assert code == 0, log
    assert level.upper() in log  # the log was on: this is not passing because nothing was printed
    leaked = [canary for canary in CANARIES if canary.lower() in log.lower()]
    assert leaked == [], f"personal data in the server log: {leaked}\n{log}"
