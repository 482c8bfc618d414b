"""The OpenAI-compatible backend against a real local HTTP server (JSON, SSE, 429, 5xx, down)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import ventros
from ventros.agents import ChunkType
from ventros_server.agents import OpenAICompatibleLLM, make_llm
from ventros_server.agents.llm.base import ClassificationRequest, GenerationRequest, ResponseFacts
from ventros_server.agents.llm.rules import INTENTS

from .conftest import agent_stack, closed_port_address, execute_request, stream_request
from .fake_openai import FakeOpenAI, Scripted


@pytest.fixture
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


def _llm(fake_or_url: FakeOpenAI | str, **options: object) -> OpenAICompatibleLLM:
    url = fake_or_url if isinstance(fake_or_url, str) else fake_or_url.base_url
    options = {"api_key": "sk-test", "model": "test-model", "backoff": 0.01, "max_retries": 2, **options}
    llm = make_llm("openai", base_url=url, **options)
    assert isinstance(llm, OpenAICompatibleLLM)
    return llm


def _generation(**kw: object) -> GenerationRequest:
    facts = ResponseFacts(language="pt", intent="purchase_intent")
    return GenerationRequest(system="You are helpful.", prompt="User message: oi", facts=facts, **kw)  # type: ignore[arg-type]


async def test_execute_through_openai_backend(upstream: FakeOpenAI, memory_address: str) -> None:
    async with agent_stack(memory_address, llm=_llm(upstream)) as (_, client):
        resp = await client.execute_agent(execute_request())
    assert resp.response == upstream.reply
    assert resp.intent == "purchase_intent" and resp.confidence == pytest.approx(0.93)
    assert resp.metadata["llm_backend"] == "openai" and resp.metadata["llm_model"] == "test-model"
    assert resp.metadata["intent_source"] == "llm" and resp.metadata["sentiment"] == "positive"
    classify, generate = upstream.requests
    assert classify["stream"] is False and classify["temperature"] == 0.0
    assert generate["stream"] is True and generate["model"] == "test-model"
    assert generate["max_tokens"] == 1024 and generate["temperature"] == pytest.approx(0.7)
    # The prompt carries what memory told the agent and the decided next steps.
    assert "João Silva" in generate["messages"][1]["content"]
    assert "create_lead" in generate["messages"][0]["content"]
    assert "Portuguese" in generate["messages"][0]["content"]
    assert upstream.headers[0]["authorization"] == "Bearer sk-test"


async def test_sse_streams_token_by_token_over_grpc(memory_address: str) -> None:
    with FakeOpenAI(reply="one two three four five six", token_delay=0.01) as upstream:
        async with agent_stack(memory_address, llm=_llm(upstream)) as (_, client):
            chunks = [c async for c in client.stream_agent_execution(stream_request())]
    partials = [c.content for c in chunks if c.type == ChunkType.PARTIAL]
    assert partials == ["one ", "two ", "three ", "four ", "five ", "six"]
    assert chunks[-1].type == ChunkType.FINAL and chunks[-1].content == "one two three four five six"


async def test_retries_429_then_succeeds(upstream: FakeOpenAI) -> None:
    upstream.script.extend([Scripted(429, headers={"retry-after": "0.01"}), Scripted(503)])
    llm = _llm(upstream)
    text = "".join([t async for t in llm.stream(_generation())])
    await llm.aclose()
    assert text == upstream.reply and len(upstream.requests) == 3


async def test_persistent_429_is_resource_exhausted(upstream: FakeOpenAI, memory_address: str) -> None:
    upstream.script.extend(
        [Scripted(429, {"error": {"message": "Rate limit reached"}}, {"retry-after": "0.02"})] * 3
    )
    async with agent_stack(memory_address, llm=_llm(upstream)) as (_, client):
        with pytest.raises(ventros.ResourceExhaustedError) as err:
            await client.execute_agent(execute_request())
    assert err.value.code == "LLM_RATE_LIMITED"
    assert err.value.metadata["retry_after_ms"] == "20"
    assert err.value.metadata["upstream_status"] == "429"
    assert "Rate limit reached" in err.value.message
    assert len(upstream.requests) == 3  # first try + 2 retries


async def test_retry_after_beyond_max_backoff_is_not_waited_for(upstream: FakeOpenAI) -> None:
    upstream.script.append(Scripted(429, headers={"retry-after": "120"}))
    llm = _llm(upstream)
    with pytest.raises(ventros.ResourceExhaustedError) as err:
        await llm.classify(ClassificationRequest(message="oi", labels=INTENTS))
    await llm.aclose()
    assert err.value.metadata["retry_after_ms"] == "120000" and len(upstream.requests) == 1


@pytest.mark.parametrize(
    ("status", "expected", "code"),
    [
        (500, ventros.InternalError, "LLM_ERROR"),
        (503, ventros.UnavailableError, "LLM_UNAVAILABLE"),
        (401, ventros.InternalError, "LLM_AUTH_FAILED"),
        (400, ventros.InternalError, "LLM_ERROR"),
    ],
)
async def test_upstream_errors_map_to_status(
    upstream: FakeOpenAI, memory_address: str, status: int, expected: type[ventros.StatusError], code: str
) -> None:
    upstream.script.extend([Scripted(status)] * 3)
    async with agent_stack(memory_address, llm=_llm(upstream)) as (_, client):
        with pytest.raises(expected) as err:
            await client.execute_agent(execute_request())
    assert err.value.code == code and err.value.metadata["upstream_status"] == str(status)
    retried = status in (500, 503)
    assert len(upstream.requests) == (3 if retried else 1)


async def test_unreachable_backend_is_unavailable(memory_address: str) -> None:
    async with agent_stack(memory_address, llm=_llm(f"http://{closed_port_address()}/v1")) as (_, client):
        with pytest.raises(ventros.UnavailableError) as err:
            await client.execute_agent(execute_request())
        assert err.value.code == "LLM_UNAVAILABLE"
        received = []
        with pytest.raises(ventros.UnavailableError):
            async for chunk in client.stream_agent_execution(stream_request()):
                received.append(chunk)
        assert received[-1].type == ChunkType.ERROR and received[-1].metadata["status"] == "UNAVAILABLE"


async def test_error_event_inside_the_stream_is_internal(upstream: FakeOpenAI, memory_address: str) -> None:
    upstream.script.append(Scripted())  # the classification call: default answer
    upstream.script.append(
        Scripted(
            sse_lines=[
                'data: {"choices":[{"delta":{"content":"Olá "}}]}',
                'data: {"error":{"message":"overloaded"}}',
            ]
        )
    )
    async with agent_stack(memory_address, llm=_llm(upstream)) as (_, client):
        received = []
        with pytest.raises(ventros.InternalError) as err:
            async for chunk in client.stream_agent_execution(stream_request()):
                received.append(chunk)
    assert "overloaded" in err.value.message
    assert [c.content for c in received if c.type == ChunkType.PARTIAL] == ["Olá "]
    assert received[-1].type == ChunkType.ERROR and received[-1].metadata["status"] == "INTERNAL"


async def test_unparseable_classification_falls_back_to_rules(upstream: FakeOpenAI) -> None:
    upstream.script.append(
        Scripted(body={"choices": [{"message": {"content": "I think they want to buy!"}}]})
    )
    llm = _llm(upstream)
    result = await llm.classify(ClassificationRequest(message="Quero comprar o produto X", labels=INTENTS))
    await llm.aclose()
    assert result.source == "rules_fallback" and result.intent == "purchase_intent"


async def test_malformed_completion_is_internal(upstream: FakeOpenAI) -> None:
    upstream.script.append(Scripted(body={"unexpected": True}))
    llm = _llm(upstream)
    with pytest.raises(ventros.InternalError) as err:
        await llm.classify(ClassificationRequest(message="oi", labels=INTENTS))
    await llm.aclose()
    assert err.value.code == "LLM_BAD_RESPONSE"


async def test_deadline_cancels_the_upstream_request(memory_address: str) -> None:
    words = " ".join(f"w{i}" for i in range(400))
    with FakeOpenAI(reply=words, token_delay=0.02) as upstream:
        async with agent_stack(memory_address, llm=_llm(upstream)) as (_, client):
            with pytest.raises(ventros.DeadlineExceededError):
                await client.execute_agent(
                    execute_request(options=ventros.agents.ExecutionOptions(timeout_ms=400))
                )
            for _ in range(100):  # the server notices the closed connection on its next write
                if upstream.disconnects:
                    break
                await asyncio.sleep(0.02)
        assert upstream.disconnects == 1
        assert upstream.streamed_tokens < 400


def test_env_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1/")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    monkeypatch.setenv("VENTROS_LLM_MODEL", "llama3.2")
    llm = make_llm("openai")
    assert isinstance(llm, OpenAICompatibleLLM)
    assert (llm.base_url, llm.api_key, llm.model) == ("http://127.0.0.1:11434/v1", "sk-env", "llama3.2")
    monkeypatch.delenv("OPENAI_BASE_URL")
    monkeypatch.delenv("VENTROS_LLM_MODEL")
    default = make_llm("openai")
    assert isinstance(default, OpenAICompatibleLLM)
    assert (default.base_url, default.model) == ("https://api.openai.com/v1", "gpt-4o-mini")


def test_make_llm_rejects_unknown_names_and_options() -> None:
    with pytest.raises(ventros.ConfigurationError, match="unknown LLM backend"):
        make_llm("gpt")
    with pytest.raises(ventros.ConfigurationError):
        make_llm("offline", temperature=3)
    assert make_llm("offline").name == "offline"
