"""``ventros demo``: start a server with demo data, call it three ways, stop it."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import IO, Annotated, Any, NoReturn

import typer
from rich.text import Text

from ._common import (
    EXIT_FAILURE,
    agent_client,
    command,
    console,
    emit_json,
    err_console,
    fail,
    memory_client,
    run,
    state,
    to_data,
)

#: João Silva, the demo data set's best-known contact (ventros_server.demo_data.JOAO_ID).
FALLBACK_CONTACT = "550e8400-e29b-41d4-a716-446655440000"
DEMO_CHANNEL = "660e8400-e29b-41d4-a716-446655440001"
DEMO_QUERY = "delivery delay"
DEMO_MESSAGE = "Oi, quero saber sobre o produto X"
_LISTENING = re.compile(r"^(agent|memory) service listening on (\S+)$")


@command
def demo(
    startup_timeout: Annotated[
        float,
        typer.Option("--startup-timeout", metavar="SECONDS", help="How long the server may take to start."),
    ] = 60.0,
) -> None:
    """Start a demo server, call it three ways, stop it: the quickest tour.

    Runs `ventros serve --demo --db :memory:` in a subprocess on free ports, then shows
    `ventros agents list`, `ventros memory search` and a streamed `ventros agents run` against it,
    and stops it. Needs nothing but the install: no files written, no fixed ports.
    """
    with _demo_server(startup_timeout) as addresses:
        state.agent_addr = addresses["agent"]
        state.memory_addr = addresses["memory"]
        contact, query, agent, message = _demo_inputs()
        fields = {"agent_type": agent, "contact_id": contact, "message": message, "channel_id": DEMO_CHANNEL}
        if state.json:
            emit_json({"addresses": addresses, **run(_collect(contact, query, fields))})
            return
        from . import agents, memory

        _step(f"ventros agents list --agent-addr {addresses['agent']}")
        run(agents._list())
        _step(f'ventros memory search --contact {contact} --query "{query}"')
        run(memory._search(contact, query, memory.Mode.hybrid, [], 5, memory.DEFAULT_TIMEOUT_MS))
        _step(
            f'ventros agents run {agent} --contact {contact} --channel {DEMO_CHANNEL} --message "{message}" --stream'
        )
        run(agents._stream(fields, None))
    console.print()
    console.print("Demo server stopped. Run your own with: ventros serve --demo", markup=False)


async def _collect(contact: str, query: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The three demo calls as one JSON document (for --json)."""
    from ventros.agents import StreamAgentRequest

    from .memory import DEFAULT_TIMEOUT_MS

    async with agent_client() as agents_, memory_client() as memory:
        listed = await agents_.list_agents()
        found = await memory.search_memories(
            contact_id=contact, query=query, limit=5, timeout=DEFAULT_TIMEOUT_MS / 1000
        )
        chunks = [to_data(c) async for c in agents_.stream_agent_execution(StreamAgentRequest(**fields))]
    return {"agents": to_data(listed), "search": to_data(found), "run": chunks}


def _step(command_line: str) -> None:
    if state.json:
        return
    console.print()
    console.print(Text(f"$ {command_line}", style="bold cyan"), soft_wrap=True)


def _demo_inputs() -> tuple[str, str, str, str]:
    """Contact, query, agent type and message: João Silva of the demo data set."""
    contact = FALLBACK_CONTACT
    with contextlib.suppress(ImportError):
        from ventros_server.demo_data import JOAO_ID

        contact = JOAO_ID
    return contact, DEMO_QUERY, "CustomerServiceAgent", DEMO_MESSAGE


@contextlib.contextmanager
def _demo_server(startup_timeout: float) -> Iterator[dict[str, str]]:
    """`ventros serve --demo` in a subprocess on free ports; yields {"agent": addr, "memory": addr}."""
    cmd = [sys.executable, "-m", "ventros_cli", "serve", "--demo", "--db", ":memory:"]
    cmd += ["--agent-port", "0", "--memory-port", "0", "--grace", "2"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("VENTROS_TOKEN", None)
    if not state.json:
        err_console.print("Starting a demo server (ventros serve --demo on free ports)...", markup=False)
    with tempfile.TemporaryFile(mode="w+", prefix="ventros-demo-", suffix=".log") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
        try:
            yield _wait_listening(proc, startup_timeout, log)
        finally:
            _stop(proc)


def _wait_listening(proc: subprocess.Popen[str], timeout: float, log: IO[str]) -> dict[str, str]:
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    addresses: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while len(addresses) < 2:
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            _give_up(proc, log, f"the demo server did not start within {timeout:.0f} s")
        if line is None:
            _give_up(proc, log, f"the demo server exited with code {proc.wait()}")
        match = _LISTENING.match(line.strip())
        if match:
            addresses[match.group(1)] = match.group(2)
    return addresses


def _give_up(proc: subprocess.Popen[Any], log: IO[str], message: str) -> NoReturn:
    _stop(proc)
    log.seek(0)
    tail = log.read()[-3000:].strip()
    if tail and not state.json:
        err_console.print(tail, markup=False, highlight=False)
    fail(message, code=EXIT_FAILURE, hint="Try `ventros serve --demo` yourself to see the server's log.")


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
