"""Transport-level contract, per service: health, unknown methods, gzip, the 50 MiB cap and deadlines.

These checks build requests by hand (raw HTTP/2 through h2), so they observe exactly what the
server sends. Statuses the gRPC framework itself produces before any handler runs (UNIMPLEMENTED
for an unknown method or encoding, RESOURCE_EXHAUSTED for an over-cap message, DEADLINE_EXCEEDED
for an expired grpc-timeout) are checked without requiring ErrorDetails: grpc-go, for one, sends
none there (docs/conformance.md, "Decisions").
"""

from __future__ import annotations

from typing import Any

import pytest
from grpclib.const import Status
from ventros import agents as pb_agents
from ventros import memory as pb_memory

from .. import contract as c
from .._transport import Target, frame
from ..expect import expect_error, fail, replay_hint
from ._support import check, fresh_id

P = pytest.param


def _per_service(source: str) -> list[Any]:
    return [
        P("memory", marks=check(source, "memory"), id="memory"),
        P("agent", marks=check(source, "agent"), id="agent"),
    ]


def _cheap(service: str) -> tuple[str, Any, type]:
    """A cheap request that is OK on each service."""
    if service == "memory":
        rpc = c.RPCS["SearchMemories"]
        request = pb_memory.SearchMemoriesRequest(
            contact_id=fresh_id(), query="gzip", mode=pb_memory.SearchMode.KEYWORD_ONLY
        )
        return rpc.path, request, rpc.response
    rpc = c.RPCS["ListAvailableAgents"]
    return rpc.path, pb_agents.ListAgentsRequest(), rpc.response


def _raw_fail(
    summary: str, target: Target, raw: Any, path: str, request: Any, headers: dict[str, str] | None = None
) -> None:
    hint = replay_hint(target.address, path, request, headers)
    fail(f"{summary}\ngot: {raw.describe()}\n{hint}", None, target.address)


@pytest.mark.parametrize(
    "service", _per_service('spec 7.3; contract.md Transport (Health): grpc.health.v1, "" = the whole server')
)
def test_health(target: Target, service: str) -> None:
    """grpc.health.v1.Health/Check answers SERVING for "", the alias and the full service name;
    NOT_FOUND for a service the server does not run."""
    from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse

    path = "/grpc.health.v1.Health/Check"
    problems = []
    for name in ("", service, c.SERVICE_ALIASES[service]):
        outcome = target.unary(path, HealthCheckRequest(service=name), HealthCheckResponse)
        if not outcome.ok:
            problems.append(f"Check(service={name!r}): {outcome.describe()}")
        elif outcome.response.status != HealthCheckResponse.SERVING:
            problems.append(f"Check(service={name!r}): status {outcome.response.status}, expected SERVING")
    outcome = target.unary(
        path, HealthCheckRequest(service="ventros.conformance.NoSuchService"), HealthCheckResponse
    )
    if outcome.status != Status.NOT_FOUND:
        problems.append(f"Check of an unknown service: {outcome.describe()}, expected NOT_FOUND")
    if problems:
        fail("health checks", None, target.address, problems)


@pytest.mark.parametrize(
    "service", _per_service("proto: 'UNIMPLEMENTED an unknown method'; contract.md Status codes")
)
@pytest.mark.parametrize("which", ["method", "service"])
def test_unknown_method(target: Target, service: str, which: str) -> None:
    """A call to a method (or service) the server does not have is UNIMPLEMENTED."""
    path, request, response = _cheap(service)
    if which == "method":
        path = f"/{c.SERVICE_ALIASES[service]}/NoSuchMethodConformance"
    else:
        path = "/ventros.conformance.NoSuchService/Call"
    outcome = target.unary(path, request, response)
    if outcome.status != Status.UNIMPLEMENTED:
        fail("expected UNIMPLEMENTED", outcome, target.address)


@pytest.mark.parametrize("service", _per_service("spec 5.3; contract.md Transport (Compression)"))
def test_gzip_request_raw(target: Target, service: str) -> None:
    """A gzip-compressed request frame (flag 1, grpc-encoding: gzip) is read and answered OK."""
    path, request, response_type = _cheap(service)
    raw = target.raw(path, frame(request, compress=True), headers=[("grpc-encoding", "gzip")])
    if raw.grpc_status != Status.OK:
        _raw_fail("a gzip-compressed request was not answered OK", target, raw, path, request)
    messages = raw.messages()
    if len(messages) != 1:
        _raw_fail(f"expected one response message, got {len(messages)}", target, raw, path, request)
    response_type.parse(messages[0])  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "service", _per_service("spec 5.3 Compression (grpc-go's gzip compressor, here grpcio's)")
)
def test_gzip_request_grpcio(target: Target, service: str) -> None:
    """A grpcio channel with compression=Gzip gets OK (interop with a second gRPC implementation)."""
    grpc = pytest.importorskip(
        "grpc", reason="grpcio is not installed: the raw-HTTP/2 gzip check covers this"
    )
    path, request, response_type = _cheap(service)
    channel = grpc.insecure_channel(target.address, compression=grpc.Compression.Gzip)
    try:
        method = channel.unary_unary(
            path,
            request_serializer=bytes,
            response_deserializer=response_type.parse,  # type: ignore[attr-defined]
        )
        metadata = tuple(target.metadata.items())
        try:
            method(request, timeout=30, metadata=metadata or None)
        except grpc.RpcError as exc:
            fail(f"grpcio with gzip compression got {exc.code().name}: {exc.details()}", None, target.address)
    finally:
        channel.close()


