"""StreamAgentExecution: chunk order, incremental text, FINAL metadata, ERROR + status, cancellation."""

from __future__ import annotations

import asyncio
from contextlib import aclosing

import pytest
import ventros
from ventros.agents import ChunkType, ExecutionOptions

from .conftest import agent_stack, execute_request, stream_request
from .llms import FailingLLM, SlowLLM


async def test_stream_order_and_final(client: ventros.AgentClient) -> None:
    chunks = [c async for c in client.stream_agent_execution(stream_request())]
    types = [c.type for c in chunks]
    assert types[0] == ChunkType.THOUGHT
    assert types[-1] == ChunkType.FINAL and types.count(ChunkType.FINAL) == 1
    assert ChunkType.ERROR not in types
    first_partial = types.index(ChunkType.PARTIAL)
    assert ChunkType.TOOL_CALL in types[:first_partial]  # memory looked up before answering
    partials = [c.content for c in chunks if c.type == ChunkType.PARTIAL]
    assert len(partials) > 5  # token by token, not one block
    final = chunks[-1]
    assert "".join(partials).strip() == final.content
    md = final.metadata
    assert md["intent"] == "purchase_intent" and 0.8 < float(md["confidence"]) <= 1.0
    assert md["suggested_actions"] == "create_lead,update_pipeline_status,send_product_catalog"
    assert int(md["latency_ms"]) >= 0 and md["memory"] == "ok" and md["llm_backend"] == "offline"
    calls = [c for c in chunks if c.type == ChunkType.TOOL_CALL]
    assert calls[0].content.startswith("Calling get_contact_context(")
    assert calls[1].metadata["phase"] == "result" and "João Silva" in calls[1].content
    assert [c.metadata["tool"] for c in calls if c.metadata["phase"] == "result"] == [
        "get_contact_context",
        "search_memories",
        "store_memory",
    ]


async def test_stream_and_execute_are_the_same_run(client: ventros.AgentClient) -> None:
    req = dict(
        message="Hello, how much does the Pro plan cost?", options=ExecutionOptions(tools=["search_memories"])
    )
    resp = await client.execute_agent(execute_request(**req))
    chunks = [c async for c in client.stream_agent_execution(stream_request(**req))]
    final = chunks[-1]
    assert final.content == resp.response
    assert final.metadata["intent"] == resp.intent
    assert final.metadata["suggested_actions"] == ",".join(resp.suggested_actions)
    assert [c.content for c in chunks if c.type == ChunkType.THOUGHT] == resp.thoughts.reasoning_steps


async def test_partial_text_arrives_while_the_model_is_still_producing(memory_address: str) -> None:
    llm = SlowLLM(delay=0.02, tokens=30)
    async with agent_stack(memory_address, llm=llm) as (_, client):
        seen_while_running = []
        async for chunk in client.stream_agent_execution(stream_request()):
            if chunk.type == ChunkType.PARTIAL:
                seen_while_running.append(llm.emitted < llm.tokens)
        assert seen_while_running[0] is True  # the first PARTIAL came before the model finished
        assert len(seen_while_running) == 30 and llm.finished == 1


async def test_failure_mid_stream_sends_error_chunk_then_status(memory_address: str) -> None:
    error = ventros.UnavailableError.of("LLM_UNAVAILABLE", "model server went away")
    async with agent_stack(memory_address, llm=FailingLLM(error, good_tokens=2)) as (_, client):
        received = []
        with pytest.raises(ventros.UnavailableError) as err:
            async for chunk in client.stream_agent_execution(stream_request()):
                received.append(chunk)
    assert err.value.code == "LLM_UNAVAILABLE"
    types = [c.type for c in received]
    assert types.count(ChunkType.PARTIAL) == 2 and ChunkType.FINAL not in types
    assert types[-1] == ChunkType.ERROR and types.count(ChunkType.ERROR) == 1
    assert received[-1].metadata == {"status": "UNAVAILABLE", "error_code": "LLM_UNAVAILABLE"}


async def test_stream_timeout_ms_sends_error_then_deadline_exceeded(memory_address: str) -> None:
    llm = SlowLLM(delay=0.05)
    async with agent_stack(memory_address, llm=llm) as (_, client):
        received = []
        with pytest.raises(ventros.DeadlineExceededError):
            async for chunk in client.stream_agent_execution(
                stream_request(options=ExecutionOptions(timeout_ms=300))
            ):
                received.append(chunk)
        assert received[-1].type == ChunkType.ERROR
        assert received[-1].metadata["status"] == "DEADLINE_EXCEEDED"
        await asyncio.wait_for(llm.cancelled.wait(), 5)


async def test_stream_has_no_default_deadline(memory_address: str) -> None:
    # 40 tokens x 20 ms: fine without timeout_ms, since a stream's deadline is the client's.
    llm = SlowLLM(delay=0.02, tokens=40)
    async with agent_stack(memory_address, llm=llm) as (_, client):
        chunks = [c async for c in client.stream_agent_execution(stream_request())]
    assert chunks[-1].type == ChunkType.FINAL and llm.finished == 1


async def test_client_cancellation_stops_the_work(memory_address: str) -> None:
    llm = SlowLLM(delay=0.05)
    async with agent_stack(memory_address, llm=llm) as (service, client):
        partials = 0
        async with aclosing(client.stream_agent_execution(stream_request())) as chunks:
            async for chunk in chunks:
                if chunk.type == ChunkType.PARTIAL:
                    partials += 1
                    if partials == 3:
                        break  # leaving the block closes the stream: the client cancels the call
        await asyncio.wait_for(llm.cancelled.wait(), 5)
        emitted = llm.emitted
        await asyncio.sleep(0.25)
        assert llm.emitted == emitted and llm.active == 0 and llm.finished == 0
        assert service.registry.runs("CustomerServiceAgent") == 0  # no FINAL, no latency sample


async def test_client_task_cancellation_stops_the_work(memory_address: str) -> None:
    llm = SlowLLM(delay=0.05)
    async with agent_stack(memory_address, llm=llm) as (_, client):

        async def consume() -> None:
            async for _ in client.stream_agent_execution(stream_request()):
                pass

        task = asyncio.create_task(consume())
        await asyncio.wait_for(llm.started.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(llm.cancelled.wait(), 5)
        assert llm.active == 0 and llm.finished == 0


async def test_unknown_agent_on_stream_is_not_found_without_chunks(client: ventros.AgentClient) -> None:
    with pytest.raises(ventros.NotFoundError) as err:
        async for _ in client.stream_agent_execution(stream_request(agent_type="LeadQualifer")):
            pytest.fail("no chunk before NOT_FOUND")
    assert err.value.suggestions[0] == "Try LeadQualifierAgent instead"
