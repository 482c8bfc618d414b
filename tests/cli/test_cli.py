"""The ``ventros`` command as a real subprocess against a real server on random ports.

The server is ventros_server.app.VentrosApp (what ``ventros serve`` runs) serving the
deterministic servicers of servicers.py, so tables and JSON are compared with snapshots in
tests/cli/snapshots/ (VENTROS_UPDATE_SNAPSHOTS=1 rewrites them).
"""

from __future__ import annotations

import json

from .conftest import assert_snapshot, cli_env, run_cli
from .servicers import CHANNEL, CONTACT, UNKNOWN_CONTACT

RUN = ["agents", "run", "CustomerServiceAgent", "--contact", CONTACT, "--channel", CHANNEL]


def _no_traceback(result):
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout


# -- agents ----------------------------------------------------------------------------------


def test_agents_list_table(cli):
    result = cli("agents", "list")
    assert result.code == 0, result.stderr
    assert_snapshot("agents_list.txt", result.stdout)


def test_agents_list_json_after_the_command(cli):
    result = cli("agents", "list", "--json")
    assert result.code == 0, result.stderr
    data = result.json()
    assert data["total_count"] == 2
    assert [a["type"] for a in data["agents"]] == ["CustomerServiceAgent", "LeadQualifierAgent"]
    assert data["agents"][0]["category"] == "SUPPORT"
    assert_snapshot("agents_list.json", result.stdout)


def test_agents_describe(cli):
    result = cli("agents", "describe", "CustomerServiceAgent")
    assert result.code == 0, result.stderr
    assert_snapshot("agents_describe.txt", result.stdout)


def test_agents_run(cli):
    result = cli(*RUN, "--message", "Where is my order?", "--context", "a=1", "-c", "b=2")
    assert result.code == 0, result.stderr
    assert "context=a=1,b=2" in result.stdout  # the fake echoes the request's context
    assert_snapshot("agents_run.txt", result.stdout)


def test_agents_run_json(cli):
    result = cli("--json", *RUN, "--message", "Where is my order?")
    assert result.code == 0, result.stderr
    data = result.json()
    assert data["confidence"] == 0.95  # float32 on the wire, shortest decimal in JSON
    assert data["tool_calls"][0]["tool_name"] == "search_memories"
    assert_snapshot("agents_run.json", result.stdout)


def test_agents_run_stream_prints_like_the_spec(cli):
    result = cli(*RUN, "--message", "Where is my order?", "--stream")
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "[THINKING] User is asking about an order"
    assert lines[1].startswith("[TOOL] Calling search_memories(")
    assert lines[3] == "Olá! Your order ships tomorrow."  # the PARTIAL chunks, on one line
    assert lines[4] == "[DONE] Confidence: 0.95"
    assert_snapshot("agents_run_stream.txt", result.stdout)


def test_agents_run_stream_json_is_one_chunk_per_line(cli):
    result = cli(*RUN, "--message", "Where is my order?", "--stream", "--json")
    assert result.code == 0, result.stderr
    chunks = [json.loads(line) for line in result.stdout.splitlines()]
    assert [c["type"] for c in chunks] == [
        "THOUGHT",
        "TOOL_CALL",
        "TOOL_CALL",
        "PARTIAL",
        "PARTIAL",
        "PARTIAL",
        "FINAL",
    ]
    assert chunks[-1]["metadata"]["confidence"] == "0.95"


def test_stream_failure_shows_the_error_chunk_then_the_status(cli):
    result = cli(*RUN, "--message", "fail", "--stream")
    assert result.code == 14
    assert "[ERROR] UNAVAILABLE: the LLM backend is down" in result.stdout
    assert "UNAVAILABLE (14) · LLM_UNAVAILABLE" in result.stderr
    _no_traceback(result)


# -- errors ----------------------------------------------------------------------------------


def test_not_found_is_a_short_panel_with_suggestions_and_exit_5(cli):
    result = cli("agents", "describe", "NoSuchAgent")
    assert result.code == 5
    assert result.stdout == ""
    assert_snapshot("error_not_found.txt", result.stderr)
    _no_traceback(result)


def test_json_errors_go_to_stderr_as_json(cli):
    result = cli("--json", "agents", "describe", "NoSuchAgent")
    assert result.code == 5
    assert result.stdout == ""
    error = json.loads(result.stderr)["error"]
    assert error == {
        "status": "NOT_FOUND",
        "status_code": 5,
        "code": "AGENT_NOT_FOUND",
        "message": "Agent type 'NoSuchAgent' does not exist",
        "metadata": {"agent_type": "NoSuchAgent"},
        "suggestions": ["Try CustomerServiceAgent instead"],
        "exit_code": 5,
    }


