"""`ventros serve` with API keys: scopes end to end through the CLI, the agents' own memory
calls, the keys file with --token, and the warning for an unprotected public bind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ventros import AgentClient, ConfigurationError, MemoryClient, RetryPolicy, StatusError
from ventros_server.app import ServeConfig, VentrosApp

from .conftest import ServeProcess, run_cli, serve_env

ONCE = RetryPolicy(attempts=1)
CONTACT = "550e8400-e29b-41d4-a716-446655440000"
CHANNEL = "660e8400-e29b-41d4-a716-446655440001"
READ_ONLY = "ro-0123456789abcdef"
FULL = "rw-0123456789abcdef"
FILED = "filed-0123456789abcdef"
TOKEN = "token-0123456789abcdef"


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("keys")
    keys_file = folder / "keys.toml"
    keys_file.write_text(f'[[keys]]\nname = "batch-job"\nkey = "{FILED}"\nscopes = ["write"]\n')
    keys_file.chmod(0o600)
    env = serve_env(VENTROS_API_KEYS=f"{READ_ONLY}:read;{FULL}:read,write,execute", VENTROS_TOKEN=TOKEN)
    served = ServeProcess(
        "--demo", "--db", ":memory:", "--agent-port", "0", "--memory-port", "0",
        "--api-keys-file", str(keys_file), env=env,
    )  # fmt: skip
    yield served
    served.stop()


def _cli(served: ServeProcess, key: str | None, *args: str):  # type: ignore[no-untyped-def]
    extra = {"PYTHON_ADK_GRPC": served.addresses["agent"], "MEMORY_SERVICE_GRPC": served.addresses["memory"]}
    if key is not None:
        extra["VENTROS_TOKEN"] = key
    return run_cli(*args, env=serve_env(**extra))


STORE = (
    "memory",
    "store",
    "--contact",
    CONTACT,
    "--content",
    "Asked about gift wrapping",
    "--type",
    "preference",
)
SEARCH = ("memory", "search", "--contact", CONTACT, "-q", "gift wrapping", "--mode", "keyword")
RUN = (
    "agents",
    "run",
    "CustomerServiceAgent",
    "--contact",
    CONTACT,
    "--channel",
    CHANNEL,
    "--message",
    "Oi!",
)


def test_read_only_key_cannot_store_through_the_cli(keyed_server: ServeProcess) -> None:
    denied = _cli(keyed_server, READ_ONLY, "--json", *STORE)
    assert denied.returncode == 7, denied.stderr  # PERMISSION_DENIED
    error = json.loads(denied.stderr)["error"]
    assert error["code"] == "INSUFFICIENT_SCOPE"
    assert error["metadata"]["required_scope"] == "write"
    assert READ_ONLY not in denied.stderr
    stored = _cli(keyed_server, FULL, "--json", *STORE)
    assert stored.returncode == 0, stored.stderr
    missing = _cli(keyed_server, None, "--json", *SEARCH)
    assert missing.returncode == 16
    assert json.loads(missing.stderr)["error"]["code"] == "MISSING_CREDENTIALS"


async def _outcome(served: ServeProcess, key: str | None, call: str) -> str:
    """ "ok" or the ErrorDetails code of one call made with ``key``."""
    async with (
        MemoryClient(served.addresses["memory"], retry=ONCE, token=key) as memory,
        AgentClient(served.addresses["agent"], retry=ONCE, token=key) as agents,
    ):
        try:
            if call == "store":
                await memory.store_memory(
                    contact_id=CONTACT, content="Asked about gift wrapping", memory_type="fact"
                )
            elif call == "search":
                await memory.search_memories(contact_id=CONTACT, query="gift wrapping", timeout=10)
            else:
                await agents.execute_agent(
                    agent_type="CustomerServiceAgent", contact_id=CONTACT, channel_id=CHANNEL, message="Oi!"
                )
        except StatusError as exc:
            return exc.code
    return "ok"


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (READ_ONLY, {"store": "INSUFFICIENT_SCOPE", "search": "ok", "execute": "INSUFFICIENT_SCOPE"}),
        (FULL, {"store": "ok", "search": "ok", "execute": "ok"}),
        (
            FILED,
            {"store": "ok", "search": "INSUFFICIENT_SCOPE", "execute": "INSUFFICIENT_SCOPE"},
        ),  # keys file
        (TOKEN, {"store": "ok", "search": "ok", "execute": "ok"}),  # --token / $VENTROS_TOKEN: every scope
        (
            "not-a-key",
            {
                "store": "INVALID_CREDENTIALS",
                "search": "INVALID_CREDENTIALS",
                "execute": "INVALID_CREDENTIALS",
            },
        ),
        (
            None,
            {
                "store": "MISSING_CREDENTIALS",
                "search": "MISSING_CREDENTIALS",
                "execute": "MISSING_CREDENTIALS",
            },
        ),
    ],
    ids=["read-only", "full", "file", "token", "wrong", "none"],
)
async def test_env_file_and_token_keys_on_a_real_server(
    keyed_server: ServeProcess, key: str | None, expected: dict[str, str]
) -> None:
    assert {call: await _outcome(keyed_server, key, call) for call in expected} == expected


def test_health_needs_no_key(keyed_server: ServeProcess) -> None:
    assert _cli(keyed_server, None, "health").returncode == 0


async def test_agents_reach_their_own_keyed_memory_port(keyed_server: ServeProcess) -> None:
    """The agent service gets an internal key for this process's memory port: no operator key needed."""
    async with AgentClient(keyed_server.addresses["agent"], retry=ONCE, token=FULL) as agents:
        reply = await agents.execute_agent(
            agent_type="CustomerServiceAgent",
            contact_id=CONTACT,
            channel_id=CHANNEL,
            message="Oi, e meu pedido?",
        )
    assert reply.metadata.get("memory") != "unavailable", reply.metadata
    outputs = {call.tool_name: call.output for call in reply.tool_calls}
    assert "get_contact_context" in outputs and "search_memories" in outputs, outputs


