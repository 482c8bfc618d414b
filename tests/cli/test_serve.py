"""``ventros serve`` as a real subprocess: the reference services, ports read from stdout,
SIGTERM shutdown. The agent-only server needs nothing but the agents package; the full
server (``--demo``) needs the memory store too."""

from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import tempfile
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
    stopped: bool = False

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> tuple[int, list[str]]:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        rest: list[str] = []
        if self.stopped:
            return code, rest
        self.stopped = True
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
    log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(
        [VENTROS, "serve", *args], stdout=subprocess.PIPE, stderr=log, text=True, env=cli_env()
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
            log.seek(0)
            pytest.fail(
                f"ventros serve {' '.join(args)} did not start (exit {proc.wait()}): {log.read()[-3000:]}"
            )
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


RUN_AGENT = (
    "agents", "run", "CustomerServiceAgent", "--contact", CONTACT, "--channel", CHANNEL,
    "--message", "Oi, quero saber sobre o produto X",
)  # fmt: skip


def test_agent_only_server_streams_a_run_without_memory(agent_only):
    env = cli_env(PYTHON_ADK_GRPC=agent_only.addresses["agent"])
    result = run_cli(*RUN_AGENT, "--stream", env=env)
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("[THINKING] ")
    assert any(line.startswith("[TOOL] ") for line in lines)
    done = [i for i, line in enumerate(lines) if line.startswith("[DONE] Confidence: ")]
    assert len(done) == 1
    answer = lines[done[0] - 1]
    assert answer and not answer.startswith("[")  # the streamed answer, on its own line
    executed = run_cli("--json", *RUN_AGENT, env=env).json()
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


# -- the full reference server on demo data ----------------------------------------------------


@pytest.fixture(scope="module")
def demo_server() -> Iterator[Served]:
    pytest.importorskip("ventros_server.memory")
    pytest.importorskip("ventros_server.agents")
    served = start_serve(
        "--demo",
        "--db",
        ":memory:",
        "--agent-port",
        "0",
        "--memory-port",
        "0",
        "--grace",
        "2",
        expect=("agent", "memory"),
    )
    yield served
    served.stop()


@pytest.fixture(scope="module")
def demo_env(demo_server) -> dict[str, str]:
    return cli_env(
        PYTHON_ADK_GRPC=demo_server.addresses["agent"], MEMORY_SERVICE_GRPC=demo_server.addresses["memory"]
    )


def test_demo_server_health(demo_env):
    result = run_cli("health", "--json", env=demo_env)
    assert result.code == 0, result.stderr
    assert {k: v["status"] for k, v in result.json().items()} == {"agent": "SERVING", "memory": "SERVING"}


def test_demo_server_memory_search(demo_env):
    table = run_cli("memory", "search", "--contact", CONTACT, "--query", "delivery delay", env=demo_env)
    assert table.code == 0, table.stderr
    assert "hybrid search" in table.stdout
    assert "Complained about delivery delay" in table.stdout
    data = run_cli(
        "--json",
        "memory",
        "search",
        "--contact",
        CONTACT,
        "-q",
        "delivery delay",
        "--mode",
        "keyword",
        env=demo_env,
    ).json()
    assert "delivery delay" in data["memories"][0]["content"]
    assert data["metadata"]["keyword_weight"] == 1.0


def test_demo_server_context_and_related(demo_env):
    context = run_cli("memory", "context", CONTACT, "--graph", env=demo_env)
    assert context.code == 0, context.stderr
    assert context.stdout.startswith("Contact: João Silva (premium)")
    assert "--[purchased]-->" in context.stdout
    related = run_cli(
        "--json", "memory", "related", CONTACT, "--depth", "2", "--types", "product", env=demo_env
    )
    assert related.code == 0, related.stderr
    entities = related.json()["entities"]
    assert entities and {e["entity"]["type"] for e in entities} == {"product"}


def test_demo_server_store_then_find(demo_env):
    stored = run_cli(
        "--json",
        "memory",
        "store",
        "--contact",
        CONTACT,
        "--content",
        "Asked for gift wrapping (zebra-striped)",
        "--type",
        "preference",
        "--meta",
        "source=cli-test",
        env=demo_env,
    )
    assert stored.code == 0, stored.stderr
    memory_id = stored.json()["memory_id"]
    found = run_cli(
        "--json",
        "memory",
        "search",
        "--contact",
        CONTACT,
        "-q",
        "zebra-striped gift wrapping",
        "--mode",
        "keyword",
        env=demo_env,
    ).json()
    assert found["memories"][0]["id"] == memory_id
    assert found["memories"][0]["metadata"] == {"source": "cli-test"}


def test_demo_server_errors_carry_details(demo_env):
    missing = run_cli("--json", "memory", "context", "00000000-0000-4000-8000-00000000dead", env=demo_env)
    assert missing.code == 5
    assert json.loads(missing.stderr)["error"]["code"] == "CONTACT_NOT_FOUND"
    invalid = run_cli("memory", "search", "--contact", "nope", "-q", "x", env=demo_env)
    assert invalid.code == 3
    assert "field: contact_id" in invalid.stderr
    unknown = run_cli("agents", "describe", "CustomerServiceAgnt", env=demo_env)
    assert unknown.code == 5
    assert "CustomerServiceAgent" in unknown.stderr  # the closest type, suggested


def test_ventros_demo_runs_end_to_end():
    pytest.importorskip("ventros_server.memory")
    result = run_cli("demo", timeout=120)
    assert result.code == 0, result.stderr
    out = result.stdout
    assert "$ ventros agents list" in out
    assert "$ ventros memory search --contact" in out
    assert "[THINKING] " in out and "[TOOL] " in out
    assert "[DONE] Confidence: " in out
    assert out.rstrip().endswith("Demo server stopped. Run your own with: ventros serve --demo")
    as_json = run_cli("--json", "demo", timeout=120)
    assert as_json.code == 0, as_json.stderr
    data = as_json.json()  # one document: the three answers
    assert data["agents"]["total_count"] == 5
    assert data["search"]["memories"]
    assert data["run"][-1]["type"] == "FINAL"


def test_import_then_serve_the_file(tmp_path):
    memory = pytest.importorskip("ventros_server.memory")
    from ventros_conformance import fixtures_path
    from ventros_conformance.fixtures import CONTACT_A

    assert memory
    db = tmp_path / "crm.duckdb"
    imported = run_cli("--json", "memory", "import", str(fixtures_path()), "--db", str(db))
    assert imported.code == 0, imported.stderr
    report = imported.json()
    assert report["imported"] > 50 and report["errors"] == []
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"kind": "memory"}\nnot json\n', encoding="utf-8")
    rejected = run_cli("memory", "import", str(bad), "--db", str(tmp_path / "other.duckdb"))
    assert rejected.code == 1
    assert "line 2: invalid JSON" in rejected.stderr
    served = start_serve("--only", "memory", "--memory-port", "0", "--db", str(db), expect=("memory",))
    try:
        env = cli_env(MEMORY_SERVICE_GRPC=served.addresses["memory"])
        context = run_cli("--json", "memory", "context", CONTACT_A, env=env)
        assert context.code == 0, context.stderr
        assert context.json()["profile"]["name"] == "Conformance Contact A"
    finally:
        code, _ = served.stop()
    assert code == 0


