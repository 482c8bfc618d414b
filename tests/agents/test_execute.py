"""ExecuteAgent runs: memory tools, whitelist, insight storage, degraded memory, deadlines, errors."""

from __future__ import annotations

import asyncio

import pytest
import ventros
from ventros.agents import ExecutionOptions
from ventros_server.agents import ACTIONS, default_registry

from .conftest import CONTACT, agent_stack, execute_request
from .fake_memory import FakeMemoryService
from .llms import FailingLLM, SlowLLM


async def test_run_uses_memory_and_reports_everything(
    client: ventros.AgentClient, fake_memory: FakeMemoryService
) -> None:
    resp = await client.execute_agent(
        execute_request(
            context={"last_purchase": "product_Y", "tier": "premium"},
            session_id="770e8400-e29b-41d4-a716-446655440002",
        )
    )
    assert resp.intent == "purchase_intent"
    assert 0.8 < resp.confidence <= 1.0
    assert resp.suggested_actions == ["create_lead", "update_pipeline_status", "send_product_catalog"]
    assert resp.response.startswith("Olá, João!")  # Portuguese, from the contact's profile
    assert "premium" in resp.response and "product_Y" in resp.response
    assert [t.tool_name for t in resp.tool_calls] == [
        "get_contact_context",
        "search_memories",
        "store_memory",
    ]
    context_call, search_call, store_call = resp.tool_calls
    assert context_call.input == {"contact_id": CONTACT, "history_limit": "20"}
    assert "João Silva (premium)" in context_call.output and "LTV 5000.00" in context_call.output
    assert search_call.input["query"] == "Oi, quero comprar produto X"
    assert store_call.input["memory_type"] == "agent_insight"
    assert all(t.latency_ms >= 0 for t in resp.tool_calls)
    assert resp.latency_ms >= max(t.latency_ms for t in resp.tool_calls)
    md = resp.metadata
    assert md["llm_backend"] == "offline" and md["memory"] == "ok" and md["language"] == "pt"
    assert md["intent_source"] == "rules"
    # The insight really is in the memory store, with its metadata.
    stored = [s.memory for s in fake_memory.memories[CONTACT] if s.memory.memory_type == "agent_insight"]
    assert len(stored) == 1 and stored[0].id == md["insight_memory_id"]
    assert "purchase_intent" in stored[0].content
    assert stored[0].metadata["session_id"] == "770e8400-e29b-41d4-a716-446655440002"
    assert fake_memory.calls == ["get_contact_context", "search_memories", "store_memory"]
    steps = resp.thoughts.reasoning_steps
    assert len(steps) >= 4 and any("purchase_intent" in s for s in steps)
    assert resp.thoughts.final_answer == resp.response


async def test_relevant_memory_is_used_in_the_answer(client: ventros.AgentClient) -> None:
    resp = await client.execute_agent(
        execute_request(message="Hi, my delivery is late again, this is terrible")
    )
    assert resp.intent == "complaint"
    assert resp.response.startswith("Hi João!")
    assert "Complained about delivery delay" in resp.response  # found by search_memories
    assert "Found 1 memories" in resp.tool_calls[1].output
    assert resp.metadata["sentiment"] == "negative"
    assert resp.suggested_actions[:2] == ["open_ticket", "escalate_to_human"]


async def test_whitelist_is_respected(client: ventros.AgentClient, fake_memory: FakeMemoryService) -> None:
    resp = await client.execute_agent(execute_request(options=ExecutionOptions(tools=["search_memories"])))
    assert [t.tool_name for t in resp.tool_calls] == ["search_memories"]
    assert fake_memory.calls == ["search_memories"]  # never called: get_contact_context, store_memory
    assert resp.confidence > 0.8 and "insight_memory_id" not in resp.metadata


async def test_no_tools_at_all_still_answers(memory_address: str, fake_memory: FakeMemoryService) -> None:
    async with agent_stack(memory_address) as (_, client):
        resp = await client.execute_agent(
            execute_request(options=ExecutionOptions(tools=["store_memory"]), message="ok")
        )
    assert resp.tool_calls == [] and fake_memory.calls == []  # confidence 0.5: nothing stored
    assert resp.intent == "general_inquiry" and resp.confidence == pytest.approx(0.5)


