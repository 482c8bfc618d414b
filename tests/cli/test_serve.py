"""``ventros serve`` as a real subprocess: the reference services, ports read from stdout,
SIGTERM shutdown. The agent-only server needs nothing but the agents package; the full
server (``--demo``) needs the memory store too."""

from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from .conftest import VENTROS, assert_snapshot, cli_env, run_cli

CONTACT = "550e8400-e29b-41d4-a716-446655440000"
CHANNEL = "660e8400-e29b-41d4-a716-446655440001"
_LISTENING = re.compile(r"^(agent|memory) service listening on (\S+)$")


@dataclass
class Served:
    proc: subprocess.Popen[str]
    addresses: dict[str, str]
    lines: queue.Queue[str | None] = field(default_factory=queue.Queue)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> tuple[int, list[str]]:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        rest = []
        while True:
            try:
                line = self.lines.get(timeout=5)
            except queue.Empty:
                break
            if line is None:
                break
            rest.append(line.rstrip("\n"))
        return code, rest


def start_serve(*args: str, expect: tuple[str, ...], timeout: float = 60) -> Served:
    """Start ``ventros serve ARGS`` and wait for a "listening" line per expected service."""
    proc = subprocess.Popen(
        [VENTROS, "serve", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env()
    )
    served = Served(proc, {})

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            served.lines.put(line)
        served.lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    while set(served.addresses) != set(expect):
        try:
            line = served.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            line = None
        if line is None:
            proc.kill()
            _, err = proc.communicate()
            pytest.fail(f"ventros serve did not start: {err[-3000:]}")
        match = _LISTENING.match(line.strip())
        if match:
            served.addresses[match.group(1)] = match.group(2)
    return served


@pytest.fixture(scope="module")
def agent_only() -> Iterator[Served]:
    pytest.importorskip("ventros_server.agents")
    # Memory is unreachable on purpose: the agents answer without it and say so.
    served = start_serve(
        "--only",
        "agent",
        "--agent-port",
        "0",
        "--memory-addr",
        "127.0.0.1:1",
        "--grace",
        "2",
        expect=("agent",),
    )
    yield served
    served.stop()


def test_agent_only_server_lists_the_reference_agents(agent_only):
    env = cli_env(PYTHON_ADK_GRPC=agent_only.addresses["agent"])
    result = run_cli("agents", "list", env=env)
    assert result.code == 0, result.stderr
    assert_snapshot("serve_agents_list.txt", result.stdout, volatile=True)
    data = run_cli("--json", "agents", "list", env=env).json()
    assert data["total_count"] == len(data["agents"]) == 5
    assert {a["category"] for a in data["agents"]} == {
        "SALES",
        "SUPPORT",
        "MARKETING",
        "RETENTION",
        "ANALYTICS",
    }


def test_agent_only_server_streams_a_run_without_memory(agent_only):
    env = cli_env(PYTHON_ADK_GRPC=agent_only.addresses["agent"])
    result = run_cli(
        "agents",
        "run",
        "CustomerServiceAgent",
        "--contact",
        CONTACT,
        "--channel",
        CHANNEL,
        "--message",
        "Oi, quero saber sobre o produto X",
        "--stream",
        env=env,
    )
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("[THINKING] ")
    assert any(line.startswith("[TOOL] ") for line in lines)
    done = [i for i, line in enumerate(lines) if line.startswith("[DONE] Confidence: ")]
    assert len(done) == 1
    answer = lines[done[0] - 1]
    assert answer and not answer.startswith("[")  # the streamed answer, on its own line
    executed = run_cli(
        "--json",
        "agents",
        "run",
        "CustomerServiceAgent",
        "--contact",
        CONTACT,
        "--channel",
        CHANNEL,
        "--message",
        "Oi, quero saber sobre o produto X",
        env=env,
    ).json()
    assert executed["metadata"]["memory"] == "unavailable"
    assert executed["intent"]


def test_agent_only_server_health_and_sigterm_drain(agent_only):
    env = cli_env(PYTHON_ADK_GRPC=agent_only.addresses["agent"])
    health = run_cli("health", "--service", "agent", "--json", env=env)
    assert health.code == 0, health.stderr
    assert json.loads(health.stdout)["agent"]["status"] == "SERVING"
    code, rest = agent_only.stop()
    assert code == 0
    assert rest[-2:] == ["shutting down: health is NOT_SERVING, no new calls accepted", "stopped"]
    gone = run_cli("health", "--service", "agent", env=env)
    assert gone.code == 14