def test_serve_refuses_a_store_of_another_embedder_until_reembed(tmp_path):
    """The refusal names the fix, and the fix exists: --reembed opens the store with the new
    embedder and its memories are found with it."""
    pytest.importorskip("ventros_server.memory")
    from ventros_conformance import fixtures_path
    from ventros_conformance.fixtures import CONTACT_A

    db = str(tmp_path / "built-with-384.duckdb")
    assert run_cli("memory", "import", str(fixtures_path()), "--db", db).code == 0
    other = ("--only", "memory", "--memory-port", "0", "--db", db, "--embedder-option", "dim=128")
    refused = run_cli("serve", *other)
    assert refused.code == 1
    assert "offline-hash-v1-384" in refused.stderr and "ventros serve --reembed" in refused.stderr
    served = start_serve(*other, "--reembed", expect=("memory",))
    try:
        env = cli_env(MEMORY_SERVICE_GRPC=served.addresses["memory"])
        found = run_cli(
            "--json", "memory", "search", "--contact", CONTACT_A, "-q", "delivery delay", "--mode", "vector",
            env=env,
        )  # fmt: skip
        assert found.code == 0, found.stderr
        assert "delivery delay" in found.json()["memories"][0]["content"], found.stdout
    finally:
        code, _ = served.stop()
    assert code == 0


def test_conformance_against_the_demo_server(demo_server, tmp_path):
    pytest.importorskip("ventros_conformance")
    junit = tmp_path / "reports" / "memory.xml"
    result = run_cli(
        "conformance",
        "--target",
        demo_server.addresses["memory"],
        "--service",
        "memory",
        "--select",
        "limit",
        "--junit",
        str(junit),
        timeout=180,
    )
    assert result.code == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 failed" in result.stdout
    assert junit.is_file() and "<testsuite" in junit.read_text(encoding="utf-8")
