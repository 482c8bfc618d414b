"""Test LLM backends: slow ones (to provoke deadlines and cancellation) and recording ones."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from ventros_server.agents.llm import OfflineLLM
from ventros_server.agents.llm.base import Classification, ClassificationRequest, GenerationRequest


class SlowLLM:
    """Rule-based classification; streams ``tokens`` words, ``delay`` seconds apart, recording
    how many it produced, how many streams run at once, and whether it was cancelled."""

    name = "slow"
    model = "slow-test"

    def __init__(self, *, delay: float = 0.05, tokens: int = 10_000) -> None:
        self.delay = delay
        self.tokens = tokens
        self.emitted = 0
        self.active = 0
        self.max_active = 0
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.finished = 0
        self._rules = OfflineLLM()

    async def classify(self, request: ClassificationRequest) -> Classification:
        return await self._rules.classify(request)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        self.started.set()
        try:
            for i in range(self.tokens):
                await asyncio.sleep(self.delay)
                self.emitted += 1
                yield f"w{i} "
            self.finished += 1
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        finally:
            self.active -= 1

    async def aclose(self) -> None:
        return None


class RecordingLLM(OfflineLLM):
    """The offline backend, remembering every generation request it got."""

    def __init__(self) -> None:
        super().__init__()
        self.generations: list[GenerationRequest] = []

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        self.generations.append(request)
        async for token in super().stream(request):
            yield token


class FailingLLM(OfflineLLM):
    """Classifies, streams ``good_tokens`` words, then raises ``error``."""

    name = "failing"

    def __init__(self, error: Exception, good_tokens: int = 2) -> None:
        super().__init__()
        self.error = error
        self.good_tokens = good_tokens

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        for i in range(self.good_tokens):
            yield f"t{i} "
        raise self.error
