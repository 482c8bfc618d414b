"""AgentService: catalogue, capabilities, validation, NOT_FOUND, execution, streams, batches and
the options.timeout_ms deadline."""

from __future__ import annotations

from typing import Any

import pytest
from grpclib.const import Status
from ventros import agents as pb

from .. import contract as c
from .. import invariants
from .._transport import Target
from ..expect import expect_conforming, expect_error, expect_ok, fail
from ._support import call, check, fresh_id

SERVICE = "agent"
UNKNOWN_AGENT = "NoSuchAgentConformance"


def _execute(agent_type: str = UNKNOWN_AGENT, **fields: Any) -> pb.ExecuteAgentRequest:
    base: dict[str, Any] = {
        "agent_type": agent_type,
        "contact_id": fresh_id(),
        "message": "Oi, quero saber sobre o produto X",
        "channel_id": fresh_id(),
    }
    base.update(fields)
    return pb.ExecuteAgentRequest(**base)


def _with(agent: str, /, **fields: Any) -> pb.ExecuteAgentRequest:
    """A run request of ``agent`` with ``fields`` overridden (agent_type included)."""
    return _execute(**{"agent_type": agent, **fields})


def _as_stream(request: pb.ExecuteAgentRequest) -> pb.StreamAgentRequest:
    """The same request for StreamAgentExecution (same fields, same numbers)."""
    return pb.StreamAgentRequest.parse(bytes(request))


def _first(agent_types: tuple[str, ...]) -> str:
    if not agent_types:
        pytest.fail("ListAvailableAgents returned no agent: nothing to execute", pytrace=False)
    return agent_types[0]


@check("proto ListAvailableAgents: 'Always OK'; ListAgentsResponse.total_count 'Always equal to the number of "
       "entries'", SERVICE)  # fmt: skip
def test_list_agents(target: Target) -> None:
    """ListAvailableAgents is OK, lists at least one agent, total_count == len(agents), types unique."""
    outcome = call(target, "ListAvailableAgents")
    response = expect_ok(outcome, target.address)
    expect_conforming(outcome, target.address, invariants.agents_list(response), "ListAgentsResponse")
    if not response.agents:
        fail("no agents listed", outcome, target.address)


@check("proto GetAgentCapabilities; Field.type 'One of \"string\", \"int\", \"float\", \"bool\", \"object\", \"list\"'",
       SERVICE)  # fmt: skip
def test_capabilities_of_every_agent(target: Target, agent_types: tuple[str, ...]) -> None:
    """Every listed agent has capabilities: the same AgentInfo type and a schema of known field types."""
    problems = []
    for agent_type in agent_types:
        outcome = call(target, "GetAgentCapabilities", agent_type=agent_type)
        response = expect_ok(outcome, target.address, f"for listed agent {agent_type!r}")
        if response.agent is None or response.agent.type != agent_type:
            problems.append(
                f"{agent_type}: AgentInfo.type is {response.agent.type if response.agent else None!r}"
            )
        schema = response.schema
        for f in (schema.input_fields + schema.output_fields) if schema else []:
            if f.type not in c.FIELD_TYPES:
                problems.append(f"{agent_type}: field {f.name!r} has type {f.type!r}")
    if problems:
        fail("GetAgentCapabilities does not match the catalogue", None, target.address, problems)


@check("proto GetAgentCapabilities: 'INVALID_ARGUMENT: agent_type empty'", SERVICE)
def test_capabilities_empty_type(target: Target) -> None:
    """GetAgentCapabilities("") is INVALID_ARGUMENT naming agent_type."""
    expect_error(call(target, "GetAgentCapabilities", agent_type=""), Status.INVALID_ARGUMENT, target.address,
                 field="agent_type")  # fmt: skip


@check("proto GetAgentCapabilities: 'NOT_FOUND: unknown agent_type (ErrorDetails.code \"AGENT_NOT_FOUND\", "
       "suggestions name the closest agent types)'; spec 4.2", SERVICE)  # fmt: skip
def test_capabilities_unknown_type(target: Target, agent_types: tuple[str, ...]) -> None:
    """A near miss (wrong case) of a real agent type is NOT_FOUND / AGENT_NOT_FOUND, suggesting the real one."""
    real = _first(agent_types)
    near = real.lower() if real.lower() != real else real.upper()
    outcome = call(target, "GetAgentCapabilities", agent_type=near)
    expect_error(outcome, Status.NOT_FOUND, target.address, code="AGENT_NOT_FOUND", suggestions=True)
    assert outcome.details is not None
    if not any(real in s for s in outcome.details.suggestions):
        fail(
            f"the suggestions do not name {real!r}, the closest agent type to {near!r}",
            outcome,
            target.address,
        )


