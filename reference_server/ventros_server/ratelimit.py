"""Per-caller token-bucket rate limiting for every ventros service (RESOURCE_EXHAUSTED).

    limiter = RateLimiter(rate=20, burst=40)             # 20 calls/s sustained, bursts of 40
    server, health = build_server(services, listeners=[limiter])

The limiter is a grpclib RecvRequest listener, so it covers every service of the server
(AgentService and MemoryService alike) before any handler runs or any request is decoded.
A caller is identified by its API key (the ``authorization`` metadata, e.g. "Bearer <key>",
kept only as a SHA-256 digest), else by its peer IP address. Each call costs one token; a call
that finds the caller's bucket empty ends with RESOURCE_EXHAUSTED and ErrorDetails
{code: "RATE_LIMITED", metadata: {"retry_after_ms": <ms until a token is available>}}.
Health checks and reflection are exempt by default.

``RateLimiter.from_env()`` reads VENTROS_RATE_LIMIT_RPS and VENTROS_RATE_LIMIT_BURST (None
when RPS is unset, i.e. no limiting).
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from grpclib.events import RecvRequest, listen
from ventros import ConfigurationError, ResourceExhaustedError

RATE_ENV = "VENTROS_RATE_LIMIT_RPS"
BURST_ENV = "VENTROS_RATE_LIMIT_BURST"
DEFAULT_EXEMPT = ("/grpc.health.", "/grpc.reflection.")


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets keyed by caller. ``rate`` tokens/s refill up to ``burst`` tokens."""

    def __init__(
        self,
        rate: float,
        burst: int | None = None,
        *,
        exempt_prefixes: Iterable[str] = DEFAULT_EXEMPT,
        max_callers: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not rate > 0 or math.isinf(rate):
            raise ConfigurationError(f"rate limit must be a positive number of calls per second, got {rate}")
        burst = max(1, math.ceil(rate)) if burst is None else burst
        if burst < 1:
            raise ConfigurationError(f"rate limit burst must be >= 1, got {burst}")
        self.rate = float(rate)
        self.burst = int(burst)
        self.exempt_prefixes = tuple(exempt_prefixes)
        self.max_callers = max_callers
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RateLimiter | None:
        env = os.environ if environ is None else environ
        raw_rate = env.get(RATE_ENV, "").strip()
        if not raw_rate:
            return None
        raw_burst = env.get(BURST_ENV, "").strip()
        try:
            return cls(float(raw_rate), int(raw_burst) if raw_burst else None)
        except ValueError as exc:
            raise ConfigurationError(f"invalid {RATE_ENV}/{BURST_ENV}: {exc}") from exc

    # -- the bucket arithmetic -----------------------------------------------------------------

    @staticmethod
    def caller_key(metadata: Mapping[str, Any], peer_host: str) -> str:
        """ "key:<digest>" for a caller with an authorization header, else "peer:<ip>"."""
        auth = metadata.get("authorization")
        if isinstance(auth, bytes):
            auth = auth.decode("latin-1")
        if auth:
            token = auth.split(None, 1)[1] if auth.lower().startswith("bearer ") else auth
            return "key:" + hashlib.sha256(token.strip().encode()).hexdigest()[:32]
        return f"peer:{peer_host or 'unknown'}"

    def try_acquire(self, key: str, cost: float = 1.0) -> float:
        """Take ``cost`` tokens: 0.0 when allowed, else the seconds until they will be there."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
            if len(self._buckets) > self.max_callers:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
        if bucket.tokens >= cost:
            bucket.tokens -= cost
            return 0.0
        return (cost - bucket.tokens) / self.rate

    def check(self, key: str, method: str = "", cost: float = 1.0) -> None:
        """Raise ResourceExhaustedError ("RATE_LIMITED", retry_after_ms) if ``key`` is over its rate."""
        wait = self.try_acquire(key, cost)
        if wait > 0:
            retry_after_ms = max(1, math.ceil(wait * 1000))
            raise ResourceExhaustedError.of(
                "RATE_LIMITED",
                f"too many requests: the limit is {self.rate:g} calls/s (bursts of {self.burst}) per caller",
                suggestions=[f"Retry after {retry_after_ms} ms."],
                retry_after_ms=str(retry_after_ms),
                **({"method": method} if method else {}),
            )

    # -- grpclib integration --------------------------------------------------------------------

    def install(self, server: Any) -> None:
        """Listen to ``server``'s RecvRequest events (what ``build_server(listeners=[...])`` calls)."""
        listen(server, RecvRequest, self._on_recv_request)

    __call__ = install

    async def _on_recv_request(self, event: RecvRequest) -> None:
        method = event.method_name
        if method.startswith(self.exempt_prefixes):
            return
        addr = event.peer.addr() if event.peer is not None else None
        key = self.caller_key(event.metadata, addr[0] if addr else "")
        try:
            self.check(key, method)
        except ResourceExhaustedError as exc:
            grpc_error = exc.to_grpc()

            async def reject(stream: Any) -> None:
                raise grpc_error

            event.method_func = reject


__all__ = ["BURST_ENV", "DEFAULT_EXEMPT", "RATE_ENV", "RateLimiter"]
