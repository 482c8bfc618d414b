"""LLM backends behind one interface (``LLMBackend``): pick one with ``make_llm``.

make_llm("offline")                      rule-based, deterministic, no network (the default)
make_llm("offline", token_delay=0.02)    ... streaming one word every 20 ms
make_llm("openai")                       OpenAI-compatible endpoint from OPENAI_BASE_URL,
                                         OPENAI_API_KEY, VENTROS_LLM_MODEL
make_llm("openai", base_url="http://localhost:11434/v1", model="llama3.2")   # Ollama
"""

from __future__ import annotations

from typing import Any

from ventros import ConfigurationError

from .base import Classification, ClassificationRequest, GenerationRequest, LLMBackend, ResponseFacts
from .offline import OfflineLLM
from .openai import OpenAICompatibleLLM

BACKENDS = ("offline", "openai")


def make_llm(name: str = "offline", **options: Any) -> LLMBackend:
    """A backend by name ("offline" or "openai"); ``options`` go to its constructor."""
    try:
        if name == "offline":
            return OfflineLLM(**options)
        if name == "openai":
            return OpenAICompatibleLLM(**options)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"invalid options for LLM backend {name!r}: {exc}") from exc
    raise ConfigurationError(f"unknown LLM backend {name!r}; choose one of {', '.join(BACKENDS)}")


__all__ = [
    "BACKENDS",
    "Classification",
    "ClassificationRequest",
    "GenerationRequest",
    "LLMBackend",
    "OfflineLLM",
    "OpenAICompatibleLLM",
    "ResponseFacts",
    "make_llm",
]
