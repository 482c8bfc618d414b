"""ExecuteAgentBatch: 1..32 requests, at most 4 at a time, request order, per-item failures."""

from __future__ import annotations

import pytest
import ventros
from ventros.agents import ExecutionOptions

from .conftest import agent_stack, execute_request
from .llms import SlowLLM


async def test_batch_keeps_order_and_reports_failures_per_item(client: ventros.AgentClient) -> None:
    requests = [
        execute_request(message="Oi, quero comprar produto X"),
        execute_request(agent_type="NoSuchAgent"),
        execute_request(contact_id="bad"),
        execute_request(agent_type="LeadQualifierAgent", message="How much is the Pro plan?"),
        execute_request(options=ExecutionOptions(tools=["nope"])),
    ]
    resp = await client.execute_agent_batch(requests)
    assert len(resp.responses) == 5
    ok, not_found, invalid, lead, bad_tool = resp.responses
    assert ok.metadata["status"] == "OK" and ok.intent == "purchase_intent" and ok.response
    assert (
        not_found.metadata["status"] == "NOT_FOUND" and not_found.metadata["error_code"] == "AGENT_NOT_FOUND"
    )
    assert "NoSuchAgent" in not_found.metadata["error_message"] and not not_found.response
    assert (
        invalid.metadata["status"] == "INVALID_ARGUMENT" and invalid.metadata["error_code"] == "INVALID_FIELD"
    )
    assert lead.metadata["status"] == "OK" and lead.intent == "pricing_inquiry"
    assert lead.metadata["agent_type"] == "LeadQualifierAgent"
    assert bad_tool.metadata["status"] == "INVALID_ARGUMENT"


@pytest.mark.parametrize("count", [0, 33])
async def test_batch_size_bounds(client: ventros.AgentClient, count: int) -> None:
    with pytest.raises(ventros.InvalidArgumentError) as err:
        await client.execute_agent_batch([execute_request() for _ in range(count)])
    assert err.value.metadata["field"] == "requests"


async def test_batch_of_32_runs_at_most_4_at_a_time(memory_address: str) -> None:
    llm = SlowLLM(delay=0.005, tokens=4)
    async with agent_stack(memory_address, llm=llm) as (_, client):
        messages = [f"pedido {i}: quero comprar produto P{i}" for i in range(32)]
        resp = await client.execute_agent_batch([execute_request(message=m) for m in messages])
    assert len(resp.responses) == 32
    assert all(r.metadata["status"] == "OK" for r in resp.responses)
    assert llm.finished == 32
    assert 1 < llm.max_active <= 4
    # request order: each response answers its own request (the product name is in the query)
    for i, r in enumerate(resp.responses):
        assert r.tool_calls[1].input["query"] == messages[i]


async def test_batch_item_deadline_is_per_item(memory_address: str) -> None:
    llm = SlowLLM(delay=0.05, tokens=1000)
    async with agent_stack(memory_address, llm=llm) as (_, client):
        resp = await client.execute_agent_batch(
            [execute_request(options=ExecutionOptions(timeout_ms=200, tools=["search_memories"]))]
        )
    assert resp.responses[0].metadata["status"] == "DEADLINE_EXCEEDED"
    assert llm.cancelled.is_set() and llm.finished == 0