@check("proto ExecuteAgent: 'NOT_FOUND: unknown agent_type'", SERVICE)
@pytest.mark.parametrize("rpc", ["ExecuteAgent", "StreamAgentExecution"])
def test_execute_unknown_agent(target: Target, rpc: str) -> None:
    """Running an agent type nobody registered is NOT_FOUND / AGENT_NOT_FOUND."""
    request: Any = _execute()
    if rpc == "StreamAgentExecution":
        request = _as_stream(request)
    outcome = call(target, rpc, request)
    expect_error(outcome, Status.NOT_FOUND, target.address, code="AGENT_NOT_FOUND")
    if rpc == "StreamAgentExecution":
        expect_conforming(outcome, target.address, invariants.stream_failed(outcome.messages, outcome.status.name),
                          "failed stream")  # fmt: skip


def _options(**fields: Any) -> pb.ExecutionOptions:
    return pb.ExecutionOptions(**fields)


P = pytest.param
INVALID = [
    P(lambda t: _with(t, agent_type=""), "agent_type", id="agent_type-missing"),
    P(lambda t: _with(t, contact_id=""), "contact_id", id="contact_id-missing"),
    P(lambda t: _with(t, contact_id="not-a-uuid"), "contact_id", id="contact_id-malformed"),
    P(lambda t: _with(t, contact_id=fresh_id() + "\n"), "contact_id", id="contact_id-trailing-newline"),
    P(lambda t: _with(t, message=""), "message", id="message-empty"),
    P(lambda t: _with(t, message=" \n\t "), "message", id="message-blank"),
    P(lambda t: _with(t, message="a" * 16385), "message", id="message-16385-bytes"),
    P(lambda t: _with(t, message="€" * 5462), "message", id="message-16386-bytes-multibyte"),
    P(lambda t: _with(t, channel_id=""), "channel_id", id="channel_id-missing"),
    P(lambda t: _with(t, channel_id="channel-1"), "channel_id", id="channel_id-malformed"),
    P(lambda t: _with(t, session_id="session-1"), "session_id", id="session_id-malformed"),
    P(lambda t: _with(t, context={f"k{i}": "v" for i in range(65)}), "context", id="context-65-entries"),
    P(lambda t: _with(t, context={"k" * 129: "v"}), "context", id="context-key-129-bytes"),
    P(lambda t: _with(t, context={"k": "v" * 4097}), "context", id="context-value-4097-bytes"),
    P(lambda t: _with(t, options=_options(timeout_ms=-1)), "options.timeout_ms", id="timeout_ms-negative"),
    P(lambda t: _with(t, options=_options(timeout_ms=60001)), "options.timeout_ms", id="timeout_ms-60001"),
    P(lambda t: _with(t, options=_options(max_tokens=-1)), "options.max_tokens", id="max_tokens-negative"),
    P(lambda t: _with(t, options=_options(max_tokens=8193)), "options.max_tokens", id="max_tokens-8193"),
    P(lambda t: _with(t, options=_options(temperature=2.5)), "options.temperature", id="temperature-2.5"),
    P(
        lambda t: _with(t, options=_options(temperature=-0.1)),
        "options.temperature",
        id="temperature-negative",
    ),
    P(
        lambda t: _with(t, options=_options(temperature=float("nan"))),
        "options.temperature",
        id="temperature-nan",
    ),
    P(lambda t: _with(t, options=_options(tools=["rm_rf"])), "options.tools", id="tools-unknown"),
]


@check("proto ExecuteAgentRequest / ExecutionOptions field comments; 'INVALID_ARGUMENT a field is missing, "
       "malformed or out of range'", SERVICE)  # fmt: skip
@pytest.mark.parametrize("rpc", ["ExecuteAgent", "StreamAgentExecution"])
@pytest.mark.parametrize(("make", "field"), INVALID)
def test_execute_invalid_field(
    target: Target, agent_types: tuple[str, ...], rpc: str, make: Any, field: str
) -> None:
    """A run request (of a registered agent) with one bad field is INVALID_ARGUMENT naming the field."""
    request: Any = make(_first(agent_types))
    assert c.validate_execute(request).invalid, "internal: the oracle disagrees with this case"
    if rpc == "StreamAgentExecution":
        request = _as_stream(request)
    outcome = call(target, rpc, request)
    expect_error(outcome, Status.INVALID_ARGUMENT, target.address, field=field)
    if rpc == "StreamAgentExecution":
        expect_conforming(outcome, target.address, invariants.stream_failed(outcome.messages, outcome.status.name),
                          "failed stream")  # fmt: skip


