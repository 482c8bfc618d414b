"""Retry policy of spec section 4.3: 3 attempts at most, linear backoff, two retryable codes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from ._exceptions import DeadlineExceededError, UnavailableError

T = TypeVar("T")

#: INVALID_ARGUMENT and NOT_FOUND (and every other code) are never retried.
RETRYABLE = (DeadlineExceededError, UnavailableError)


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` tries in all; the n-th retry waits ``backoff * n`` seconds (spec: 1 s, 2 s)."""

    attempts: int = 3
    backoff: float = 1.0

    async def run(self, call: Callable[[], Awaitable[T]]) -> T:
        for attempt in range(1, self.attempts + 1):
            try:
                return await call()
            except RETRYABLE:
                if attempt == self.attempts:
                    raise
            await asyncio.sleep(self.backoff * attempt)
        raise AssertionError("unreachable")  # pragma: no cover


NO_RETRY = RetryPolicy(attempts=1)
