"""A grpcio client (standing in for the Go CRM) against the AgentService: gzip, details, streams."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import ventros

from .conftest import CHANNEL, CONTACT, agent_stack
from .llms import FailingLLM

grpc = pytest.importorskip("grpc", reason="grpcio is a dev-only interop peer")
rpc_status = pytest.importorskip("grpc_status.rpc_status")
generate = pytest.importorskip("tests.foundation.grpcio_peer").generate

SERVICE = "/ventros.agents.AgentService"


@pytest.fixture(scope="module")
def pb2(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return generate(tmp_path_factory.mktemp("agents_grpcio_stubs"))


def _unary(channel: grpc.Channel, pb2: dict[str, Any], method: str, request: Any, reply: str) -> Any:
    call = channel.unary_unary(
        f"{SERVICE}/{method}",
        request_serializer=type(request).SerializeToString,
        response_deserializer=getattr(pb2["agents"], reply).FromString,
    )
    return call(request, timeout=10)


def _stream(
    channel: grpc.Channel, pb2: dict[str, Any], request: Any
) -> tuple[list[Any], grpc.RpcError | None]:
    call = channel.unary_stream(
        f"{SERVICE}/StreamAgentExecution",
        request_serializer=type(request).SerializeToString,
        response_deserializer=pb2["agents"].AgentStreamChunk.FromString,
    )
    chunks: list[Any] = []
    try:
        for chunk in call(request, timeout=10):
            chunks.append(chunk)
    except grpc.RpcError as exc:
        return chunks, exc
    return chunks, None


def _details(pb2: dict[str, Any], error: grpc.RpcError) -> Any:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "no grpc-status-details-bin trailer"
    details = pb2["errors"].ErrorDetails()
    assert status.details[0].Unpack(details)
    return details


async def test_go_style_client_runs_the_spec_example(pb2: dict[str, Any], memory_address: str) -> None:
    agents = pb2["agents"]
    request = agents.ExecuteAgentRequest(
        agent_type="CustomerServiceAgent",
        contact_id=CONTACT,
        message="Oi, quero saber sobre o produto X",
        channel_id=CHANNEL,
        context={"last_purchase_date": "2024-09-15", "customer_tier": "premium"},
        options=agents.ExecutionOptions(timeout_ms=30000, temperature=0.7),
    )
    async with agent_stack(memory_address) as (_, client):
        with grpc.insecure_channel(client.address, compression=grpc.Compression.Gzip) as channel:
            listing = await asyncio.to_thread(
                _unary, channel, pb2, "ListAvailableAgents", agents.ListAgentsRequest(), "ListAgentsResponse"
            )
            resp = await asyncio.to_thread(
                _unary, channel, pb2, "ExecuteAgent", request, "ExecuteAgentResponse"
            )
            with pytest.raises(grpc.RpcError) as err:
                bad = agents.GetAgentCapabilitiesRequest(agent_type="XYZ")
                await asyncio.to_thread(
                    _unary, channel, pb2, "GetAgentCapabilities", bad, "GetAgentCapabilitiesResponse"
                )
    assert listing.total_count == 5
    assert resp.intent == "product_inquiry" and resp.response.startswith("Olá, João!")
    assert "2024-09-15" in resp.response
    assert list(resp.suggested_actions) == ["send_product_catalog", "create_lead"]
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    details = _details(pb2, err.value)
    assert details.code == "AGENT_NOT_FOUND" and details.message == "Agent type 'XYZ' does not exist"


async def test_go_style_stream_and_error_chunk(pb2: dict[str, Any], memory_address: str) -> None:
    agents = pb2["agents"]
    request = agents.StreamAgentRequest(
        agent_type="CustomerServiceAgent",
        contact_id=CONTACT,
        message="Oi, quero comprar produto X",
        channel_id=CHANNEL,
    )
    async with agent_stack(memory_address) as (_, client):
        with grpc.insecure_channel(client.address) as channel:
            chunks, error = await asyncio.to_thread(_stream, channel, pb2, request)
    assert error is None
    assert chunks[-1].type == agents.FINAL and chunks[-1].metadata["intent"] == "purchase_intent"

    failing = FailingLLM(ventros.InternalError.of("LLM_ERROR", "model crashed"))
    async with agent_stack(memory_address, llm=failing) as (_, client):
        with grpc.insecure_channel(client.address) as channel:
            chunks, error = await asyncio.to_thread(_stream, channel, pb2, request)
    assert error is not None and error.code() == grpc.StatusCode.INTERNAL
    assert chunks[-1].type == agents.ERROR and chunks[-1].metadata["error_code"] == "LLM_ERROR"
    assert _details(pb2, error).code == "LLM_ERROR"
