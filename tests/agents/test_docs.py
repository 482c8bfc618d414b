"""docs/agents.md tells the truth: its "Adding an agent" example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

from ventros_server.agents import ACTIONS

from .conftest import agent_stack, execute_request

DOC = Path(__file__).resolve().parents[2] / "docs" / "agents.md"


def _block(marker: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    return next(b for b in blocks if marker in b)


async def test_adding_an_agent_example_runs(memory_address: str) -> None:
    namespace: dict[str, object] = {}
    exec(_block("class OnboardingAgent").replace('"localhost:50052"', repr(memory_address)), namespace)
    registry = namespace["registry"]
    async with agent_stack(memory_address, registry=registry) as (_, client):
        listing = await client.list_agents()
        assert listing.total_count == 6 and listing.agents[-1].type == "OnboardingAgent"
        resp = await client.execute_agent(
            execute_request(agent_type="OnboardingAgent", message="Acabei de assinar!")
        )
    assert resp.suggested_actions == ["schedule_follow_up"]
    assert resp.metadata["new_customer"] == "false"  # the fake memory knows this contact
    assert resp.response.endswith("Quando podemos fazer sua chamada de boas-vindas?")


def test_documented_vocabulary_is_the_code_vocabulary() -> None:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("### Suggested-action vocabulary", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `([a-z_]+)` \|", section, re.M)
    assert documented == list(ACTIONS)
