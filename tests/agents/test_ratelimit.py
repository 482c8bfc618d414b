"""Per-caller token buckets: RESOURCE_EXHAUSTED with retry_after_ms, over real gRPC."""

from __future__ import annotations

import pytest
import ventros
from grpclib.client import Channel
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest
from ventros_server.ratelimit import RateLimiter

from .conftest import agent_stack, execute_request
from .fake_memory import FakeMemoryService


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_arithmetic() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=2, burst=3, clock=clock)
    assert [limiter.try_acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.try_acquire("a") == pytest.approx(0.5)  # 1 token at 2/s
    assert limiter.try_acquire("b") == 0.0  # another caller has its own bucket
    clock.now += 0.5
    assert limiter.try_acquire("a") == 0.0
    clock.now += 100
    assert [limiter.try_acquire("a") for _ in range(4)][-1] > 0  # refills up to burst only


def test_caller_key() -> None:
    by_key = RateLimiter.caller_key({"authorization": "Bearer sk-123"}, "10.0.0.1")
    assert by_key.startswith("key:") and "sk-123" not in by_key
    assert by_key == RateLimiter.caller_key({"authorization": "Bearer sk-123"}, "10.0.0.2")
    assert RateLimiter.caller_key({}, "10.0.0.1") == "peer:10.0.0.1"


def test_configuration() -> None:
    assert RateLimiter.from_env({}) is None
    limiter = RateLimiter.from_env({"VENTROS_RATE_LIMIT_RPS": "5", "VENTROS_RATE_LIMIT_BURST": "10"})
    assert limiter is not None and (limiter.rate, limiter.burst) == (5.0, 10)
    for bad in ({"VENTROS_RATE_LIMIT_RPS": "0"}, {"VENTROS_RATE_LIMIT_RPS": "x"}):
        with pytest.raises(ventros.ConfigurationError):
            RateLimiter.from_env(bad)


async def test_rate_limit_over_grpc_per_api_key(memory_address: str) -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=1, burst=2, clock=clock)
    async with agent_stack(memory_address, listeners=[limiter]) as (_, client):
        address = client.address
        alice = ventros.AgentClient(address, token="alice-key", retry=ventros.RetryPolicy(attempts=1))
        bob = ventros.AgentClient(address, token="bob-key", retry=ventros.RetryPolicy(attempts=1))
        try:
            await alice.list_agents()
            await alice.execute_agent(execute_request())
            with pytest.raises(ventros.ResourceExhaustedError) as err:
                await alice.execute_agent(execute_request())
            assert err.value.code == "RATE_LIMITED"
            assert err.value.metadata["retry_after_ms"] == "1000"
            assert err.value.metadata["method"] == "/ventros.agents.AgentService/ExecuteAgent"
            await bob.list_agents()  # a different key is a different caller
            # Health checks are exempt.
            channel = Channel("127.0.0.1", int(address.rsplit(":", 1)[1]))
            try:
                for _ in range(5):
                    await HealthStub(channel).Check(HealthCheckRequest(service=""))
            finally:
                channel.close()
            clock.now += 1.0  # one token back
            await alice.list_agents()
            with pytest.raises(ventros.ResourceExhaustedError):
                await alice.list_agents()
        finally:
            alice.close()
            bob.close()


async def test_rate_limit_without_key_uses_the_peer_address(memory_address: str) -> None:
    limiter = RateLimiter(rate=0.001, burst=1)
    async with agent_stack(memory_address, listeners=[limiter]) as (_, client):
        await client.list_agents()
        with pytest.raises(ventros.ResourceExhaustedError) as err:
            await client.list_agents()
        assert int(err.value.metadata["retry_after_ms"]) > 0
        other = ventros.AgentClient(client.address, retry=ventros.RetryPolicy(attempts=1))
        try:  # same IP, new connection: still the same caller
            with pytest.raises(ventros.ResourceExhaustedError):
                await other.list_agents()
        finally:
            other.close()


async def test_the_same_limiter_covers_the_memory_service(fake_memory: FakeMemoryService) -> None:
    from .conftest import serve

    limiter = RateLimiter(rate=0.001, burst=1)
    async with serve([fake_memory], listeners=[limiter]) as address:
        memory = ventros.MemoryClient(address, retry=ventros.RetryPolicy(attempts=1))
        try:
            await memory.search_memories(contact_id=execute_request().contact_id, query="delivery")
            with pytest.raises(ventros.ResourceExhaustedError):
                await memory.search_memories(contact_id=execute_request().contact_id, query="delivery")
        finally:
            memory.close()
