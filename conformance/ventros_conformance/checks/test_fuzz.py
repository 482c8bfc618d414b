"""Hypothesis: generated requests (valid, and with one or two fields replaced by arbitrary values)
always get the status the contract documents for them, never UNKNOWN or INTERNAL.

The oracle is ``ventros_conformance.contract``: for each request it computes which fields are
certainly invalid (the server must answer INVALID_ARGUMENT naming one of them), arguably invalid
(either answer passes) or none (the server must answer one of the RPC's documented statuses, and
its OK responses must satisfy ``ventros_conformance.invariants``). A failing example is shrunk
and printed as protobuf JSON with the commands that replay it.
"""

from __future__ import annotations

from typing import Any

import pytest
from grpclib.const import Status
from hypothesis import given, note
from hypothesis import strategies as st
from ventros import agents as pb_agents

from .. import contract as c
from .. import invariants, strategies
from .._transport import Outcome, Target
from ..expect import details_problems, fail, replay_hint
from ._support import call, check

SOURCE = ("proto: status codes common to every RPC + per-RPC INVALID_ARGUMENT/NOT_FOUND rules; "
          "'Every non-OK status carries a ventros.common.ErrorDetails'; contract.md Status codes and ErrorDetails")  # fmt: skip
RPCS = [
    pytest.param(name, marks=check(SOURCE, rpc.service), id=name)
    for name, rpc in c.RPCS.items()
    if name != "ListAvailableAgents"
]
_NEVER = (Status.UNKNOWN, Status.INTERNAL)
_AGENT_RUNS = ("ExecuteAgent", "StreamAgentExecution")


def _expected(name: str, request: Any, agent_types: tuple[str, ...]) -> tuple[c.Verdict, set[Status]]:
    """The verdict and the statuses a conforming server may answer with."""
    verdict = c.VALIDATORS[name](request)
    rpc = c.RPCS[name]
    allowed: set[Status] = set()
    unknown_agent = name in (*_AGENT_RUNS, "GetAgentCapabilities") and request.agent_type not in agent_types
    if verdict.invalid:
        allowed.add(Status.INVALID_ARGUMENT)
        if unknown_agent and request.agent_type:
            allowed.add(Status.NOT_FOUND)  # the contract does not order validation and lookup
        return verdict, allowed
    if verdict.maybe:
        allowed.add(Status.INVALID_ARGUMENT)
    if name in (*_AGENT_RUNS, "GetAgentCapabilities"):
        if unknown_agent:
            allowed.add(Status.NOT_FOUND)
        else:
            allowed.add(Status.OK)
            if name in _AGENT_RUNS:
                allowed.add(Status.DEADLINE_EXCEEDED)  # options.timeout_ms may be tiny
    else:
        allowed |= set(rpc.valid_statuses)
    return verdict, allowed


def _response_problems(name: str, request: Any, outcome: Outcome, agent_types: tuple[str, ...]) -> list[str]:
    if name == "StreamAgentExecution":
        if outcome.ok:
            return invariants.stream_ok(outcome.messages)
        return invariants.stream_failed(outcome.messages, outcome.status.name)
    if not outcome.ok:
        return []
    response = outcome.response
    if name == "SearchMemories":
        return invariants.search(request, response)
    if name == "GetContactContext":
        return invariants.context(request, response)
    if name == "StoreMemory":
        return invariants.store(response)
    if name == "GetRelatedEntities":
        return invariants.related(request, response)
    if name == "ExecuteAgent":
        return invariants.execute(response)
    if name == "ExecuteAgentBatch":
        return _batch_problems(request, response, agent_types)
    return []


def _batch_problems(
    request: pb_agents.ExecuteAgentBatchRequest,
    response: pb_agents.ExecuteAgentBatchResponse,
    agent_types: tuple[str, ...],
) -> list[str]:
    if len(response.responses) != len(request.requests):
        return [f"{len(response.responses)} responses for {len(request.requests)} requests"]
    problems = []
    for i, (item, answer) in enumerate(zip(request.requests, response.responses, strict=True)):
        _, allowed = _expected("ExecuteAgent", item, agent_types)
        status = answer.metadata.get("status", "")
        if status not in {s.name for s in allowed}:
            problems.append(
                f"item {i}: metadata['status'] {status!r}, expected one of {sorted(s.name for s in allowed)}"
            )
        elif status != "OK" and not answer.metadata.get("error_code"):
            problems.append(f"item {i}: failed without metadata['error_code']")
    return problems


@pytest.mark.parametrize("name", RPCS)
@given(data=st.data())
def test_generated_requests_get_documented_statuses(
    target: Target, request: pytest.FixtureRequest, name: str, data: st.DataObject
) -> None:
    """Every generated request gets a documented status with conforming ErrorDetails and responses."""
    rpc = c.RPCS[name]
    agent_types: tuple[str, ...] = request.getfixturevalue("agent_types") if rpc.service == "agent" else ()
    message = data.draw(strategies.request(name, agent_types), label="request")
    note(replay_hint(target.address, rpc.path, message))
    verdict, allowed = _expected(name, message, agent_types)
    outcome = call(target, name, message, timeout=60 if name in (*_AGENT_RUNS, "ExecuteAgentBatch") else None)
    problems: list[str] = []
    if outcome.status in _NEVER:
        problems.append(
            f"{outcome.status.name} is never a documented answer to a well-formed protobuf request"
        )
    elif outcome.local:
        problems.append(f"no answer from the server: {outcome.message}")
    elif outcome.status not in allowed:
        problems.append(f"status {outcome.status.name}, expected one of {sorted(s.name for s in allowed)}")
    elif outcome.status == Status.INVALID_ARGUMENT and outcome.details is not None:
        fields = verdict.definite + verdict.maybe
        reported = outcome.details.metadata.get("field", "")
        if reported and not any(c.field_matches(reported, f) for f in fields):
            problems.append(
                f"ErrorDetails.metadata['field'] is {reported!r}; the invalid fields are {fields}"
            )
    problems += details_problems(outcome)
    problems += _response_problems(name, message, outcome, agent_types)
    if problems:
        why = f"invalid fields: {verdict.definite}" if verdict.invalid else "the request is valid"
        if verdict.maybe:
            why += f" (arguably invalid: {verdict.maybe})"
        fail(f"{name}: {why}", outcome, target.address, problems)
