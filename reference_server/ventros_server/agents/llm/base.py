"""The one interface every LLM backend implements, and the data that crosses it.

A backend does two things for an agent run:

* ``classify``: the message's intent (from the agent's label set), a confidence in [0, 1],
  the sentiment and the language ("pt" or "en");
* ``stream``: the answer text, yielded incrementally as the model produces it.

Requests carry both a ready-made chat prompt (``system`` + ``prompt``, for real models) and the
same information as structured ``facts`` (for template backends such as the offline one), so
each backend takes what it can use. Failures are raised as ``ventros`` status errors:
InternalError (the backend failed), UnavailableError (it is down / unreachable),
ResourceExhaustedError (it throttled us), each with ErrorDetails.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Classification:
    intent: str
    confidence: float
    #: "positive", "neutral" or "negative".
    sentiment: str = "neutral"
    #: "pt" or "en".
    language: str = "en"
    rationale: str = ""
    #: Who decided: "rules" (rule-based), "llm" (the model), "rules_fallback" (model answer unusable).
    source: str = "rules"


@dataclass(frozen=True)
class ClassificationRequest:
    message: str
    #: Allowed intents and what each means; the answer's intent is always one of these keys.
    labels: Mapping[str, str]
    #: Short description of what is known about the contact (already in prompt form).
    context_summary: str = ""
    temperature: float = 0.0


@dataclass(frozen=True)
class ResponseFacts:
    """Structured inputs for template backends; real models get the same in ``prompt``."""

    language: str
    intent: str
    sentiment: str = "neutral"
    #: "customer" (a reply to send) or "internal" (a note for the CRM team).
    audience: str = "customer"
    agent_type: str = ""
    contact_name: str = ""
    tier: str = ""
    lifetime_value: float | None = None
    churn_risk: float | None = None
    #: Short facts from memory, most relevant first.
    memory_highlights: tuple[str, ...] = ()
    #: The request's context map (e.g. last_purchase, tier).
    request_context: Mapping[str, str] = field(default_factory=dict)
    #: Next steps already decided; the answer should announce them.
    suggested_actions: tuple[str, ...] = ()
    #: Optional agent-specific sentence to end with (a qualification question, a summary...).
    closing: str = ""
    message: str = ""
    confidence: float = 0.0
    memory_available: bool = True


@dataclass(frozen=True)
class GenerationRequest:
    system: str
    prompt: str
    facts: ResponseFacts
    max_tokens: int = 1024
    temperature: float = 0.7


@runtime_checkable
class LLMBackend(Protocol):
    """An LLM behind the agents. ``name`` goes to response metadata["llm_backend"]."""

    name: str
    model: str

    async def classify(self, request: ClassificationRequest) -> Classification: ...

    def stream(self, request: GenerationRequest) -> AsyncIterator[str]: ...

    async def aclose(self) -> None: ...


__all__ = ["Classification", "ClassificationRequest", "GenerationRequest", "LLMBackend", "ResponseFacts"]
