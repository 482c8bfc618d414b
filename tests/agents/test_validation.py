"""ExecuteAgent / StreamAgentExecution request validation, exactly per the proto comments."""

from __future__ import annotations

import re
from typing import Any

import pytest
import ventros
from hypothesis import given, settings
from hypothesis import strategies as st
from ventros.agents import ExecutionOptions
from ventros_server.agents.validation import KNOWN_TOOLS, resolve_options, validate_request

from .conftest import agent_stack, execute_request, stream_request
from .llms import RecordingLLM

CASES: list[tuple[dict[str, Any], str, str]] = [
    ({"agent_type": ""}, "agent_type", "MISSING_FIELD"),
    ({"contact_id": ""}, "contact_id", "MISSING_FIELD"),
    ({"contact_id": "not-a-uuid"}, "contact_id", "INVALID_FIELD"),
    ({"contact_id": "550e8400e29b41d4a716446655440000"}, "contact_id", "INVALID_FIELD"),  # not 8-4-4-4-12
    ({"contact_id": "{550e8400-e29b-41d4-a716-446655440000}"}, "contact_id", "INVALID_FIELD"),
    ({"contact_id": "550e8400-e29b-41d4-a716-446655440000\n"}, "contact_id", "INVALID_FIELD"),
    ({"channel_id": " 660e8400-e29b-41d4-a716-446655440001"}, "channel_id", "INVALID_FIELD"),
    ({"session_id": "770e8400-e29b-41d4-a716-446655440002\n"}, "session_id", "INVALID_FIELD"),
    ({"message": ""}, "message", "MISSING_FIELD"),
    ({"message": " \n\t "}, "message", "MISSING_FIELD"),
    ({"message": "é" * 8193}, "message", "OUT_OF_RANGE"),  # 16386 UTF-8 bytes
    ({"channel_id": ""}, "channel_id", "MISSING_FIELD"),
    ({"channel_id": "whatsapp"}, "channel_id", "INVALID_FIELD"),
    ({"session_id": "abc"}, "session_id", "INVALID_FIELD"),
    ({"context": {f"k{i}": "v" for i in range(65)}}, "context", "OUT_OF_RANGE"),
    ({"context": {"k" * 129: "v"}}, "context", "OUT_OF_RANGE"),
    ({"context": {"k": "v" * 4097}}, "context", "OUT_OF_RANGE"),
    ({"options": ExecutionOptions(timeout_ms=-1)}, "options.timeout_ms", "OUT_OF_RANGE"),
    ({"options": ExecutionOptions(timeout_ms=60001)}, "options.timeout_ms", "OUT_OF_RANGE"),
    ({"options": ExecutionOptions(max_tokens=-5)}, "options.max_tokens", "OUT_OF_RANGE"),
    ({"options": ExecutionOptions(max_tokens=8193)}, "options.max_tokens", "OUT_OF_RANGE"),
    ({"options": ExecutionOptions(temperature=-0.1)}, "options.temperature", "OUT_OF_RANGE"),
    ({"options": ExecutionOptions(temperature=2.5)}, "options.temperature", "OUT_OF_RANGE"),
    ({"options": ExecutionOptions(temperature=float("nan"))}, "options.temperature", "OUT_OF_RANGE"),
    (
        {"options": ExecutionOptions(tools=["search_memories", "web_search"])},
        "options.tools",
        "INVALID_FIELD",
    ),
]


@pytest.mark.parametrize(
    ("overrides", "field", "code"), CASES, ids=[f"{c[1]}-{i}" for i, c in enumerate(CASES)]
)
async def test_execute_invalid_argument_names_the_field(
    client: ventros.AgentClient, overrides: dict[str, Any], field: str, code: str
) -> None:
    with pytest.raises(ventros.InvalidArgumentError) as err:
        await client.execute_agent(execute_request(**overrides))
    assert err.value.metadata["field"] == field
    assert err.value.code == code
    assert err.value.suggestions  # every validation error says what to do


@pytest.mark.parametrize("overrides", [CASES[1][0], CASES[10][0], CASES[21][0]])
async def test_stream_validates_the_same_way(client: ventros.AgentClient, overrides: dict[str, Any]) -> None:
    with pytest.raises(ventros.InvalidArgumentError):
        async for _ in client.stream_agent_execution(stream_request(**overrides)):
            pytest.fail("no chunk may be sent for an invalid request")