async def test_low_confidence_stores_no_insight(
    client: ventros.AgentClient, fake_memory: FakeMemoryService
) -> None:
    resp = await client.execute_agent(execute_request(message="ok"))
    assert resp.confidence <= 0.8
    assert "store_memory" not in fake_memory.calls and "insight_memory_id" not in resp.metadata


async def test_memory_unreachable_answers_without_memory() -> None:
    async with agent_stack(None) as (_, client):  # memory address where nothing listens
        resp = await client.execute_agent(execute_request(message="I want to buy product X"))
    assert resp.metadata["memory"] == "unavailable"
    assert resp.response.startswith("Hi!") and resp.intent == "purchase_intent"
    # One attempt found memory down; the other memory tools were skipped, not called.
    assert [t.tool_name for t in resp.tool_calls] == ["get_contact_context"]
    assert resp.tool_calls[0].output.startswith("unavailable:")
    assert any("Memory service unavailable" in s for s in resp.thoughts.reasoning_steps)


async def test_unknown_contact_is_a_new_contact(client: ventros.AgentClient) -> None:
    resp = await client.execute_agent(execute_request(contact_id="11111111-2222-3333-4444-555555555555"))
    assert resp.metadata["memory"] == "ok"
    assert "new contact" in resp.tool_calls[0].output
    assert resp.response.startswith("Olá!")


@pytest.mark.parametrize(
    ("message", "language", "opening"),
    [
        ("Oi, quero saber sobre o produto X", "pt", "Olá"),
        ("Meu pedido não chegou, péssimo atendimento", "pt", "Olá"),
        ("Hello, how much does the Pro plan cost?", "en", "Hi"),
        ("I need help, the app is not working", "en", "Hi"),
    ],
)
async def test_answers_in_the_language_of_the_message(
    client: ventros.AgentClient, message: str, language: str, opening: str
) -> None:
    resp = await client.execute_agent(execute_request(message=message))
    assert resp.metadata["language"] == language
    assert resp.response.startswith(opening)


MESSAGES = [
    "Oi, quero comprar produto X",
    "Quanto custa o plano Pro?",
    "Quero cancelar minha assinatura, o serviço está péssimo",
    "Quero meu dinheiro de volta",
    "Can we schedule a demo tomorrow?",
    "Please stop sending me messages",
    "Thanks, great service!",
    "My order is late and nobody answers",
    "Olá",
    "?",
]


async def test_every_agent_answers_with_vocabulary_actions_and_is_deterministic(
    client: ventros.AgentClient,
) -> None:
    for agent_type in default_registry().types():
        for message in MESSAGES:
            req = execute_request(
                agent_type=agent_type, message=message, options=ExecutionOptions(tools=["search_memories"])
            )
            first = await client.execute_agent(req)
            second = await client.execute_agent(req)
            assert first.response and 0.0 <= first.confidence <= 1.0
            assert all(a in ACTIONS for a in first.suggested_actions), (agent_type, message)
            assert (first.response, first.intent, first.confidence, first.suggested_actions) == (
                second.response,
                second.intent,
                second.confidence,
                second.suggested_actions,
            )


async def test_agent_specific_metadata(client: ventros.AgentClient) -> None:
    lead = await client.execute_agent(
        execute_request(
            agent_type="LeadQualifierAgent", message="Preciso comprar 20 licenças hoje, orçamento de R$ 5 mil"
        )
    )
    assert lead.metadata["lead_grade"] == "hot" and int(lead.metadata["lead_score"]) >= 70
    assert lead.metadata["urgency"] == "high"
    retention = await client.execute_agent(
        execute_request(
            agent_type="RetentionAgent", message="Quero cancelar minha assinatura, o serviço está péssimo"
        )
    )
    assert retention.metadata["retention_risk"] == "high"
    assert {"escalate_to_human", "offer_discount"} <= set(retention.suggested_actions)
    marketing = await client.execute_agent(
        execute_request(agent_type="MarketingCampaignAgent", message="Please stop sending me messages")
    )
    assert marketing.metadata["segment"] == "opted_out" and marketing.suggested_actions == ["tag_contact"]
    analytics = await client.execute_agent(
        execute_request(
            agent_type="ConversationAnalyticsAgent",
            message="The delivery was late again and support never answers",
        )
    )
    assert analytics.response.startswith("Summary:") and analytics.metadata["churn_signal"] == "true"
    assert "delivery" in analytics.metadata["topics"].split(",")


