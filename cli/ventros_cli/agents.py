"""``ventros agents``: list, describe and run the agents of an AgentService."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Group
from rich.markup import escape
from rich.panel import Panel
from rich.text import Text

from ._common import (
    DataTable,
    agent_address,
    agent_client,
    command,
    console,
    emit_json,
    emit_json_line,
    fmt_float,
    parse_pairs,
    run,
    state,
    to_data,
)

app = typer.Typer(help="List, describe and run agents (AgentService).", no_args_is_help=True)


# -- list ------------------------------------------------------------------------------------


@app.command("list")
@command
def list_agents() -> None:
    """The agents the server runs: type, name, category, capabilities, average latency."""
    run(_list())


async def _list() -> None:
    async with agent_client() as client:
        response = await client.list_agents()
    if state.json:
        emit_json(to_data(response))
        return
    wide = console.width >= 110  # below that, the names go (`ventros agents describe` has them)
    table = DataTable(title=f"{response.total_count} agents at {agent_address()}")
    table.add_column("Type", style="bold", no_wrap=True)
    if wide:
        table.add_column("Name")
    table.add_column("Category", no_wrap=True)
    table.add_column("Capabilities")
    table.add_column("Avg latency", justify="right", no_wrap=True)
    for agent in response.agents:
        cells = [agent.type, agent.name] if wide else [agent.type]
        table.add_row(
            *cells,
            agent.category.name,
            "\n".join(agent.capabilities),
            f"{agent.avg_latency_ms} ms",
        )
    console.print(table)


# -- describe --------------------------------------------------------------------------------


@app.command("describe")
@command
def describe(
    agent_type: Annotated[str, typer.Argument(metavar="TYPE", help="Agent type, e.g. CustomerServiceAgent.")],
) -> None:
    """One agent: description, input/output schema and examples."""
    run(_describe(agent_type))


async def _describe(agent_type: str) -> None:
    async with agent_client() as client:
        response = await client.get_agent_capabilities(agent_type)
    if state.json:
        emit_json(to_data(response))
        return
    agent = response.agent
    header = Text()
    header.append(agent.name or agent.type, style="bold")
    header.append(f"  ({agent.type} · {agent.category.name})", style="dim")
    if agent.description:
        header.append(f"\n{agent.description}")
    if agent.capabilities:
        header.append("\nCapabilities: ", style="dim")
        header.append(", ".join(agent.capabilities))
    if agent.required_inputs:
        header.append("\nRequired inputs: ", style="dim")
        header.append(", ".join(agent.required_inputs))
    header.append("\nAverage latency: ", style="dim")
    header.append(f"{agent.avg_latency_ms} ms")
    console.print(Panel(header, expand=False))
    schema = response.schema
    if schema is not None:
        for title, fields in (("Input fields", schema.input_fields), ("Output fields", schema.output_fields)):
            if fields:
                console.print(_fields_table(title, fields))
    for number, example in enumerate(response.examples, 1):
        console.print(_example_panel(number, example))


def _fields_table(title: str, fields: list[Any]) -> DataTable:
    table = DataTable(title=title)
    table.add_column("Field", style="bold", no_wrap=True)
    table.add_column("Type", no_wrap=True)
    table.add_column("Required", no_wrap=True)
    table.add_column("Default")
    table.add_column("Description")
    for field in fields:
        table.add_row(
            field.name, field.type, "yes" if field.required else "", field.default_value, field.description
        )
    return table


def _example_panel(number: int, example: Any) -> Panel:
    lines = Text()
    if example.description:
        lines.append(example.description + "\n", style="italic")
    lines.append("input:", style="dim")
    for key, value in sorted(example.input.items()):
        lines.append(f"\n  {key}: {value}")
    lines.append("\noutput:", style="dim")
    for key, value in sorted(example.output.items()):
        lines.append(f"\n  {key}: {value}")
    return Panel(lines, title=f"Example {number}", title_align="left", expand=False)


# -- run -------------------------------------------------------------------------------------


@app.command("run")
@command
def run_agent(
    agent_type: Annotated[str, typer.Argument(metavar="TYPE", help="Agent type, e.g. CustomerServiceAgent.")],
    contact: Annotated[str, typer.Option("--contact", metavar="UUID", help="Contact id.")],
    message: Annotated[str, typer.Option("--message", "-m", help="The customer's message.")],
    channel: Annotated[str, typer.Option("--channel", metavar="UUID", help="Channel id.")],
    session: Annotated[str, typer.Option("--session", metavar="UUID", help="Session id (optional).")] = "",
    context: Annotated[
        list[str] | None,
        typer.Option("--context", "-c", metavar="KEY=VALUE", help="Extra context; repeat for more."),
    ] = None,
    stream: Annotated[
        bool,
        typer.Option(
            "--stream",
            "-s",
            help="Stream the run: thoughts and tool calls as they happen, the answer as it grows.",
        ),
    ] = False,
    timeout: Annotated[
        int | None,
        typer.Option(
            "--timeout",
            metavar="MS",
            min=1,
            max=60000,
            help="Bound the run (options.timeout_ms) [default: the server's, 30000].",
        ),
    ] = None,
    tools: Annotated[
        list[str] | None,
        typer.Option("--tool", metavar="NAME", help="Only let the agent use these tools; repeat for more."),
    ] = None,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", min=1, max=8192)] = None,
    temperature: Annotated[float | None, typer.Option("--temperature", min=0.0, max=2.0)] = None,
) -> None:
    """Run an agent on one message (ExecuteAgent, or StreamAgentExecution with --stream).

    With --stream the output follows the spec: \\[THINKING] ..., \\[TOOL] ..., the answer, then
    \\[DONE] Confidence: ... With --json and --stream each chunk is one JSON line.
    """
    from ventros.agents import ExecutionOptions

    options = ExecutionOptions(
        timeout_ms=timeout or 0,
        stream_response=stream,
        tools=list(tools or []),
        max_tokens=max_tokens or 0,
        temperature=temperature,
    )
    fields = {
        "agent_type": agent_type,
        "contact_id": contact,
        "message": message,
        "channel_id": channel,
        "session_id": session,
        "context": parse_pairs(context, "--context"),
        "options": options,
    }
    if stream:
        run(_stream(fields, timeout))
    else:
        run(_execute(fields))


async def _execute(fields: dict[str, Any]) -> None:
    from ventros.agents import ExecuteAgentRequest

    async with agent_client() as client:
        response = await client.execute_agent(ExecuteAgentRequest(**fields))
    if state.json:
        emit_json(to_data(response))
        return
    console.print(Panel(Text(response.response), title=escape(fields["agent_type"]), title_align="left"))
    summary = Text()
    summary.append("Intent: ", style="dim")
    summary.append(response.intent or "-")
    summary.append("   Confidence: ", style="dim")
    summary.append(fmt_float(response.confidence))
    summary.append("   Latency: ", style="dim")
    summary.append(f"{response.latency_ms} ms")
    if response.suggested_actions:
        summary.append("\nSuggested actions: ", style="dim")
        summary.append(", ".join(response.suggested_actions))
    if response.metadata:
        summary.append("\nMetadata: ", style="dim")
        summary.append(", ".join(f"{k}={v}" for k, v in sorted(response.metadata.items())))
    console.print(summary)
    if response.tool_calls:
        table = DataTable(title="Tool calls")
        table.add_column("Tool", style="bold", no_wrap=True)
        table.add_column("Input")
        table.add_column("Output")
        table.add_column("Latency", justify="right", no_wrap=True)
        for call in response.tool_calls:
            table.add_row(
                call.tool_name,
                ", ".join(f"{k}={v}" for k, v in sorted(call.input.items())),
                call.output,
                f"{call.latency_ms} ms",
            )
        console.print(table)
    thoughts = response.thoughts
    if thoughts is not None and thoughts.reasoning_steps:
        steps = Text()
        for number, step in enumerate(thoughts.reasoning_steps, 1):
            steps.append(f"{number}. ", style="dim")
            steps.append(step + ("\n" if number < len(thoughts.reasoning_steps) else ""))
        console.print(Group(Text("Reasoning", style="bold"), steps))


async def _stream(fields: dict[str, Any], timeout_ms: int | None) -> None:
    from ventros.agents import ChunkType, StreamAgentRequest

    printer = _ChunkPrinter()
    # No default deadline for streams (spec 5.2); --timeout bounds the run on both sides.
    timeout = timeout_ms / 1000 if timeout_ms else None
    async with agent_client() as client:
        try:
            async for chunk in client.stream_agent_execution(StreamAgentRequest(**fields), timeout=timeout):
                if state.json:
                    emit_json_line(to_data(chunk))
                else:
                    printer.show(chunk, ChunkType)
        finally:
            printer.finish()


class _ChunkPrinter:
    """Prints chunks the way the spec's 1.4 example does, flushing as each one arrives."""

    def __init__(self) -> None:
        self.at_line_start = True
        self.partials = False

    def _line(self, text: Text) -> None:
        if not self.at_line_start:
            console.print()
        console.print(text, soft_wrap=True)
        self.at_line_start = True

    def show(self, chunk: Any, kinds: Any) -> None:
        kind = chunk.type
        if kind == kinds.THOUGHT:
            self._line(Text.assemble(("[THINKING] ", "magenta"), chunk.content))
        elif kind == kinds.TOOL_CALL:
            self._line(Text.assemble(("[TOOL] ", "cyan"), chunk.content))
        elif kind == kinds.PARTIAL:
            console.print(Text(chunk.content), end="", soft_wrap=True)
            console.file.flush()
            self.partials = True
            self.at_line_start = chunk.content.endswith("\n")
        elif kind == kinds.FINAL:
            if not self.partials and chunk.content:
                self._line(Text(chunk.content))
            meta = chunk.metadata
            self._line(Text.assemble(("[DONE] ", "bold green"), f"Confidence: {meta.get('confidence', '?')}"))
            extra = [
                f"{key}: {meta[key]}"
                for key in ("intent", "suggested_actions", "latency_ms")
                if meta.get(key)
            ]
            if extra:
                self._line(Text("       " + " · ".join(extra), style="dim"))
        elif kind == kinds.ERROR:
            status = chunk.metadata.get("status", "ERROR")
            self._line(Text.assemble(("[ERROR] ", "bold red"), f"{status}: {chunk.content}"))
        console.file.flush()

    def finish(self) -> None:
        if not self.at_line_start:
            console.print()
            self.at_line_start = True
