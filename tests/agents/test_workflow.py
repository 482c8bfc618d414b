"""The spec's full workflow (section 6.1), end to end over real gRPC.

Go CRM side (played by this test): list agents, pick CustomerServiceAgent, execute, act on the
suggested actions, send the reply. Python side: the agent reads the contact's context from the
memory service, answers, and stores an "agent_insight" that a later memory search finds.
Runs against the in-test fake memory service and, once ``ventros_server.memory`` exports
``MemoryService`` and ``open_store``, against the real one too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import ventros
from ventros.memory import SearchMode

from .conftest import CHANNEL, agent_stack, execute_request, serve
from .fake_memory import FakeMemoryService

CONTACT = "9b2f3c4d-1e2f-4a5b-8c7d-0123456789ab"


def _real_memory_service() -> Any:
    try:
        from ventros_server.memory import MemoryService, open_store  # type: ignore[attr-defined]
    except ImportError:
        pytest.skip("ventros_server.memory does not export MemoryService/open_store yet")
    return MemoryService(open_store(":memory:"))


@pytest.fixture(params=["fake", "real"])
async def workflow_memory(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    service = FakeMemoryService() if request.param == "fake" else _real_memory_service()
    async with serve([service]) as address:
        yield address


class FakeCRM:
    """What the Go CRM does with the answer (spec 6.1 steps 5 and 6)."""

    def __init__(self) -> None:
        self.leads: list[dict[str, str]] = []
        self.pipeline: dict[str, str] = {}
        self.catalogues: list[str] = []
        self.sent: list[tuple[str, str, str]] = []

    def act(self, action: str, contact_id: str, metadata: dict[str, str]) -> None:
        match action:
            case "create_lead":
                self.leads.append({"contact_id": contact_id, **metadata})
            case "update_pipeline_status":
                self.pipeline[contact_id] = "qualified"
            case "send_product_catalog":
                self.catalogues.append(contact_id)
            case _:
                raise AssertionError(f"unexpected action {action}")

    def send_message(self, channel_id: str, contact_id: str, text: str) -> None:
        self.sent.append((channel_id, contact_id, text))


async def test_full_workflow(workflow_memory: str) -> None:
    crm = FakeCRM()
    async with agent_stack(workflow_memory) as (_, agents):
        # 1. List available agents
        listing = await agents.list_agents()
        assert listing.total_count == 5
        # 2. Select CustomerServiceAgent
        selected = "CustomerServiceAgent"
        assert selected in {a.type for a in listing.agents}
        # 3. Execute agent
        resp = await agents.execute_agent(
            execute_request(
                agent_type=selected,
                contact_id=CONTACT,
                message="Oi, quero comprar produto X",
                channel_id=CHANNEL,
                context={"last_purchase": "product_Y", "tier": "premium"},
            )
        )
        # 4. Process response
        assert resp.response.startswith("Olá!")
        assert "produto X" in resp.response and "product_Y" in resp.response
        assert resp.intent == "purchase_intent" and resp.confidence > 0.8
        assert resp.metadata["memory"] == "ok"
        # 5. Execute suggested actions
        for action in resp.suggested_actions:
            crm.act(action, CONTACT, dict(resp.metadata))
        assert crm.leads[0]["contact_id"] == CONTACT and crm.pipeline[CONTACT] == "qualified"
        assert crm.catalogues == [CONTACT]
        # 6. Send the reply (WAHA)
        crm.send_message(CHANNEL, CONTACT, resp.response)
        assert crm.sent == [(CHANNEL, CONTACT, resp.response)]

        insight_id = resp.metadata["insight_memory_id"]
        assert [t.tool_name for t in resp.tool_calls][-1] == "store_memory"

    # Later: the stored insight is found by a memory search.
    async with ventros.MemoryClient(workflow_memory) as memory:
        found = await memory.search_memories(
            contact_id=CONTACT,
            query="classified intent",
            mode=SearchMode.KEYWORD_ONLY,
            memory_types=["agent_insight"],
            timeout=5,
        )
    assert [m.id for m in found.memories] == [insight_id]
    insight = found.memories[0]
    assert insight.memory_type == "agent_insight"
    assert "purchase_intent" in insight.content and "CustomerServiceAgent" in insight.content
    assert insight.metadata["intent"] == "purchase_intent"
    assert insight.metadata["channel_id"] == CHANNEL


async def test_a_later_run_sees_the_earlier_insight(workflow_memory: str) -> None:
    async with agent_stack(workflow_memory) as (_, agents):
        first = await agents.execute_agent(execute_request(contact_id=CONTACT))
        assert "insight_memory_id" in first.metadata
        later = await agents.execute_agent(
            execute_request(
                agent_type="ConversationAnalyticsAgent", contact_id=CONTACT, message="qual o status?"
            )
        )
    context_call = later.tool_calls[0]
    assert context_call.tool_name == "get_contact_context"
    assert "1 agent insights" in context_call.output  # the contact is now known to memory