@pytest.mark.parametrize(
    ("host", "loud"),
    [("0.0.0.0", True), ("::", True), ("10.1.2.3", True), ("crm.internal", True),
     ("127.0.0.1", False), ("127.0.0.2", False), ("localhost", False), ("::1", False), ("[::1]", False)],
)  # fmt: skip
def test_public_bind_without_auth_or_tls_is_loud(host: str, loud: bool) -> None:
    assert bool(ServeConfig(host=host).security_warning()) is loud
    assert ServeConfig(host=host, token="k").security_warning() is None
    assert ServeConfig(host=host, api_keys="k:read").security_warning() is None
    assert ServeConfig(host=host, tls_cert="c", tls_key="k").security_warning() is None


def test_the_warning_names_the_risk_and_the_fix() -> None:
    warning = ServeConfig(host="0.0.0.0").security_warning()
    assert warning is not None
    assert (
        "WITHOUT authentication or TLS" in warning
        and "127.0.0.1" in warning
        and "VENTROS_API_KEYS" in warning
    )


async def test_start_logs_the_warning(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """start() warns for a public host; the socket itself is bound to 127.0.0.1 (tests stay local)."""
    from ventros_server import app as app_module

    from .servicers import CountingAgents, CountingMemory

    real_bind = app_module._bind
    monkeypatch.setattr(app_module, "_bind", lambda host, port, name: real_bind("127.0.0.1", port, name))
    services = {"agent": lambda a: CountingAgents(), "memory": lambda a: CountingMemory()}
    for host, keys, loud in (
        ("0.0.0.0", None, True),
        ("0.0.0.0", "k:read", False),
        ("127.0.0.1", None, False),
    ):
        caplog.clear()
        app = VentrosApp(
            ServeConfig(host=host, agent_port=0, memory_port=0, api_keys=keys), services=services
        )
        await app.start()
        await app.stop(grace=0)
        assert ("WITHOUT authentication or TLS" in caplog.text) is loud, (host, keys)


def test_bad_keys_are_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="unknown scope"):
        VentrosApp(ServeConfig(api_keys="k:reed"))
    with pytest.raises(ConfigurationError, match="cannot read"):
        VentrosApp(ServeConfig(api_keys_file=str(tmp_path / "nope.toml")))
    result = run_cli(
        "serve", "--agent-port", "0", "--memory-port", "0", "--db", ":memory:",
        env=serve_env(VENTROS_API_KEYS="k:reed"),
    )  # fmt: skip
    assert result.returncode == 2
    assert "unknown scope 'reed'" in result.stderr
    assert "Traceback" not in result.stderr


async def test_agent_only_server_presents_memory_token_to_a_keyed_memory_service() -> None:
    """The compose topology: agents (--only agent) reach a separate memory service that wants a key."""
    from .servicers import CountingMemory

    memory = CountingMemory()
    memory_app = VentrosApp(
        ServeConfig(only="memory", memory_port=0, api_keys="agents-key-0123:read,write"),
        services={"memory": lambda a: memory},
    )
    await memory_app.start()
    try:
        address = memory_app.addresses["memory"]
        for token, reachable in (("agents-key-0123", True), (None, False)):
            config = ServeConfig(only="agent", agent_port=0, memory_addr=address, memory_token=token)
            agent_app = VentrosApp(config)
            await agent_app.start()
            try:
                before = memory.calls["GetContactContext"]
                async with AgentClient(agent_app.addresses["agent"], retry=ONCE) as agents:
                    reply = await agents.execute_agent(
                        agent_type="CustomerServiceAgent",
                        contact_id=CONTACT,
                        channel_id=CHANNEL,
                        message="Oi!",
                    )
                assert (memory.calls["GetContactContext"] > before) is reachable
                assert (reply.metadata.get("memory") != "unavailable") is reachable, reply.metadata
            finally:
                await agent_app.stop(grace=0)
    finally:
        await memory_app.stop(grace=0)
