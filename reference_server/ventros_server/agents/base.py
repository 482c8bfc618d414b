"""The agent interface, and the memory-aware pipeline the built-in agents share.

An agent is one class:

* ``spec``: an AgentSpec (what ListAvailableAgents / GetAgentCapabilities report);
* ``run(run)``: an async iterator of events (``events.py``) ending with one ``Final``.

That is the whole contract with the RPC layer. ``ConversationalAgent`` implements ``run`` as
the pipeline below; a subclass only decides its plan (suggested actions, metadata, closing
sentence) from what was learned. A framework adapter (e.g. Google ADK) subclasses ``Agent``
directly and translates its framework's events.

ConversationalAgent pipeline (each step only when its tool is whitelisted and memory is up):

    THOUGHT      what the agent is about to look up
    TOOL         get_contact_context(contact_id, history_limit=20)
    TOOL         search_memories(contact_id, query=<the message>, limit=5)
    THOUGHT      what it learned (or that memory is unavailable)
    (LLM)        classify -> intent, confidence, sentiment, language
    THOUGHT      the classification and the agent's plan
    PARTIAL...   the LLM's answer, as it is produced
    TOOL         store_memory(agent_insight) when confidence > 0.8
    FINAL        response, intent, confidence, suggested_actions, metadata
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from ventros import agents as pb

from .actions import check_actions
from .events import AgentEvent, Final, PartialText, Thought, ToolCalled
from .llm.base import Classification, ClassificationRequest, GenerationRequest, LLMBackend, ResponseFacts
from .llm.rules import INTENTS
from .tools import ContactSnapshot, MemoryTools
from .validation import AgentRequest

AgentCategory = pb.AgentCategory


@dataclass(frozen=True)
class FieldSpec:
    name: str
    #: One of "string", "int", "float", "bool", "object", "list".
    type: str
    required: bool = False
    description: str = ""
    default: str = ""

    def to_proto(self) -> pb.Field:
        return pb.Field(
            name=self.name,
            type=self.type,
            required=self.required,
            description=self.description,
            default_value=self.default,
        )


@dataclass(frozen=True)
class ExampleSpec:
    input: Mapping[str, str]
    output: Mapping[str, str]
    description: str = ""

    def to_proto(self) -> pb.Example:
        return pb.Example(input=dict(self.input), output=dict(self.output), description=self.description)


#: Input fields every built-in agent accepts (the ExecuteAgentRequest fields, with the proto's rules).
COMMON_INPUT_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("contact_id", "string", True, "UUID of the contact"),
    FieldSpec("message", "string", True, "User message to process (at most 16384 UTF-8 bytes)"),
    FieldSpec("channel_id", "string", True, "Channel UUID (WhatsApp, Instagram, etc)"),
    FieldSpec("session_id", "string", False, "Current session UUID (optional)"),
    FieldSpec(
        "context", "object", False, "Additional context, e.g. last_purchase, tier (at most 64 entries)"
    ),
    FieldSpec("options.timeout_ms", "int", False, "Run deadline in ms, at most 60000", "30000"),
    FieldSpec(
        "options.tools",
        "list",
        False,
        "Tool whitelist: get_contact_context, search_memories, store_memory; empty = all",
    ),
    FieldSpec("options.max_tokens", "int", False, "LLM max tokens, at most 8192", "1024"),
    FieldSpec("options.temperature", "float", False, "LLM temperature in [0.0, 2.0]", "0.7"),
)

#: Output fields every built-in agent fills (ExecuteAgentResponse).
COMMON_OUTPUT_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("response", "string", True, "Generated text (a reply to the customer, or an internal note)"),
    FieldSpec("intent", "string", True, "Classified intent, one of the documented intent labels"),
    FieldSpec("confidence", "float", True, "Intent confidence in [0.0, 1.0]"),
    FieldSpec("suggested_actions", "list", True, "Next steps from the documented action vocabulary"),
    FieldSpec(
        "metadata",
        "object",
        True,
        "Always llm_backend, memory (ok|unavailable), language, sentiment, intent_source",
    ),
    FieldSpec("latency_ms", "int", True, "Measured run time on the server"),
    FieldSpec("tool_calls", "list", True, "Memory tools called: input, output summary, latency"),
    FieldSpec("thoughts", "object", False, "Reasoning steps and the final answer"),
)

DEFAULT_REQUIRED_INPUTS = ("contact_id", "message", "channel_id")


@dataclass(frozen=True)
class AgentSpec:
    """What the catalogue says about one agent."""

    type: str
    name: str
    description: str
    category: pb.AgentCategory
    capabilities: tuple[str, ...]
    #: avg_latency_ms reported before the agent has run on this server (docs/agents.md).
    starting_latency_ms: int
    required_inputs: tuple[str, ...] = DEFAULT_REQUIRED_INPUTS
    input_fields: tuple[FieldSpec, ...] = COMMON_INPUT_FIELDS
    #: Extra output fields (usually metadata keys) after the common ones.
    extra_output_fields: tuple[FieldSpec, ...] = ()
    examples: tuple[ExampleSpec, ...] = ()

    @property
    def output_fields(self) -> tuple[FieldSpec, ...]:
        return COMMON_OUTPUT_FIELDS + self.extra_output_fields


@dataclass
class AgentRun:
    """Everything one execution has: the validated request, its tools and the LLM backend."""

    request: AgentRequest
    tools: MemoryTools
    llm: LLMBackend


class Agent(ABC):
    """One agent type. Subclass, set ``spec``, implement ``run``, register an instance."""

    spec: ClassVar[AgentSpec]

    @abstractmethod
    def run(self, run: AgentRun) -> AsyncIterator[AgentEvent]:
        """The run as events, ending with exactly one Final (or raising a ventros StatusError)."""


@dataclass(frozen=True)
class Insight:
    """What the pipeline learned, handed to ``ConversationalAgent.plan``."""

    request: AgentRequest
    classification: Classification
    contact: ContactSnapshot
    memories: tuple[str, ...]
    memory_available: bool

    @property
    def text(self) -> str:
        return self.request.message

    @property
    def tier(self) -> str:
        return (
            self.contact.tier
            or self.request.context.get("tier", "")
            or self.request.context.get("customer_tier", "")
        )


@dataclass
class Plan:
    """An agent's decision: next steps, extra metadata, reasoning and an optional closing line."""

    actions: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    thoughts: list[str] = field(default_factory=list)
    closing_pt: str = ""
    closing_en: str = ""


