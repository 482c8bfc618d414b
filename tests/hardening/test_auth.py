"""ventros_server.auth: API keys with scopes, enforced before any handler runs."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse
from grpclib.reflection.v1.reflection_grpc import ServerReflectionStub
from grpclib.reflection.v1.reflection_pb2 import ServerReflectionRequest
from ventros import (
    AgentClient,
    ConfigurationError,
    MemoryClient,
    PermissionDeniedError,
    RetryPolicy,
    UnauthenticatedError,
)
from ventros import agents as pa
from ventros_server import auth
from ventros_server.auth import ApiKeys
from ventros_server.server import build_server

from .servicers import CountingAgents, CountingMemory

ONCE = RetryPolicy(attempts=1)
CONTACT = "550e8400-e29b-41d4-a716-446655440000"
CHANNEL = "660e8400-e29b-41d4-a716-446655440001"

# -- parsing ---------------------------------------------------------------------------------------


def test_env_spec_parses_keys_and_scopes() -> None:
    keys = ApiKeys.from_spec("key1:read,write; key2:read\nad:min:*")
    assert [(k.name, sorted(k.scopes)) for k in keys] == [
        ("env#1", ["read", "write"]),
        ("env#2", ["read"]),
        ("env#3", ["*"]),
    ]
    assert keys.find("ad:min") is keys.keys[2]  # the last ':' splits key from scopes
    assert keys.find("key2") is keys.keys[1]
    assert keys.find("key3") is None
    assert "key1" not in repr(keys)  # neither keys nor digests are printed
    assert hashlib.sha256(b"key1").hexdigest() not in repr(keys)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("key1", "KEY:SCOPES"),
        ("key1:", "at least one scope"),
        ("key1:read,wrtie", "unknown scope 'wrtie'"),
        (":read", "non-empty"),
        ("a b:read", "whitespace"),
        ("key1:read;key1:write", "configured twice"),
        (" ; ", "no KEY:SCOPES"),
    ],
)
def test_bad_env_specs_are_refused(spec: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        ApiKeys.from_spec(spec)


def test_keys_file_toml_and_json(tmp_path) -> None:  # type: ignore[no-untyped-def]
    toml = tmp_path / "keys.toml"
    toml.write_text(
        "[[keys]]\n"
        'name = "go-crm"\n'
        f'sha256 = "{hashlib.sha256(b"crm-secret").hexdigest()}"\n'
        'scopes = ["read", "write", "execute"]\n'
        "[[keys]]\n"
        'key = "bi-secret"\n'
        'scopes = ["read"]\n'
    )
    toml.chmod(0o600)
    keys = ApiKeys.from_file(toml)
    assert keys.find("crm-secret").name == "go-crm"  # type: ignore[union-attr]
    bi = keys.find("bi-secret")
    assert bi is not None and bi.name == "key#2" and bi.scopes == {"read"}
    as_json = tmp_path / "keys.json"
    as_json.write_text(json.dumps({"keys": [{"name": "x", "key": "k", "scopes": ["all"]}]}))
    assert ApiKeys.from_file(as_json).find("k").scopes == {"*"}  # type: ignore[union-attr]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"keys": [{"key": "k", "sha256": "00", "scopes": ["read"]}]}))
    with pytest.raises(ConfigurationError, match="either key or sha256"):
        ApiKeys.from_file(bad)
    bad.write_text(json.dumps({"keys": [{"sha256": "abc", "scopes": ["read"]}]}))
    with pytest.raises(ConfigurationError, match="64 hexadecimal"):
        ApiKeys.from_file(bad)
    with pytest.raises(ConfigurationError, match="cannot read"):
        ApiKeys.from_file(tmp_path / "missing.toml")


def test_world_readable_keys_file_is_warned_about(tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "keys.json"
    path.write_text(json.dumps([{"key": "k", "scopes": ["read"]}]))
    path.chmod(0o644)
    ApiKeys.from_file(path)
    assert "readable by every user" in caplog.text


def test_from_env_combines_env_file_and_token(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"keys": [{"name": "filed", "key": "f1", "scopes": ["write"]}]}))
    path.chmod(0o600)
    env = {auth.KEYS_ENV: "e1:read", auth.KEYS_FILE_ENV: str(path)}
    keys = ApiKeys.from_env(env, token="t0ken")
    assert keys is not None
    assert [k.name for k in keys] == ["env#1", "filed", "token"]
    assert keys.find("t0ken").scopes == {"*"}  # type: ignore[union-attr]
    assert ApiKeys.from_env({}) is None
    with pytest.raises(ConfigurationError, match="configured twice"):
        ApiKeys.from_env({auth.KEYS_ENV: "same:read"}, token="same")


def test_lookup_compares_with_every_key(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """No early exit: the first, the last and no key at all cost the same number of comparisons."""
    keys = ApiKeys.from_spec(";".join(f"key{i}:read" for i in range(5)))
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counting(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    for presented in ("key0", "key4", "nope"):
        calls.clear()
        keys.find(presented)
        assert len(calls) == 5
        # Digests are compared, never the key text itself.
        assert all(a == hashlib.sha256(presented.encode()).digest() for a, _ in calls)


def test_every_served_method_has_a_scope() -> None:
    served = {
        name
        for base in (pa.AgentServiceBase, __import__("ventros").memory.MemoryServiceBase)
        for name in base.__mapping__(base())  # type: ignore[abstract]
    }
    assert served == set(auth.METHOD_SCOPES)


# -- over gRPC -------------------------------------------------------------------------------------


class Served:
    def __init__(self, address: str, agents: CountingAgents, memory: CountingMemory) -> None:
        self.address, self.agents, self.memory = address, agents, memory

    def calls(self) -> int:
        return sum(self.agents.calls.values()) + sum(self.memory.calls.values())


async def _serve(keys: ApiKeys) -> AsyncIterator[Served]:
    agents, memory = CountingAgents(), CountingMemory()
    server, statuses = build_server([agents, memory], listeners=[keys])
    for status in statuses.values():
        status.set(True)
    await server.start("127.0.0.1", 0)
    port = server._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield Served(f"127.0.0.1:{port}", agents, memory)
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    keys = ApiKeys.from_spec("reader:read;writer:write;runner:execute;root:*")
    async for s in _serve(keys):
        yield s


Call = Callable[[AgentClient, MemoryClient], Awaitable[Any]]


async def _stream(agents: AgentClient) -> list[Any]:
    return [
        c async for c in agents.stream_agent_execution(agent_type="A", contact_id=CONTACT, channel_id=CHANNEL)
    ]


CALLS: dict[str, tuple[str, Call]] = {
    "ListAvailableAgents": ("read", lambda a, m: a.list_agents()),
    "GetAgentCapabilities": ("read", lambda a, m: a.get_agent_capabilities("A")),
    "SearchMemories": ("read", lambda m_a, m: m.search_memories(contact_id=CONTACT, query="x", timeout=5)),
    "GetContactContext": ("read", lambda a, m: m.get_contact_context(contact_id=CONTACT)),
    "GetRelatedEntities": ("read", lambda a, m: m.get_related_entities(entity_id="e", entity_type="product")),
    "StoreMemory": (
        "write",
        lambda a, m: m.store_memory(contact_id=CONTACT, content="c", memory_type="fact"),
    ),
    "ExecuteAgent": ("execute", lambda a, m: a.execute_agent(agent_type="A", contact_id=CONTACT)),
    "StreamAgentExecution": ("execute", lambda a, m: _stream(a)),
    "ExecuteAgentBatch": (
        "execute",
        lambda a, m: a.execute_agent_batch([pa.ExecuteAgentRequest(agent_type="A")]),
    ),
}


async def _call(served: Served, token: str | None, method: str) -> Any:
    _, call = CALLS[method]
    async with (
        AgentClient(served.address, retry=ONCE, token=token) as agents,
        MemoryClient(served.address, retry=ONCE, token=token) as memory,
    ):
        return await call(agents, memory)


@pytest.mark.parametrize("method", sorted(CALLS))
async def test_scope_matrix(served: Served, method: str) -> None:
    needed, _ = CALLS[method]
    for token in ("reader", "writer", "runner", "root"):
        before = served.calls()
        if token == "root" or token == {"read": "reader", "write": "writer", "execute": "runner"}[needed]:
            await _call(served, token, method)
            assert served.calls() == before + 1
            continue
        with pytest.raises(PermissionDeniedError) as info:
            await _call(served, token, method)
        assert info.value.code == "INSUFFICIENT_SCOPE"
        assert info.value.metadata["required_scope"] == needed
        assert info.value.metadata["key"] == {"reader": "env#1", "writer": "env#2", "runner": "env#3"}[token]
        assert method in info.value.metadata["method"]
        assert info.value.suggestions
        assert token not in info.value.message  # the key's name, never the key
        assert served.calls() == before  # refused before the handler ran


async def test_missing_and_invalid_credentials(served: Served) -> None:
    with pytest.raises(UnauthenticatedError) as missing:
        await _call(served, None, "SearchMemories")
    assert missing.value.code == "MISSING_CREDENTIALS"
    assert any("authorization: Bearer" in s for s in missing.value.suggestions)
    with pytest.raises(UnauthenticatedError) as invalid:
        await _call(served, "readerx", "SearchMemories")
    assert invalid.value.code == "INVALID_CREDENTIALS"
    assert "readerx" not in invalid.value.message
    assert invalid.value.suggestions
    assert served.calls() == 0


@pytest.mark.parametrize(
    "header", ["reader", "Basic reader", "Bearer", "Bearer  ", "bearer readerx"], ids=lambda h: repr(h)
)
async def test_malformed_authorization_headers(served: Served, header: str) -> None:
    async with MemoryClient(served.address, retry=ONCE, metadata={"authorization": header}) as memory:
        with pytest.raises(UnauthenticatedError) as info:
            await memory.search_memories(contact_id=CONTACT, query="x", timeout=5)
    assert info.value.code == "INVALID_CREDENTIALS"
    assert served.calls() == 0


async def test_scheme_is_case_insensitive(served: Served) -> None:
    async with MemoryClient(
        served.address, retry=ONCE, metadata={"authorization": "bearer reader"}
    ) as memory:
        await memory.search_memories(contact_id=CONTACT, query="x", timeout=5)
    assert served.memory.calls["SearchMemories"] == 1


async def test_health_is_open_and_reflection_is_open_by_default(served: Served) -> None:
    async with MemoryClient(served.address, retry=ONCE) as anonymous:
        for service in ("", "agent", "memory"):
            reply = await HealthStub(anonymous._channel).Check(HealthCheckRequest(service=service))
            assert reply.status == HealthCheckResponse.SERVING
        replies = await _list_services(anonymous)
    assert "ventros.memory.MemoryService" in replies


async def _list_services(client: MemoryClient) -> list[str]:
    stub = ServerReflectionStub(client._channel)
    async with stub.ServerReflectionInfo.open(metadata=client._metadata) as stream:
        await stream.send_message(ServerReflectionRequest(list_services=""), end=True)
        reply = await stream.recv_message()
    assert reply is not None
    return [s.name for s in reply.list_services_response.service]


async def test_closed_reflection_needs_a_key_of_any_scope() -> None:
    keys = ApiKeys.from_spec("reader:read;writer:write", open_reflection=False)
    async for served in _serve(keys):
        from grpclib.const import Status
        from grpclib.exceptions import GRPCError

        async with MemoryClient(served.address, retry=ONCE) as anonymous:
            with pytest.raises(GRPCError) as info:
                await _list_services(anonymous)
            assert info.value.status == Status.UNAUTHENTICATED
        async with MemoryClient(served.address, retry=ONCE, token="writer") as writer:
            assert "ventros.agents.AgentService" in await _list_services(writer)


async def test_unlisted_methods_need_an_all_scopes_key() -> None:
    """A method the scope table does not name fails closed (e.g. a servicer added later)."""
    keys = ApiKeys.from_spec("reader:read,write,execute;root:all", method_scopes={})
    async for served in _serve(keys):
        with pytest.raises(PermissionDeniedError) as info:
            await _call(served, "reader", "ListAvailableAgents")
        assert info.value.metadata["required_scope"] == "*"
        await _call(served, "root", "ListAvailableAgents")
        assert served.agents.calls["ListAvailableAgents"] == 1


async def test_random_authorization_values_are_refused_cleanly(served: Served) -> None:
    """Random and near-miss header values: always UNAUTHENTICATED with a documented code, never
    another status, and the handler never runs."""
    import random
    import string

    rng = random.Random(1234)
    alphabet = string.ascii_letters + string.digits + string.punctuation + " "
    values = ["Bearer reade", "Bearer readerr", "Bearer READER", "Bearer reader reader"]
    values += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 80))) for _ in range(40)]
    values += [
        "Bearer " + "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 60))) for _ in range(40)
    ]
    from grpclib.const import Status
    from grpclib.exceptions import GRPCError
    from ventros.memory import SearchMemoriesRequest

    request = SearchMemoriesRequest(contact_id=CONTACT, query="x")
    async with MemoryClient(served.address, retry=ONCE) as memory:
        for value in values:
            if value.strip() == "":
                continue
            with pytest.raises(GRPCError) as info:
                await memory._stub.search_memories(request, timeout=5, metadata={"authorization": value})
            assert info.value.status == Status.UNAUTHENTICATED, value
            codes = {d.code for d in info.value.details or ()}
            assert codes in ({"INVALID_CREDENTIALS"}, {"MISSING_CREDENTIALS"}), (value, codes)
    assert served.calls() == 0
