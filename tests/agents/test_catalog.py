"""ListAvailableAgents and GetAgentCapabilities over real gRPC, and the registry's rules."""

from __future__ import annotations

import pytest
import ventros
from ventros.agents import AgentCategory
from ventros_server.agents import (
    ACTIONS,
    AgentRegistry,
    AgentSpec,
    ConversationalAgent,
    Plan,
    default_registry,
)
from ventros_server.agents.base import COMMON_INPUT_FIELDS

from .conftest import agent_stack, execute_request


async def test_list_has_one_agent_per_category(client: ventros.AgentClient) -> None:
    resp = await client.list_agents()
    assert resp.total_count == len(resp.agents) == 5
    assert {a.category for a in resp.agents} == set(AgentCategory)
    by_type = {a.type: a for a in resp.agents}
    cs = by_type["CustomerServiceAgent"]
    assert cs.name == "Customer Service Specialist"
    assert cs.category == AgentCategory.SUPPORT
    assert cs.capabilities == ["intent_classification", "response_generation", "sentiment_analysis"]
    assert cs.required_inputs == ["contact_id", "message", "channel_id"]
    lq = by_type["LeadQualifierAgent"]
    assert lq.category == AgentCategory.SALES
    assert lq.capabilities == ["lead_scoring", "qualification_questions", "urgency_detection"]
    for agent in resp.agents:
        assert agent.name and agent.description and agent.capabilities and agent.avg_latency_ms > 0


async def test_capabilities_describe_schema_and_examples(client: ventros.AgentClient) -> None:
    resp = await client.get_agent_capabilities("CustomerServiceAgent")
    assert resp.agent.type == "CustomerServiceAgent"
    inputs = {f.name: f for f in resp.schema.input_fields}
    assert [n for n, f in inputs.items() if f.required] == ["contact_id", "message", "channel_id"]
    assert inputs["contact_id"].type == "string"
    assert inputs["context"].type == "object"
    assert inputs["options.timeout_ms"].default_value == "30000"
    assert inputs["options.temperature"].default_value == "0.7"
    assert inputs["options.max_tokens"].default_value == "1024"
    outputs = {f.name for f in resp.schema.output_fields}
    assert {"response", "intent", "confidence", "suggested_actions", "metadata.priority"} <= outputs
    assert resp.examples and all(e.description and e.input and e.output for e in resp.examples)
    for field in [*resp.schema.input_fields, *resp.schema.output_fields]:
        assert field.type in {"string", "int", "float", "bool", "object", "list"}


async def test_capabilities_of_every_agent(client: ventros.AgentClient) -> None:
    for info in (await client.list_agents()).agents:
        resp = await client.get_agent_capabilities(info.type)
        assert resp.agent == info
        assert resp.examples
        for example in resp.examples:
            actions = example.output.get("suggested_actions", "")
            assert all(a in ACTIONS for a in actions.split(",") if a), actions


async def test_capabilities_empty_type_is_invalid_argument(client: ventros.AgentClient) -> None:
    with pytest.raises(ventros.InvalidArgumentError) as err:
        await client.get_agent_capabilities("")
    assert err.value.metadata["field"] == "agent_type"


@pytest.mark.parametrize(
    ("asked", "closest"),
    [
        ("CustomerServiceAgnt", "CustomerServiceAgent"),
        ("customerserviceagent", "CustomerServiceAgent"),
        ("LeadQualifier", "LeadQualifierAgent"),
        ("RetentionAgnet", "RetentionAgent"),
    ],
)
async def test_unknown_agent_is_not_found_with_closest_suggestions(
    client: ventros.AgentClient, asked: str, closest: str
) -> None:
    with pytest.raises(ventros.NotFoundError) as err:
        await client.get_agent_capabilities(asked)
    assert err.value.code == "AGENT_NOT_FOUND"
    assert err.value.suggestions[0] == f"Try {closest} instead"
    assert err.value.metadata["closest"].split(",")[0] == closest
    with pytest.raises(ventros.NotFoundError) as err2:
        await client.execute_agent(execute_request(agent_type=asked))
    assert err2.value.code == "AGENT_NOT_FOUND"
    assert err2.value.suggestions[0] == f"Try {closest} instead"


async def test_avg_latency_starts_documented_then_follows_real_runs(memory_address: str) -> None:
    async with agent_stack(memory_address) as (service, client):
        before = {a.type: a.avg_latency_ms for a in (await client.list_agents()).agents}
        assert before["CustomerServiceAgent"] == 850
        assert before["LeadQualifierAgent"] == 920
        latencies = [(await client.execute_agent(execute_request())).latency_ms for _ in range(3)]
        after = {a.type: a.avg_latency_ms for a in (await client.list_agents()).agents}
        assert after["CustomerServiceAgent"] == round(sum(latencies) / len(latencies))
        assert after["LeadQualifierAgent"] == 920  # untouched: it has not run
        assert service.registry.runs("CustomerServiceAgent") == 3


def test_registry_rejects_duplicates_and_keeps_order() -> None:
    registry = default_registry()
    assert registry.types() == [
        "CustomerServiceAgent",
        "LeadQualifierAgent",
        "MarketingCampaignAgent",
        "RetentionAgent",
        "ConversationAnalyticsAgent",
    ]
    with pytest.raises(ValueError, match="already registered"):
        registry.register(type(registry.get("RetentionAgent"))())


class EchoAgent(ConversationalAgent):
    """The docs/agents.md example: one class + one registration."""

    spec = AgentSpec(
        type="EchoAgent",
        name="Echo",
        description="Suggests a follow-up for everything.",
        category=AgentCategory.SUPPORT,
        capabilities=("echo",),
        starting_latency_ms=100,
        input_fields=COMMON_INPUT_FIELDS,
    )

    def plan(self, insight):  # type: ignore[no-untyped-def]
        return Plan(actions=["schedule_follow_up"], metadata={"echo": insight.text})


async def test_adding_an_agent_is_one_class_and_one_registration(memory_address: str) -> None:
    registry = AgentRegistry()
    registry.register(EchoAgent())
    async with agent_stack(memory_address, registry=registry) as (_, client):
        assert [a.type for a in (await client.list_agents()).agents] == ["EchoAgent"]
        resp = await client.execute_agent(execute_request(agent_type="EchoAgent", message="hello there"))
        assert resp.suggested_actions == ["schedule_follow_up"]
        assert resp.metadata["echo"] == "hello there"


def test_bad_memory_address_fails_at_construction() -> None:
    from ventros_server.agents import AgentService

    with pytest.raises(ventros.ConfigurationError):
        AgentService(memory_address="no-port-here")
