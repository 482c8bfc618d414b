"""The reference AgentService: five agents with memory tools, streaming, batch, pluggable LLM.

    from ventros_server.agents import AgentService, default_registry, make_llm
    from ventros_server.server import build_server

    service = AgentService(memory_address="localhost:50052", llm=make_llm("offline"))
    server, health = build_server([service])

See docs/agents.md for the agents, the event model and how to add an agent or a backend.
"""

from .actions import ACTIONS, Action
from .base import (
    Agent,
    AgentCategory,
    AgentRun,
    AgentSpec,
    ConversationalAgent,
    ExampleSpec,
    FieldSpec,
    Insight,
    Plan,
)
from .builtin import (
    BUILTIN_AGENTS,
    ConversationAnalyticsAgent,
    CustomerServiceAgent,
    LeadQualifierAgent,
    MarketingCampaignAgent,
    RetentionAgent,
)
from .events import AgentEvent, Failed, Final, PartialText, Thought, ToolCalled, ToolResult
from .llm import LLMBackend, OfflineLLM, OpenAICompatibleLLM, make_llm
from .registry import AgentRegistry, default_registry
from .service import AgentService
from .tools import ContactSnapshot, MemoryTools

__all__ = [
    "ACTIONS",
    "BUILTIN_AGENTS",
    "Action",
    "Agent",
    "AgentCategory",
    "AgentEvent",
    "AgentRegistry",
    "AgentRun",
    "AgentService",
    "AgentSpec",
    "ContactSnapshot",
    "ConversationAnalyticsAgent",
    "ConversationalAgent",
    "CustomerServiceAgent",
    "ExampleSpec",
    "Failed",
    "FieldSpec",
    "Final",
    "Insight",
    "LLMBackend",
    "LeadQualifierAgent",
    "MarketingCampaignAgent",
    "MemoryTools",
    "OfflineLLM",
    "OpenAICompatibleLLM",
    "PartialText",
    "Plan",
    "RetentionAgent",
    "Thought",
    "ToolCalled",
    "ToolResult",
    "default_registry",
    "make_llm",
]