async def _assert_work_stopped(llm: SlowLLM) -> None:
    await asyncio.wait_for(llm.cancelled.wait(), 5)
    emitted = llm.emitted
    await asyncio.sleep(llm.delay * 5)
    assert llm.emitted == emitted and llm.finished == 0 and llm.active == 0


async def test_timeout_ms_is_deadline_exceeded_and_cancels_the_run(memory_address: str) -> None:
    llm = SlowLLM(delay=0.05)
    async with agent_stack(memory_address, llm=llm) as (_, client):
        with pytest.raises(ventros.DeadlineExceededError) as err:
            await client.execute_agent(execute_request(options=ExecutionOptions(timeout_ms=300)), timeout=30)
        assert err.value.code == "DEADLINE_EXCEEDED"
        assert "options.timeout_ms (300 ms)" in err.value.message
        assert llm.started.is_set()
        await _assert_work_stopped(llm)


async def test_caller_deadline_is_deadline_exceeded_and_cancels_the_run(memory_address: str) -> None:
    llm = SlowLLM(delay=0.05)
    async with agent_stack(memory_address, llm=llm) as (_, client):
        with pytest.raises(ventros.DeadlineExceededError):
            await client.execute_agent(execute_request(), timeout=0.4)
        await _assert_work_stopped(llm)


async def test_slow_memory_counts_against_the_deadline(
    fake_memory: FakeMemoryService, memory_address: str
) -> None:
    fake_memory.delay = 2.0
    async with agent_stack(memory_address) as (_, client):
        with pytest.raises(ventros.DeadlineExceededError):
            await client.execute_agent(execute_request(options=ExecutionOptions(timeout_ms=200)), timeout=30)
    assert fake_memory.calls == ["get_contact_context"]  # cancelled mid-call: nothing after it ran


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ventros.InternalError.of("LLM_ERROR", "boom"), ventros.InternalError),
        (ventros.UnavailableError.of("LLM_UNAVAILABLE", "down"), ventros.UnavailableError),
        (
            ventros.ResourceExhaustedError.of("LLM_RATE_LIMITED", "slow down", retry_after_ms="900"),
            ventros.ResourceExhaustedError,
        ),
    ],
)
async def test_llm_failures_keep_their_status(
    memory_address: str, error: ventros.StatusError, expected: type[ventros.StatusError]
) -> None:
    async with agent_stack(memory_address, llm=FailingLLM(error)) as (_, client):
        with pytest.raises(expected) as err:
            await client.execute_agent(execute_request())
    assert err.value.code == error.code and err.value.metadata == error.metadata


async def test_unexpected_exception_is_internal(memory_address: str) -> None:
    async with agent_stack(memory_address, llm=FailingLLM(RuntimeError("bug"))) as (_, client):
        with pytest.raises(ventros.InternalError) as err:
            await client.execute_agent(execute_request())
    assert err.value.code == "AGENT_FAILED" and "bug" not in err.value.message


async def test_agent_server_down_is_unavailable() -> None:
    """Spec table 4.1, UNAVAILABLE: "Python ADK down" (what the CRM sees, with a suggestion)."""
    from .conftest import closed_port_address

    client = ventros.AgentClient(closed_port_address(), retry=ventros.RetryPolicy(attempts=1))
    try:
        with pytest.raises(ventros.UnavailableError) as err:
            await client.execute_agent(execute_request())
    finally:
        client.close()
    assert err.value.code == "UNREACHABLE" and err.value.suggestions


async def test_one_broken_memory_rpc_does_not_disable_the_others(
    client: ventros.AgentClient, fake_memory: FakeMemoryService
) -> None:
    fake_memory.broken = {"get_contact_context"}
    resp = await client.execute_agent(execute_request())
    assert [t.tool_name for t in resp.tool_calls] == [
        "get_contact_context",
        "search_memories",
        "store_memory",
    ]
    assert resp.tool_calls[0].output.startswith("error: INTERNAL")
    assert resp.metadata["memory"] == "ok" and "insight_memory_id" in resp.metadata


async def test_memory_failing_on_every_call_is_reported_unavailable(
    client: ventros.AgentClient, fake_memory: FakeMemoryService
) -> None:
    fake_memory.broken = {"get_contact_context", "search_memories", "store_memory"}
    resp = await client.execute_agent(execute_request())
    assert resp.metadata["memory"] == "unavailable"
    assert all(t.output.startswith("error:") for t in resp.tool_calls)
    assert resp.response and resp.intent == "purchase_intent"