INSIGHT_MEMORY_TYPE = "agent_insight"
INSIGHT_CONFIDENCE_THRESHOLD = 0.8


class ConversationalAgent(Agent):
    """The shared pipeline: context + memories -> classify -> plan -> generate -> store insight."""

    #: Intent labels this agent classifies into (label -> meaning).
    labels: ClassVar[Mapping[str, str]] = INTENTS
    #: "customer": the response is a reply to send; "internal": a note for the CRM team.
    audience: ClassVar[str] = "customer"
    #: System prompt for real models (the offline backend uses the structured facts instead).
    persona: ClassVar[str] = (
        "You are a helpful customer service agent for a company that uses the Ventros CRM."
    )
    history_limit: ClassVar[int] = 20
    search_limit: ClassVar[int] = 5

    @abstractmethod
    def plan(self, insight: Insight) -> Plan:
        """Decide suggested actions (from the vocabulary), metadata and reasoning."""

    def search_query(self, request: AgentRequest, classification: Classification | None = None) -> str:
        return request.message

    def insight_content(self, insight: Insight, actions: list[str]) -> str:
        c = insight.classification
        text = f"{self.spec.type} classified intent as: {c.intent} (confidence {c.confidence:.2f}, sentiment {c.sentiment})"
        if actions:
            text += f"; suggested actions: {', '.join(actions)}"
        return text + "."

    async def run(self, run: AgentRun) -> AsyncIterator[AgentEvent]:
        req, tools = run.request, run.tools
        contact = ContactSnapshot()
        memories: list[str] = []
        memory_tools = [t for t in ("get_contact_context", "search_memories") if t in tools.allowed]
        if memory_tools:
            yield Thought(f"Looking up the contact before answering: {', '.join(memory_tools)}.")
        else:
            yield Thought("No memory tool is allowed for this run; answering from the message alone.")

        if tools.can_use("get_contact_context"):
            yield ToolCalled(
                "get_contact_context",
                {"contact_id": req.contact_id, "history_limit": str(self.history_limit)},
            )
            result, contact = await tools.get_contact_context(
                req.contact_id, history_limit=self.history_limit
            )
            yield result
        if tools.can_use("search_memories"):
            query = self.search_query(req)
            yield ToolCalled(
                "search_memories",
                {"contact_id": req.contact_id, "query": query[:1000], "limit": str(self.search_limit)},
            )
            result, found = await tools.search_memories(req.contact_id, query, limit=self.search_limit)
            yield result
            # The agents' own earlier conclusions are not facts about the customer: keep them out.
            memories = [m.content for m in found if m.content and m.memory_type != INSIGHT_MEMORY_TYPE]
        memory_ok = tools.status == "ok"
        if tools.unreachable:
            yield Thought("Memory service unavailable: answering without memory.")
        elif not memory_ok:
            yield Thought("Memory service failed on every call: answering without memory.")
        elif memory_tools:
            yield Thought(self._learned(contact, memories))

        context_summary = _context_summary(req, contact, memories)
        classification = await run.llm.classify(
            ClassificationRequest(message=req.message, labels=self.labels, context_summary=context_summary)
        )
        yield Thought(
            f"Intent {classification.intent} (confidence {classification.confidence:.2f}, "
            f"{classification.source}: {classification.rationale}); sentiment {classification.sentiment}; "
            f"language {classification.language}."
        )
        insight = Insight(req, classification, contact, tuple(memories), memory_ok)
        plan = self.plan(insight)
        actions = check_actions(plan.actions)
        for step in plan.thoughts:
            yield Thought(step)
        yield Thought(f"Next steps: {', '.join(actions) if actions else 'none'}.")

        pt = classification.language == "pt"
        facts = ResponseFacts(
            language=classification.language,
            intent=classification.intent,
            sentiment=classification.sentiment,
            audience=self.audience,
            agent_type=self.spec.type,
            contact_name=contact.name,
            tier=insight.tier,
            lifetime_value=contact.lifetime_value if contact.known else None,
            churn_risk=contact.churn_risk if contact.known else None,
            # Customer replies quote only memories relevant to the message; internal notes may
            # fall back to the most recent ones.
            memory_highlights=tuple(
                memories[:3] or (contact.recent_memories[:3] if self.audience == "internal" else ())
            ),
            request_context=dict(req.context),
            suggested_actions=tuple(actions),
            closing=plan.closing_pt if pt else plan.closing_en,
            message=req.message,
            confidence=classification.confidence,
            memory_available=memory_ok,
        )
        generation = GenerationRequest(
            system=self._system_prompt(facts),
            prompt=f"{context_summary}\n\nUser message: {req.message}\n\n"
            + ("Write the internal note." if self.audience == "internal" else "Write the reply."),
            facts=facts,
            max_tokens=req.options.max_tokens,
            temperature=req.options.temperature,
        )
        parts: list[str] = []
        async for delta in run.llm.stream(generation):
            parts.append(delta)
            yield PartialText(delta)
        response = "".join(parts).strip()

        metadata = {
            "llm_backend": run.llm.name,
            "llm_model": run.llm.model,
            "language": classification.language,
            "sentiment": classification.sentiment,
            "intent_source": classification.source,
            "agent_type": self.spec.type,
            **plan.metadata,
        }
        if classification.confidence > INSIGHT_CONFIDENCE_THRESHOLD and tools.can_use("store_memory"):
            content = self.insight_content(insight, actions)
            insight_meta = {
                "agent_type": self.spec.type,
                "intent": classification.intent,
                "confidence": f"{classification.confidence:.2f}",
                "channel_id": req.channel_id,
            }
            if req.session_id:
                insight_meta["session_id"] = req.session_id
            yield ToolCalled(
                "store_memory", {"contact_id": req.contact_id, "memory_type": INSIGHT_MEMORY_TYPE}
            )
            result, memory_id = await tools.store_memory(
                req.contact_id, content, memory_type=INSIGHT_MEMORY_TYPE, metadata=insight_meta
            )
            yield result
            if memory_id:
                metadata["insight_memory_id"] = memory_id
        metadata["memory"] = tools.status
        yield Final(response, classification.intent, classification.confidence, actions, metadata)

    def _learned(self, contact: ContactSnapshot, memories: list[str]) -> str:
        who = contact.summary() if contact.known else "A new contact (no profile yet)"
        who = who[0].upper() + who[1:]
        if memories:
            return f"{who}. Most relevant memory: “{memories[0][:120]}”."
        return f"{who}. No memory relevant to this message."

    def _system_prompt(self, facts: ResponseFacts) -> str:
        language = "Brazilian Portuguese" if facts.language == "pt" else "English"
        lines = [
            self.persona,
            f"Answer in {language}. Be concise (at most about 120 words) and never invent facts that are "
            "not in the context.",
        ]
        if self.audience == "internal":
            lines.append("Write an internal note for the CRM team, not a message to the customer.")
        if facts.suggested_actions:
            lines.append(
                f"These next steps are already decided; mention them naturally: {', '.join(facts.suggested_actions)}."
            )
        if facts.closing:
            lines.append(f"End with: {facts.closing}")
        return "\n".join(lines)


