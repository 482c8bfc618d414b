"""ventros_server.app: both services on their ports, graceful drain, bearer token and TLS."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time

import pytest
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse
from ventros import (
    AgentClient,
    ConfigurationError,
    MemoryClient,
    ResourceExhaustedError,
    RetryPolicy,
    TLSConfig,
    UnauthenticatedError,
    UnavailableError,
)
from ventros_server.app import ServeConfig, VentrosApp, run

from .conftest import cli_env, run_cli
from .servicers import CHANNEL, CONTACT, FakeAgents, FakeMemory

ONCE = RetryPolicy(attempts=1)


class FakeStore:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


def _services(store: FakeStore | None = None):
    def memory(app):
        app.store = store
        return FakeMemory()

    return {"agent": lambda app: FakeAgents(), "memory": memory}


def _run_request(message: str) -> dict:
    return {
        "agent_type": "CustomerServiceAgent",
        "contact_id": CONTACT,
        "channel_id": CHANNEL,
        "message": message,
    }


async def _health(client, service: str) -> int:
    reply = await HealthStub(client._channel).Check(HealthCheckRequest(service=service))
    return reply.status


async def test_both_services_on_their_own_free_ports_with_health():
    lines: list[str] = []
    app = VentrosApp(ServeConfig(agent_port=0, memory_port=0), services=_services(), announce=lines.append)
    await app.start()
    try:
        agent, memory = app.addresses["agent"], app.addresses["memory"]
        assert agent != memory
        assert f"agent service listening on {agent}" in lines
        assert f"memory service listening on {memory}" in lines
        assert f"agent service uses the memory service at {memory}" in lines
        async with AgentClient(agent, retry=ONCE) as client:
            assert (await client.list_agents()).total_count == 2
            assert await _health(client, "agent") == HealthCheckResponse.SERVING
        async with MemoryClient(memory, retry=ONCE) as client:
            assert await _health(client, "memory") == HealthCheckResponse.SERVING
    finally:
        await app.stop()
    assert lines[-1] == "stopped"


async def test_health_command_reports_not_serving_with_exit_1():
    app = VentrosApp(ServeConfig(agent_port=0, memory_port=0), services=_services())
    await app.start()
    try:
        for status in app._running["memory"].statuses.values():
            status.set(False)
        env = cli_env(PYTHON_ADK_GRPC=app.addresses["agent"], MEMORY_SERVICE_GRPC=app.addresses["memory"])
        result = await asyncio.to_thread(run_cli, "health", "--json", env=env)
        assert result.code == 1
        assert {k: v["status"] for k, v in result.json().items()} == {
            "agent": "SERVING",
            "memory": "NOT_SERVING",
        }
    finally:
        await app.stop()


async def test_only_one_service():
    app = VentrosApp(ServeConfig(agent_port=0, memory_port=0, only="memory"), services=_services())
    await app.start()
    try:
        assert set(app.addresses) == {"memory"}
    finally:
        await app.stop()


async def test_agent_only_reaches_memory_at_memory_addr():
    config = ServeConfig(agent_port=0, only="agent", memory_addr="memory.internal:6000")
    app = VentrosApp(config, services=_services())
    assert app.memory_address() == "memory.internal:6000"


async def test_graceful_shutdown_drains_running_calls_then_closes_the_store():
    store = FakeStore()
    app = VentrosApp(ServeConfig(agent_port=0, memory_port=0, grace=5), services=_services(store))
    await app.start()
    agent_addr = app.addresses["agent"]
    async with AgentClient(agent_addr, retry=ONCE) as client:
        running = asyncio.create_task(client.execute_agent(**_run_request("sleep:0.5")))
        while app._running["agent"].gate.in_flight == 0:
            await asyncio.sleep(0.01)
        started = time.monotonic()
        stopping = asyncio.create_task(app.stop())
        await asyncio.sleep(0.05)
        # Draining: health says NOT_SERVING, new calls are refused, the running one goes on.
        assert await _health(client, "agent") == HealthCheckResponse.NOT_SERVING
        with pytest.raises(UnavailableError) as refused:
            await client.list_agents()
        assert refused.value.code == "SHUTTING_DOWN"
        assert not store.closed
        reply = await running
        assert reply.response.startswith("Olá!")
        await stopping
    assert store.closed
    assert time.monotonic() - started < 3
    # No new connections once stopped.
    async with AgentClient(agent_addr, retry=ONCE) as late:
        with pytest.raises(UnavailableError):
            await late.list_agents()


async def test_calls_still_running_after_the_grace_period_are_cancelled():
    store = FakeStore()
    app = VentrosApp(ServeConfig(agent_port=0, memory_port=0, grace=0.2), services=_services(store))
    await app.start()
    async with AgentClient(app.addresses["agent"], retry=ONCE) as client:
        running = asyncio.create_task(client.execute_agent(**_run_request("sleep:30"), timeout=30))
        while app._running["agent"].gate.in_flight == 0:
            await asyncio.sleep(0.01)
        started = time.monotonic()
        await app.stop()
        assert time.monotonic() - started < 3
        with pytest.raises(UnavailableError) as info:
            await asyncio.wait_for(running, 3)
        assert info.value.code == "SHUTTING_DOWN"
    assert store.closed


async def test_run_stops_gracefully_on_sigterm():
    import os
    import signal

    ready = asyncio.Event()
    apps: list[VentrosApp] = []

    def on_ready(app: VentrosApp) -> None:
        apps.append(app)
        ready.set()

    task = asyncio.create_task(
        run(
            ServeConfig(agent_port=0, memory_port=0, grace=1),
            services=_services(),
            announce=lambda _: None,
            ready=on_ready,
        )
    )
    await asyncio.wait_for(ready.wait(), 10)
    # Only signal ourselves once run() has installed its handler (else SIGTERM ends pytest).
    assert signal.SIGTERM in getattr(asyncio.get_running_loop(), "_signal_handlers", {})
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(task, 10)
    assert apps[0].addresses == {}


async def test_bearer_token_is_required_except_for_health():
    app = VentrosApp(ServeConfig(agent_port=0, memory_port=0, token="s3cret"), services=_services())
    await app.start()
    try:
        address = app.addresses["agent"]
        async with AgentClient(address, retry=ONCE) as anonymous:
            with pytest.raises(UnauthenticatedError) as info:
                await anonymous.list_agents()
            assert info.value.code == "MISSING_CREDENTIALS"
            assert await _health(anonymous, "agent") == HealthCheckResponse.SERVING
        async with AgentClient(address, retry=ONCE, token="wrong") as wrong:
            with pytest.raises(UnauthenticatedError):
                await wrong.list_agents()
        async with AgentClient(address, retry=ONCE, token="s3cret") as client:
            assert (await client.list_agents()).total_count == 2
        env = cli_env(PYTHON_ADK_GRPC=address)
        denied = await asyncio.to_thread(run_cli, "agents", "list", env=env)
        assert denied.code == 16 and "UNAUTHENTICATED (16)" in denied.stderr
        allowed = await asyncio.to_thread(
            run_cli, "agents", "list", "--json", env={**env, "VENTROS_TOKEN": "s3cret"}
        )
        assert allowed.code == 0 and allowed.json()["total_count"] == 2
    finally:
        await app.stop()


async def test_rate_limit_per_caller_and_port():
    config = ServeConfig(agent_port=0, memory_port=0, rate_limit=0.5, rate_burst=2)
    app = VentrosApp(config, services=_services())
    await app.start()
    try:
        address = app.addresses["agent"]
        async with AgentClient(address, retry=ONCE) as client:
            await client.list_agents()
            await client.list_agents()
            with pytest.raises(ResourceExhaustedError) as info:
                await client.list_agents()
            assert info.value.code == "RATE_LIMITED"
            assert int(info.value.metadata["retry_after_ms"]) > 0
            assert await _health(client, "agent") == HealthCheckResponse.SERVING  # exempt
        result = await asyncio.to_thread(run_cli, "agents", "list", env=cli_env(PYTHON_ADK_GRPC=address))
        assert result.code == 8
        assert "RESOURCE_EXHAUSTED (8) · RATE_LIMITED" in result.stderr
        async with MemoryClient(app.addresses["memory"], retry=ONCE) as memory:  # its own budget
            await memory.search_memories(contact_id=CONTACT, query="x")
    finally:
        await app.stop()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_tls(certificate):
    cert, key = certificate
    config = ServeConfig(agent_port=0, memory_port=0, tls_cert=str(cert), tls_key=str(key))
    app = VentrosApp(config, services=_services())
    await app.start()
    try:
        address = app.addresses["memory"]
        async with MemoryClient(address, retry=ONCE, tls=TLSConfig(ca_file=str(cert))) as client:
            found = await client.search_memories(contact_id=CONTACT, query="delivery")
            assert found.total_count == 2
        async with MemoryClient(address, retry=ONCE) as plaintext:
            with pytest.raises(UnavailableError):
                await plaintext.search_memories(contact_id=CONTACT, query="delivery")
        env = cli_env(MEMORY_SERVICE_GRPC=address)
        result = await asyncio.to_thread(
            run_cli,
            "--tls-ca",
            str(cert),
            "memory",
            "search",
            "--contact",
            CONTACT,
            "-q",
            "x",
            "--json",
            env=env,
        )
        assert result.code == 0, result.stderr
        assert result.json()["total_count"] == 2
    finally:
        await app.stop()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (ServeConfig(tls_cert="c.pem"), "TLS needs both"),
        (ServeConfig(tls_client_ca="ca.pem"), "--tls-client-ca needs"),
        (ServeConfig(agent_port=7000, memory_port=7000), "must differ"),
        (ServeConfig(token=" "), "token"),
        (ServeConfig(rate_burst=5), "--rate-burst needs --rate-limit"),
        (ServeConfig(rate_limit=0), "positive"),
    ],
)
def test_bad_configurations_are_refused_up_front(config, message):
    with pytest.raises(ConfigurationError, match=message):
        VentrosApp(config)


def test_serve_reports_bad_flags_as_usage_errors(certificate):
    cert, _ = certificate
    result = run_cli("serve", "--tls-cert", str(cert), "--agent-port", "0", "--memory-port", "0")
    assert result.code == 2
    assert "TLS needs both --tls-cert and --tls-key" in result.stderr
    assert "Traceback" not in result.stderr


async def test_a_busy_port_is_a_configuration_error():
    first = VentrosApp(ServeConfig(agent_port=0, memory_port=0), services=_services())
    await first.start()
    try:
        port = int(first.addresses["memory"].rsplit(":", 1)[1])
        second = VentrosApp(ServeConfig(agent_port=0, memory_port=port), services=_services())
        with pytest.raises(ConfigurationError, match="cannot listen"):
            await second.start()
    finally:
        await first.stop()