@pytest.mark.parametrize(
    "service",
    _per_service(
        "proto: 'UNIMPLEMENTED ... a grpc-encoding other than identity/gzip'; contract.md Transport (Compression)"
    ),
)
def test_unsupported_encoding(target: Target, service: str) -> None:
    """A request compressed with an encoding the contract does not allow (snappy) is UNIMPLEMENTED."""
    path, request, _ = _cheap(service)
    raw = target.raw(path, frame(request, compress=True), headers=[("grpc-encoding", "snappy")])
    if raw.grpc_status != Status.UNIMPLEMENTED:
        _raw_fail("expected UNIMPLEMENTED for grpc-encoding: snappy", target, raw, path, request)


def _big(service: str, size: int) -> tuple[str, Any]:
    if service == "memory":
        request: Any = pb_memory.StoreMemoryRequest(
            contact_id=fresh_id(), content="a" * size, memory_type="fact"
        )
        return c.RPCS["StoreMemory"].path, request
    request = pb_agents.ExecuteAgentRequest(
        agent_type="NoSuchAgentConformance", contact_id=fresh_id(), message="a" * size, channel_id=fresh_id()
    )
    return c.RPCS["ExecuteAgent"].path, request


@pytest.mark.parametrize(
    "service", _per_service("spec 5.1; contract.md Transport (Message cap): RESOURCE_EXHAUSTED above 50 MiB")
)
def test_over_cap_message(target: Target, service: str) -> None:
    """A request message of 50 MiB + 1 KiB is RESOURCE_EXHAUSTED (the server need not read it)."""
    path, request = _big(service, c.MAX_MESSAGE_BYTES + 1024)
    body = frame(request)
    raw = target.raw(path, body, timeout=120)
    if raw.grpc_status != Status.RESOURCE_EXHAUSTED:
        fail(f"expected RESOURCE_EXHAUSTED for a {len(body) - 5}-byte request message\ngot: {raw.describe()}",
             None, target.address)  # fmt: skip


@pytest.mark.parametrize(
    "service", _per_service("spec 5.1; contract.md Transport (Message cap): up to 50 MiB is accepted")
)
def test_large_message_below_cap(target: Target, service: str) -> None:
    """A 16 MiB request passes the transport and is judged on its fields: INVALID_ARGUMENT (too long),
    not RESOURCE_EXHAUSTED."""
    path, request = _big(service, 16 * 1024 * 1024)
    name = path.rsplit("/", 1)[-1]
    outcome = target.unary(path, request, c.RPCS[name].response, timeout=120)
    field = "content" if service == "memory" else "message"
    if outcome.status == Status.RESOURCE_EXHAUSTED:
        fail("a 16 MiB message was refused as too large: the server's receive cap is below 50 MiB",
             None, target.address)  # fmt: skip
    expect_error(outcome, Status.INVALID_ARGUMENT, target.address, field=field)


@pytest.mark.parametrize("service", _per_service("proto ExecuteAgent: 'DEADLINE_EXCEEDED: the caller's deadline ... "
                                                 "passed; the work is cancelled'; contract.md Transport (Deadlines); spec 5.2"))  # fmt: skip
def test_expired_deadline(target: Target, service: str, request: pytest.FixtureRequest) -> None:
    """A request whose grpc-timeout has expired on arrival (1 ns) is answered DEADLINE_EXCEEDED by the server."""
    if service == "memory":
        path, req, _ = _cheap("memory")
    else:
        agent_types = request.getfixturevalue("agent_types")
        req = pb_agents.ExecuteAgentRequest(
            agent_type=agent_types[0] if agent_types else "NoSuchAgentConformance",
            contact_id=fresh_id(), message="deadline check", channel_id=fresh_id(),
        )  # fmt: skip
        path = c.RPCS["ExecuteAgent"].path
    raw = target.raw(path, frame(req), headers=[("grpc-timeout", "1n")], timeout=30)
    if raw.grpc_status != Status.DEADLINE_EXCEEDED:
        _raw_fail(
            "expected DEADLINE_EXCEEDED for grpc-timeout: 1n", target, raw, path, req, {"grpc-timeout": "1n"}
        )
