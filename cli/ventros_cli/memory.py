"""``ventros memory``: search, store, contact context, related entities, and JSONL import."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from ._common import (
    EXIT_FAILURE,
    EXIT_USAGE,
    DataTable,
    command,
    console,
    emit_json,
    err_console,
    fail,
    fmt_float,
    fmt_time,
    memory_client,
    parse_pairs,
    run,
    state,
    to_data,
)

app = typer.Typer(help="Search, store and explore contact memories (MemoryService).", no_args_is_help=True)

#: The CLI's deadline for memory calls: generous for people (a cold server may be loading its
#: index); programs wanting the spec's tight defaults use the SDK.
DEFAULT_TIMEOUT_MS = 5000

TimeoutOpt = Annotated[
    int,
    typer.Option("--timeout", metavar="MS", min=1, help="Deadline of the call in milliseconds."),
]


class Mode(enum.StrEnum):
    hybrid = "hybrid"
    vector = "vector"
    keyword = "keyword"
    graph = "graph"


_MODES = {"hybrid": "HYBRID", "vector": "VECTOR_ONLY", "keyword": "KEYWORD_ONLY", "graph": "GRAPH_ONLY"}


# -- search ----------------------------------------------------------------------------------


@app.command("search")
@command
def search(
    contact: Annotated[str, typer.Option("--contact", metavar="UUID", help="Contact id.")],
    query: Annotated[
        str, typer.Option("--query", "-q", help="What to look for (optional in graph mode).")
    ] = "",
    mode: Annotated[Mode, typer.Option("--mode", help="Which index to search.")] = Mode.hybrid,
    types: Annotated[
        list[str] | None,
        typer.Option("--type", "-t", metavar="TYPE", help="Only these memory types; repeat for more."),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, max=100, help="At most this many results.")
    ] = 10,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT_MS,
) -> None:
    """Ranked memories of one contact (SearchMemories)."""
    run(_search(contact, query, mode, list(types or []), limit, timeout))


async def _search(contact: str, query: str, mode: Mode, types: list[str], limit: int, timeout: int) -> None:
    from ventros.memory import SearchMemoriesRequest, SearchMode

    request = SearchMemoriesRequest(
        contact_id=contact, query=query, limit=limit, memory_types=types, mode=SearchMode[_MODES[mode.value]]
    )
    async with memory_client() as client:
        response = await client.search_memories(request, timeout=timeout / 1000)
    if state.json:
        emit_json(to_data(response))
        return
    table = DataTable(
        title=f"{len(response.memories)} of {response.total_count} memories · {mode.value} search",
        title_justify="left",
        caption=Text(_search_caption(response)),
        caption_justify="left",
    )
    wide = console.width >= 120  # below that, related entities are left to --json
    table.add_column("#", justify="right", style="dim", no_wrap=True)
    table.add_column("Type", style="bold", no_wrap=True)
    table.add_column("Content", ratio=3)
    table.add_column("Relevance", justify="right", no_wrap=True)
    if wide:
        table.add_column("Related", ratio=2)
    table.add_column("Created", no_wrap=True)
    for number, memory in enumerate(response.memories, 1):
        related = ", ".join(f"{r.entity_type}:{r.entity_id}" for r in memory.related)
        table.add_row(
            str(number),
            memory.memory_type,
            memory.content,
            fmt_float(memory.relevance_score),
            *([related] if wide else []),
            fmt_time(memory.created_at),
        )
    console.print(table)


def _search_caption(response: Any) -> str:
    meta = response.metadata
    parts = [f"{response.search_latency_ms:.1f} ms"]
    if meta is not None:
        parts.append(
            f"matches: vector {meta.vector_matches}, keyword {meta.keyword_matches}, graph {meta.graph_matches}"
        )
    return " · ".join(parts)


# -- store -----------------------------------------------------------------------------------


@app.command("store")
@command
def store(
    contact: Annotated[str, typer.Option("--contact", metavar="UUID", help="Contact id.")],
    content: Annotated[str, typer.Option("--content", help="The memory's text.")],
    memory_type: Annotated[
        str,
        typer.Option("--type", "-t", metavar="TYPE", help="lower_snake_case type, e.g. preference, fact."),
    ],
    meta: Annotated[
        list[str] | None,
        typer.Option("--meta", metavar="KEY=VALUE", help="Metadata entry; repeat for more."),
    ] = None,
    related: Annotated[
        list[str] | None,
        typer.Option(
            "--related",
            metavar="TYPE:ID[:RELATIONSHIP]",
            help="Link the memory to an entity, e.g. product:p-42:purchased; repeat for more.",
        ),
    ] = None,
    no_embed: Annotated[
        bool,
        typer.Option("--no-embed", help="Store without a vector (found by keyword and graph search only)."),
    ] = False,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT_MS,
) -> None:
    """Store one memory (StoreMemory). Not retried: a retry after a lost reply would store it twice."""
    from ventros.memory import RelatedEntity, StoreMemoryRequest

    entities = []
    for spec in related or ():
        parts = spec.split(":", 2)
        if len(parts) < 2 or not parts[0] or not parts[1]:
            raise typer.BadParameter(f"expected TYPE:ID[:RELATIONSHIP], got {spec!r}", param_hint="--related")
        entities.append(
            RelatedEntity(
                entity_type=parts[0], entity_id=parts[1], relationship=parts[2] if len(parts) > 2 else ""
            )
        )
    request = StoreMemoryRequest(
        contact_id=contact,
        content=content,
        memory_type=memory_type,
        metadata=parse_pairs(meta, "--meta"),
        auto_embed=False if no_embed else None,
        related=entities,
    )
    run(_store(request, timeout))


async def _store(request: Any, timeout: int) -> None:
    async with memory_client() as client:
        response = await client.store_memory(request, timeout=timeout / 1000)
    if state.json:
        emit_json(to_data(response))
        return
    console.print(Text.assemble("Memory stored: ", (response.memory_id, "bold")))


# -- context ---------------------------------------------------------------------------------


@app.command("context")
@command
def context(
    contact: Annotated[str, typer.Argument(metavar="CONTACT", help="Contact id (UUID).")],
    graph: Annotated[
        bool, typer.Option("--graph", "-g", help="Include the knowledge graph (depth 2).")
    ] = False,
    history: Annotated[
        int, typer.Option("--history", min=1, max=500, help="At most this many recent memories and messages.")
    ] = 10,
    types: Annotated[
        list[str] | None,
        typer.Option(
            "--type",
            "-t",
            metavar="TYPE",
            help="Only these memory/entity types ('message' keeps messages); repeat for more.",
        ),
    ] = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT_MS,
) -> None:
    """Profile, stats, recent memories and messages of one contact (GetContactContext)."""
    run(_context(contact, graph, history, list(types or []), timeout))


async def _context(contact: str, graph: bool, history: int, types: list[str], timeout: int) -> None:
    async with memory_client() as client:
        response = await client.get_contact_context(
            contact_id=contact,
            include_graph=graph,
            history_limit=history,
            entity_types=types,
            timeout=timeout / 1000,
        )
    if state.json:
        emit_json(to_data(response))
        return
    profile = response.profile
    header = Text()
    name = (profile.name if profile else "") or contact
    header.append(f"Contact: {name}", style="bold")
    if profile and profile.tier:
        header.append(f" ({profile.tier})")
    if profile:
        for label, value in (("Phone", profile.phone), ("Email", profile.email)):
            if value:
                header.append(f"\n{label}: ", style="dim")
                header.append(value)
        if profile.tags:
            header.append("\nTags: ", style="dim")
            header.append(", ".join(profile.tags))
        for key, value in sorted(profile.custom_fields.items()):
            header.append(f"\n{key}: ", style="dim")
            header.append(value)
    stats = response.stats
    if stats is not None:
        header.append("\nLTV: ", style="dim")
        header.append(f"{stats.lifetime_value:.2f}")
        header.append("   Churn risk: ", style="dim")
        header.append(f"{stats.churn_risk * 100:.2f}%")
        header.append("   Messages: ", style="dim")
        header.append(str(stats.total_messages))
        header.append("   Purchases: ", style="dim")
        header.append(str(stats.total_purchases))
        if stats.first_contact or stats.last_activity:
            header.append("\nFirst contact: ", style="dim")
            header.append(fmt_time(stats.first_contact) or "-")
            header.append("   Last activity: ", style="dim")
            header.append(fmt_time(stats.last_activity) or "-")
    console.print(header)

    if response.recent_memories:
        table = DataTable(title=f"Recent memories ({len(response.recent_memories)})")
        table.add_column("Type", style="bold", no_wrap=True)
        table.add_column("Content")
        table.add_column("Created", no_wrap=True)
        for memory in response.recent_memories:
            table.add_row(memory.memory_type, memory.content, fmt_time(memory.created_at))
        console.print(table)
    if response.recent_messages:
        table = DataTable(title=f"Recent messages ({len(response.recent_messages)})")
        table.add_column("", no_wrap=True)
        table.add_column("Content")
        table.add_column("Channel", no_wrap=True)
        table.add_column("Sent", no_wrap=True)
        for message in response.recent_messages:
            table.add_row(
                "←" if message.is_inbound else "→",
                message.content,
                message.channel,
                fmt_time(message.sent_at),
            )
        console.print(table)
    kg = response.graph
    if graph and kg is not None:
        types_by_id = {node.id: node.type for node in kg.nodes}
        text = Text("Knowledge graph", style="bold")
        text.append(f"\n  Nodes: {len(kg.nodes)}\n  Edges: {len(kg.edges)}")
        for edge in kg.edges:
            text.append(
                f"\n  - {types_by_id.get(edge.from_id, '?')}:{edge.from_id} --[{edge.relationship}]--> "
                f"{types_by_id.get(edge.to_id, '?')}:{edge.to_id}"
            )
        console.print(text)


# -- related ---------------------------------------------------------------------------------


@app.command("related")
@command
def related(
    entity: Annotated[
        str, typer.Argument(metavar="ENTITY", help="Entity id (a contact id, product id, ...).")
    ],
    entity_type: Annotated[
        str, typer.Option("--entity-type", metavar="TYPE", help="Require the start entity to have this type.")
    ] = "",
    depth: Annotated[int, typer.Option("--depth", "-d", min=1, max=5, help="How many hops to walk.")] = 2,
    types: Annotated[
        list[str] | None,
        typer.Option(
            "--types",
            "--type",
            "-t",
            metavar="TYPE",
            help="Only return entities of these types; repeat for more.",
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, max=100, help="At most this many entities.")
    ] = 20,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT_MS,
) -> None:
    """The knowledge-graph neighbourhood of one entity (GetRelatedEntities)."""
    run(_related(entity, entity_type, depth, list(types or []), limit, timeout))


async def _related(
    entity: str, entity_type: str, depth: int, types: list[str], limit: int, timeout: int
) -> None:
    async with memory_client() as client:
        response = await client.get_related_entities(
            entity_id=entity,
            entity_type=entity_type,
            max_depth=depth,
            target_types=types,
            limit=limit,
            timeout=timeout / 1000,
        )
    if state.json:
        emit_json(to_data(response))
        return
    table = DataTable(title=f"{len(response.entities)} entities related to {entity}")
    table.add_column("Type", style="bold", no_wrap=True)
    table.add_column("Id")
    table.add_column("Relevance", justify="right", no_wrap=True)
    table.add_column("Path")
    table.add_column("Properties")
    for result in response.entities:
        node = result.entity
        path = " → ".join(edge.relationship or "mentioned" for edge in result.path)
        props = ", ".join(f"{k}={v}" for k, v in sorted(node.properties.items())) if node else ""
        table.add_row(
            node.type if node else "", node.id if node else "", fmt_float(result.relevance), path, props
        )
    console.print(table)


# -- import ----------------------------------------------------------------------------------


@app.command("import")
@command
def import_file(
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE.jsonl",
            exists=True,
            dir_okay=False,
            readable=True,
            help="JSON Lines file of records to import.",
        ),
    ],
    db: Annotated[
        str | None,
        typer.Option(
            "--db", metavar="PATH", help="DuckDB file to import into [default: the one `ventros serve` uses]."
        ),
    ] = None,
    embedder: Annotated[
        str, typer.Option("--embedder", help="Embedder for the imported memories.")
    ] = "offline",
) -> None:
    """Import a JSONL file into a local memory store file, with a progress bar.

    This writes the --db file directly (through ventros_server.memory.import_jsonl), not through a
    running server: stop `ventros serve` on that file first, then start it again to serve the data.
    """
    from .serve import default_db_path

    try:
        from ventros_server import memory as server_memory
    except ImportError as exc:
        fail(
            f"the memory store is not installed ({exc.name})",
            code=EXIT_FAILURE,
            hint="pip install 'ventros[server]'",
        )
    path = db or str(default_db_path())
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    try:
        store = server_memory.open_store(path, embedder=embedder)
    except Exception as exc:  # a locked or corrupt file, an unknown embedder
        fail(
            f"cannot open the store {path}: {exc}",
            code=EXIT_USAGE,
            hint="Is `ventros serve` running on this file? Stop it first.",
        )
    total = _count_lines(file)
    try:
        result = _import_with_progress(server_memory, store, file, total)
    except Exception as exc:
        fail(f"import of {file} failed: {exc}", code=EXIT_FAILURE)
    finally:
        store.close()
    summary = _import_summary(result)
    if state.json:
        emit_json({"file": str(file), "db": path, **summary})
    else:
        counts = ", ".join(f"{kind} {n}" for kind, n in summary["counts"].items() if n)
        console.print(
            Text.assemble(
                "Imported ",
                (str(summary["imported"]), "bold"),
                f" records ({counts or 'none'}) from {file} into {path} in {summary['seconds']:.1f} s",
            ),
            soft_wrap=True,
        )
        errors = summary["errors"]
        if errors:
            err_console.print(Text(f"{len(errors)} line(s) rejected:", style="bold red"))
            for error in errors[:20]:
                err_console.print(Text(f"  line {error['line']}: {error['reason']}"), soft_wrap=True)
            if len(errors) > 20:
                err_console.print(f"  ... and {len(errors) - 20} more (--json lists them all)", markup=False)
    if summary["errors"]:
        raise typer.Exit(EXIT_FAILURE)


def _count_lines(file: Path) -> int:
    with file.open("rb") as handle:
        return sum(1 for _ in handle)


def _import_with_progress(server_memory: Any, store: Any, file: Path, total: int) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("[bold]importing[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("lines"),
        TimeElapsedColumn(),
        console=err_console,
        disable=state.json or not err_console.is_terminal,
    )
    with progress:
        task = progress.add_task("import", total=total or None)

        def on_progress(lines_read: int) -> None:
            progress.update(task, completed=lines_read)

        result = server_memory.import_jsonl(store, str(file), progress=on_progress)
        progress.update(task, completed=total)
    return result


def _import_summary(report: Any) -> dict[str, Any]:
    """An ImportReport (counts per kind, rejected lines, seconds) as plain data."""
    counts = {str(kind): int(n) for kind, n in dict(getattr(report, "counts", {}) or {}).items()}
    errors = [
        {"line": int(line), "reason": str(reason)} for line, reason in getattr(report, "errors", []) or []
    ]
    return {
        "imported": sum(counts.values()),
        "counts": counts,
        "errors": errors,
        "seconds": round(float(getattr(report, "seconds", 0.0)), 3),
    }