def _context_summary(req: AgentRequest, contact: ContactSnapshot, memories: list[str]) -> str:
    lines = []
    if contact.known:
        lines.append(f"Customer: {contact.name or 'unknown name'} ({contact.tier or 'tier unknown'})")
        if contact.lifetime_value is not None:
            lines.append(f"LTV: {contact.lifetime_value:.2f}")
        if contact.churn_risk is not None:
            lines.append(f"Churn risk: {contact.churn_risk:.0%}")
        if contact.recent_messages:
            lines.append("Recent messages: " + " | ".join(m[:120] for m in contact.recent_messages[:5]))
    else:
        lines.append("Customer: no profile in memory")
    if req.context:
        lines.append(
            "Request context: " + "; ".join(f"{k}={v[:200]}" for k, v in list(req.context.items())[:16])
        )
    if memories:
        lines.append("Relevant memories:\n" + "\n".join(f"- {m[:200]}" for m in memories[:5]))
    return "\n".join(lines)


__all__ = [
    "COMMON_INPUT_FIELDS",
    "COMMON_OUTPUT_FIELDS",
    "INSIGHT_CONFIDENCE_THRESHOLD",
    "INSIGHT_MEMORY_TYPE",
    "Agent",
    "AgentCategory",
    "AgentRun",
    "AgentSpec",
    "ConversationalAgent",
    "ExampleSpec",
    "FieldSpec",
    "Insight",
    "Plan",
]