def test_invalid_argument_exits_3_and_names_the_field(cli):
    result = cli(
        "agents", "run", "CustomerServiceAgent", "--contact", "not-a-uuid", "--channel", CHANNEL, "-m", "hi"
    )
    assert result.code == 3
    assert "INVALID_ARGUMENT (3) · INVALID_FIELD" in result.stderr
    assert "field: contact_id" in result.stderr
    _no_traceback(result)


def test_deadline_exceeded_exits_4(cli):
    result = cli(*RUN, "--message", "slow", "--timeout", "300")
    assert result.code == 4
    assert "DEADLINE_EXCEEDED (4)" in result.stderr
    _no_traceback(result)


def test_unreachable_server_gets_a_hint_and_exit_14():
    result = run_cli("agents", "list", "--agent-addr", "127.0.0.1:1")
    assert result.code == 14
    assert "UNAVAILABLE (14) · UNREACHABLE" in result.stderr
    assert "Hint: no server there? Start one with: ventros serve --demo" in result.stderr
    _no_traceback(result)


def test_usage_errors_exit_2():
    missing = run_cli("memory", "search", "--query", "x")  # no --contact
    assert missing.code == 2
    bad_pair = run_cli(*RUN, "-m", "hi", "--context", "novalue")
    assert bad_pair.code == 2 and "KEY=VALUE" in bad_pair.stderr
    bad_addr = run_cli("--json", "agents", "list", "--agent-addr", "no-port")
    assert bad_addr.code == 2
    assert json.loads(bad_addr.stderr)["error"]["code"] == "CONFIGURATION_ERROR"
    for result in (missing, bad_pair, bad_addr):
        _no_traceback(result)


# -- memory ----------------------------------------------------------------------------------


def test_memory_search_table(cli):
    result = cli("memory", "search", "--contact", CONTACT, "--query", "delivery")
    assert result.code == 0, result.stderr
    assert_snapshot("memory_search.txt", result.stdout)


def test_memory_search_json_with_filters(cli):
    result = cli(
        "memory",
        "search",
        "--contact",
        CONTACT,
        "-q",
        "delivery",
        "--mode",
        "keyword",
        "--type",
        "support_ticket",
        "--limit",
        "5",
        "--json",
    )
    assert result.code == 0, result.stderr
    data = result.json()
    assert [m["memory_type"] for m in data["memories"]] == ["support_ticket"]
    assert data["memories"][0]["created_at"] == "2024-09-18T10:30:00Z"
    assert_snapshot("memory_search.json", result.stdout)


def test_memory_search_without_query_is_invalid(cli):
    result = cli("memory", "search", "--contact", CONTACT)
    assert result.code == 3
    assert "Pass --query, or use --mode graph." in result.stderr


def test_memory_store_sends_metadata_and_prints_the_id(cli, fake_server):
    result = cli(
        "memory",
        "store",
        "--contact",
        CONTACT,
        "--content",
        "Prefers [blue] boxes",
        "--type",
        "preference",
        "--meta",
        "source=cli",
        "--meta",
        "k=v=w",
    )
    assert result.code == 0, result.stderr
    assert result.stdout.startswith("Memory stored: ")
    stored = fake_server.memory_servicer.stored[-1]
    assert stored == (CONTACT, "Prefers [blue] boxes", "preference", {"source": "cli", "k": "v=w"})


def test_memory_context_with_graph(cli):
    result = cli("memory", "context", CONTACT, "--graph")
    assert result.code == 0, result.stderr
    assert f"contact:{CONTACT} --[purchased]--> product:p-123" in result.stdout
    assert_snapshot("memory_context.txt", result.stdout)


def test_memory_context_unknown_contact_is_not_found(cli):
    result = cli("memory", "context", UNKNOWN_CONTACT, "--json")
    assert result.code == 5
    assert json.loads(result.stderr)["error"]["code"] == "CONTACT_NOT_FOUND"


def test_memory_related(cli):
    result = cli("memory", "related", CONTACT, "--depth", "3", "--types", "product", "--types", "category")
    assert result.code == 0, result.stderr
    assert_snapshot("memory_related.txt", result.stdout)


# -- health ----------------------------------------------------------------------------------


def test_health_of_both_services(cli):
    result = cli("health", "--json")
    assert result.code == 0, result.stderr
    data = result.json()
    assert {name: entry["status"] for name, entry in data.items()} == {
        "agent": "SERVING",
        "memory": "SERVING",
    }


def test_health_table_and_unreachable_service(fake_server):
    env = cli_env(PYTHON_ADK_GRPC=fake_server.agent, MEMORY_SERVICE_GRPC="127.0.0.1:1")
    result = run_cli("health", env=env)
    assert result.code == 14
    assert_snapshot("health_unreachable.txt", result.stdout)