@check("proto ExecuteAgentResponse: confidence in [0, 1]; metadata 'Always carries \"llm_backend\" and \"memory\"'",
       SERVICE)  # fmt: skip
@pytest.mark.parametrize(
    "options",
    [
        None,
        _options(),
        _options(timeout_ms=60000, max_tokens=8192, temperature=0.0, tools=list(c.KNOWN_TOOLS)),
    ],
    ids=["no-options", "zero-options-are-defaults", "options-at-bounds"],
)
def test_execute(target: Target, agent_types: tuple[str, ...], options: pb.ExecutionOptions | None) -> None:
    """A valid run is OK (absent or zero options take their defaults) and the response conforms."""
    outcome = call(target, "ExecuteAgent", _execute(_first(agent_types), options=options), timeout=60)
    response = expect_ok(outcome, target.address)
    expect_conforming(outcome, target.address, invariants.execute(response), "ExecuteAgentResponse")


@check("proto StreamAgentExecution: 'THOUGHT, TOOL_CALL, PARTIAL... then exactly one FINAL, which is the last "
       "chunk'; AgentStreamChunk.metadata", SERVICE)  # fmt: skip
def test_stream(target: Target, agent_types: tuple[str, ...]) -> None:
    """A valid stream ends OK with exactly one FINAL chunk, last, carrying its metadata keys."""
    request = _as_stream(_execute(_first(agent_types)))
    outcome = call(target, "StreamAgentExecution", request, timeout=60)
    expect_ok(outcome, target.address)
    expect_conforming(outcome, target.address, invariants.stream_ok(outcome.messages), "stream")


@check("proto ExecuteAgent: 'DEADLINE_EXCEEDED: the caller's deadline or options.timeout_ms passed'", SERVICE)
@pytest.mark.parametrize("rpc", ["ExecuteAgent", "StreamAgentExecution"])
def test_timeout_ms_is_enforced(target: Target, agent_types: tuple[str, ...], rpc: str) -> None:
    """options.timeout_ms=1 ends the run with DEADLINE_EXCEEDED (sent by the server, with ErrorDetails);
    a stream that had started sends one ERROR chunk first."""
    request: Any = _execute(_first(agent_types), options=_options(timeout_ms=1))
    if rpc == "StreamAgentExecution":
        request = _as_stream(request)
    outcome = call(target, rpc, request, timeout=30)
    expect_error(outcome, Status.DEADLINE_EXCEEDED, target.address)
    if rpc == "StreamAgentExecution":
        expect_conforming(outcome, target.address, invariants.stream_failed(outcome.messages, outcome.status.name),
                          "failed stream")  # fmt: skip


@check("proto ExecuteAgentBatch: 'INVALID_ARGUMENT: empty batch or more than 32 requests'; spec 5.4", SERVICE)
@pytest.mark.parametrize("size", [0, 33])
def test_batch_size(target: Target, size: int) -> None:
    """An empty batch and a batch of 33 are INVALID_ARGUMENT naming requests."""
    request = pb.ExecuteAgentBatchRequest(requests=[_execute() for _ in range(size)])
    expect_error(
        call(target, "ExecuteAgentBatch", request), Status.INVALID_ARGUMENT, target.address, field="requests"
    )


@check(
    "proto ExecuteAgentBatch: 'A failed item does not fail the batch ... answering in request order'", SERVICE
)
def test_batch_reports_items(target: Target, agent_types: tuple[str, ...]) -> None:
    """[valid, unknown agent, invalid] answers three responses in order: OK, NOT_FOUND, INVALID_ARGUMENT."""
    requests = [
        _execute(_first(agent_types)),
        _execute(UNKNOWN_AGENT),
        _execute(_first(agent_types), contact_id="x"),
    ]
    outcome = call(target, "ExecuteAgentBatch", pb.ExecuteAgentBatchRequest(requests=requests), timeout=60)
    response = expect_ok(outcome, target.address)
    statuses = [r.metadata.get("status") for r in response.responses]
    if statuses != ["OK", "NOT_FOUND", "INVALID_ARGUMENT"]:
        fail(
            f"item statuses {statuses}, expected ['OK', 'NOT_FOUND', 'INVALID_ARGUMENT']",
            outcome,
            target.address,
        )
    problems = []
    for item in response.responses[1:]:
        if not item.metadata.get("error_code") or not item.metadata.get("error_message"):
            problems.append(f"failed item lacks error_code / error_message: {dict(item.metadata)}")
    if response.responses[1].metadata.get("error_code") != "AGENT_NOT_FOUND":
        problems.append(f"unknown agent item error_code {response.responses[1].metadata.get('error_code')!r}")
    problems += invariants.execute(response.responses[0])
    expect_conforming(outcome, target.address, problems, "batch items")
