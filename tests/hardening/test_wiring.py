"""`ventros serve` with API keys: scopes end to end through the CLI, the agents' own memory
calls, the keys file with --token, and the warning for an unprotected public bind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ventros import AgentClient, ConfigurationError, RetryPolicy
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
    assert _cli(keyed_server, READ_ONLY, *SEARCH).returncode == 0
    assert _cli(keyed_server, READ_ONLY, *RUN).returncode == 7


def test_full_file_and_token_keys_work_through_the_cli(keyed_server: ServeProcess) -> None:
    stored = _cli(keyed_server, FULL, "--json", *STORE)
    assert stored.returncode == 0, stored.stderr
    assert _cli(keyed_server, FILED, *STORE).returncode == 0  # from --api-keys-file, write only
    assert _cli(keyed_server, FILED, *SEARCH).returncode == 7
    assert _cli(keyed_server, TOKEN, *SEARCH).returncode == 0  # --token / $VENTROS_TOKEN: every scope
    missing = _cli(keyed_server, None, "--json", *SEARCH)
    assert missing.returncode == 16
    assert json.loads(missing.stderr)["error"]["code"] == "MISSING_CREDENTIALS"
    wrong = _cli(keyed_server, "not-a-key", "--json", *SEARCH)
    assert wrong.returncode == 16
    assert json.loads(wrong.stderr)["error"]["code"] == "INVALID_CREDENTIALS"
    assert _cli(keyed_server, None, "health").returncode == 0  # health stays open


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