async def test_unknown_tool_error_lists_the_known_ones(client: ventros.AgentClient) -> None:
    with pytest.raises(ventros.InvalidArgumentError) as err:
        await client.execute_agent(execute_request(options=ExecutionOptions(tools=["web_search"])))
    assert all(tool in err.value.suggestions[0] for tool in KNOWN_TOOLS)


@pytest.mark.parametrize(
    "overrides",
    [
        {"contact_id": "550E8400-E29B-41D4-A716-446655440000"},  # any case
        {"session_id": "770e8400-e29b-41d4-a716-446655440002"},
        {"context": {f"k{i}": "v" * 4096 for i in range(64)}},  # exactly at the bounds
        {"message": "é" * 8192},  # exactly 16384 bytes
        {"options": ExecutionOptions(timeout_ms=60000, max_tokens=8192, temperature=2.0)},
    ],
)
async def test_values_at_the_bounds_are_accepted(
    client: ventros.AgentClient, overrides: dict[str, Any]
) -> None:
    resp = await client.execute_agent(execute_request(**overrides))
    assert resp.response


def test_option_defaults() -> None:
    absent = resolve_options(None)
    assert (absent.timeout_ms, absent.max_tokens, absent.temperature) == (30000, 1024, 0.7)
    assert absent.tools == frozenset(KNOWN_TOOLS) and absent.temperature_set is None
    zeros = resolve_options(ExecutionOptions())
    assert (zeros.timeout_ms, zeros.max_tokens, zeros.temperature, zeros.tools) == (
        30000,
        1024,
        0.7,
        frozenset(KNOWN_TOOLS),
    )
    explicit_zero = resolve_options(ExecutionOptions(temperature=0.0))
    assert explicit_zero.temperature == 0.0 and explicit_zero.temperature_set == 0.0
    assert resolve_options(None, stream=True).timeout_ms == 0  # streams: the client's deadline rules
    assert resolve_options(ExecutionOptions(timeout_ms=500), stream=True).timeout_ms == 500


def test_validation_order_reports_the_first_bad_field() -> None:
    req = execute_request(contact_id="x", channel_id="y", message="")
    with pytest.raises(ventros.InvalidArgumentError) as err:
        validate_request(req)
    assert err.value.metadata["field"] == "contact_id"


async def test_options_reach_the_llm(memory_address: str) -> None:
    llm = RecordingLLM()
    async with agent_stack(memory_address, llm=llm) as (_, client):
        await client.execute_agent(execute_request())
        await client.execute_agent(execute_request(options=ExecutionOptions(temperature=0.0, max_tokens=5)))
    default, explicit = llm.generations
    assert (default.temperature, default.max_tokens) == (pytest.approx(0.7), 1024)
    assert (explicit.temperature, explicit.max_tokens) == (0.0, 5)


# -- properties ------------------------------------------------------------------------------


_HEX = "0123456789abcdefABCDEF"
_uuids = st.tuples(*(st.text(_HEX, min_size=n, max_size=n) for n in (8, 4, 4, 4, 12))).map("-".join)


@settings(max_examples=200, deadline=None)
@given(
    value=st.one_of(
        _uuids, st.text(max_size=40), st.builds(lambda u, s: u + s, _uuids, st.sampled_from("\n \t\r0"))
    )
)
def test_contact_id_accepted_iff_canonical_uuid(value: str) -> None:
    canonical = re.fullmatch(r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}", value) is not None
    try:
        validate_request(execute_request(contact_id=value))
    except ventros.InvalidArgumentError as exc:
        assert not canonical and exc.metadata["field"] == "contact_id"
    else:
        assert canonical


@settings(max_examples=200, deadline=None)
@given(
    timeout_ms=st.integers(-(2**31), 2**31 - 1),
    max_tokens=st.integers(-(2**31), 2**31 - 1),
    temperature=st.one_of(st.none(), st.floats(width=32)),
)
def test_options_accepted_iff_in_bounds(timeout_ms: int, max_tokens: int, temperature: float | None) -> None:
    ok = (
        0 <= timeout_ms <= 60000
        and 0 <= max_tokens <= 8192
        and (temperature is None or 0.0 <= temperature <= 2.0)
    )
    options = ExecutionOptions(timeout_ms=timeout_ms, max_tokens=max_tokens, temperature=temperature)
    try:
        resolved = resolve_options(options)
    except ventros.InvalidArgumentError as exc:
        assert not ok and exc.metadata["field"].startswith("options.")
    else:
        assert ok
        assert resolved.timeout_ms == (timeout_ms or 30000) and resolved.max_tokens == (max_tokens or 1024)
        assert resolved.temperature == (0.7 if temperature is None else temperature)
